//! The `.atKeys` file (atprotocol.md §10): load and save byte-compatible with the official tools.
//!
//! The four `aes*` fields hold base64 key text AES-256-CTR encrypted with `selfEncryptionKey`
//! and a zero IV over PKCS#7-padded bytes; the other fields are plain.
use std::path::{Path, PathBuf};

use super::atsign::AtSign;
use super::error::AtError;
use crate::crypto::aes_ctr::{decrypt_b64, encrypt_b64, ZERO_IV};
use crate::crypto::b64;
use crate::crypto::rsa::{RsaPrivateKey, RsaPublicKey};

/// The C SDK reads at most this many bytes; we allow more but cap hostile files.
const MAX_FILE_BYTES: u64 = 64 * 1024;

pub struct AtKeys {
    pub pkam_private: RsaPrivateKey,
    pub pkam_public: RsaPublicKey,
    pub encrypt_private: RsaPrivateKey,
    pub encrypt_public: RsaPublicKey,
    pub self_encryption_key: [u8; 32],
    pub apkam_symmetric_key: Option<[u8; 32]>,
    pub enrollment_id: Option<String>,
}

#[allow(non_snake_case)]
mod wire {
    use miniserde::Deserialize;
    #[derive(Deserialize)]
    pub(super) struct FileFields {
        pub aesPkamPublicKey: Option<String>,
        pub aesPkamPrivateKey: Option<String>,
        pub aesEncryptPublicKey: Option<String>,
        pub aesEncryptPrivateKey: Option<String>,
        pub selfEncryptionKey: Option<String>,
        pub apkamSymmetricKey: Option<String>,
        pub enrollmentId: Option<String>,
    }
}
use wire::FileFields;

fn key32(b64_text: &str, what: &str) -> Result<[u8; 32], AtError> {
    let bytes = b64::decode(b64_text.trim())
        .map_err(|_| AtError::Invalid(format!("atKeys: {what} is not base64")))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| AtError::Invalid(format!("atKeys: {what} is not 32 bytes")))
}

fn field<'a>(v: &'a Option<String>, name: &str) -> Result<&'a str, AtError> {
    v.as_deref()
        .ok_or_else(|| AtError::Invalid(format!("atKeys: missing field {name}")))
}

impl AtKeys {
    /// `~/.atsign/keys/@alice_key.atKeys`
    pub fn default_path(atsign: &AtSign) -> Result<PathBuf, AtError> {
        let home = crate::runtime::fs::home_dir().map_err(|e| AtError::Invalid(e.to_string()))?;
        Ok(home
            .join(".atsign")
            .join("keys")
            .join(format!("{}_key.atKeys", atsign.as_str())))
    }

    /// Fresh keys, as a first activation would make them (encryption pair, APKAM pair,
    /// self-encryption key, APKAM symmetric key). The enrollment id is set by the caller.
    pub fn generate() -> Result<AtKeys, AtError> {
        let mut pair = RsaPrivateKey::generate_many(2)?;
        match (pair.pop(), pair.pop()) {
            (Some(encrypt_private), Some(pkam_private)) => {
                Ok(AtKeys::from_new_keys(pkam_private, encrypt_private))
            }
            _ => Err(AtError::Crypto(crate::crypto::CryptoError::KeyGen)),
        }
    }

    /// New keys around two freshly generated RSA keys (fresh self-encryption and APKAM keys).
    pub fn from_new_keys(pkam_private: RsaPrivateKey, encrypt_private: RsaPrivateKey) -> AtKeys {
        AtKeys {
            pkam_public: pkam_private.public_key(),
            pkam_private,
            encrypt_public: encrypt_private.public_key(),
            encrypt_private,
            self_encryption_key: crate::crypto::random::bytes::<32>(),
            apkam_symmetric_key: Some(crate::crypto::random::bytes::<32>()),
            enrollment_id: None,
        }
    }

    pub fn load(path: &Path) -> Result<AtKeys, AtError> {
        let meta = std::fs::metadata(path).map_err(|e| {
            AtError::Invalid(format!(
                "Unable to find .atKeys file : {} ({e})",
                path.display()
            ))
        })?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(AtError::Invalid(format!(
                "atKeys file {} is too large",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            AtError::Invalid(format!("cannot read atKeys file {}: {e}", path.display()))
        })?;
        Self::parse(&text).map_err(|e| AtError::Invalid(format!("{}: {e}", path.display())))
    }

    pub fn parse(text: &str) -> Result<AtKeys, AtError> {
        let f: FileFields = miniserde::json::from_str(text)
            .map_err(|_| AtError::Invalid("atKeys: not a JSON object of strings".into()))?;
        let sek = key32(
            field(&f.selfEncryptionKey, "selfEncryptionKey")?,
            "selfEncryptionKey",
        )?;
        let dec = |name: &str, v: &Option<String>| -> Result<String, AtError> {
            decrypt_b64(&sek, &ZERO_IV, field(v, name)?.trim())
                .map_err(|e| AtError::Invalid(format!("atKeys: cannot decrypt {name}: {e}")))
        };
        let pkam_public =
            RsaPublicKey::from_spki_b64(&dec("aesPkamPublicKey", &f.aesPkamPublicKey)?)?;
        let pkam_private =
            RsaPrivateKey::from_pkcs8_b64(&dec("aesPkamPrivateKey", &f.aesPkamPrivateKey)?)?;
        let encrypt_public =
            RsaPublicKey::from_spki_b64(&dec("aesEncryptPublicKey", &f.aesEncryptPublicKey)?)?;
        let encrypt_private =
            RsaPrivateKey::from_pkcs8_b64(&dec("aesEncryptPrivateKey", &f.aesEncryptPrivateKey)?)?;
        let apkam_symmetric_key = match &f.apkamSymmetricKey {
            Some(k) if !k.trim().is_empty() => Some(key32(k, "apkamSymmetricKey")?),
            _ => None,
        };
        let enrollment_id = f
            .enrollmentId
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().to_string());
        Ok(AtKeys {
            pkam_private,
            pkam_public,
            encrypt_private,
            encrypt_public,
            self_encryption_key: sek,
            apkam_symmetric_key,
            enrollment_id,
        })
    }

    /// The file text, fields in the order the Dart tools write them.
    pub fn to_file_text(&self, atsign: &AtSign) -> String {
        let sek = &self.self_encryption_key;
        let enc = |plain: &str| encrypt_b64(sek, &ZERO_IV, plain);
        let sek_b64 = b64::encode(sek);
        let mut fields: Vec<(String, String)> = vec![
            (
                "aesPkamPublicKey".into(),
                enc(&self.pkam_public.to_spki_b64()),
            ),
            (
                "aesEncryptPublicKey".into(),
                enc(&self.encrypt_public.to_spki_b64()),
            ),
            (
                "aesEncryptPrivateKey".into(),
                enc(&self.encrypt_private.to_pkcs8_b64()),
            ),
            ("selfEncryptionKey".into(), sek_b64.clone()),
            (atsign.as_str().to_string(), sek_b64),
        ];
        if let Some(k) = &self.apkam_symmetric_key {
            fields.push(("apkamSymmetricKey".into(), b64::encode(k)));
        }
        if let Some(id) = &self.enrollment_id {
            fields.push(("enrollmentId".into(), id.clone()));
        }
        fields.push((
            "aesPkamPrivateKey".into(),
            enc(&self.pkam_private.to_pkcs8_b64()),
        ));
        let mut out = String::from("{");
        for (i, (k, v)) in fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_str(&mut out, k);
            out.push(':');
            push_json_str(&mut out, v);
        }
        out.push('}');
        out
    }

    /// Atomic write (temp file + fsync + rename), mode 0600.
    pub fn save(&self, atsign: &AtSign, path: &Path) -> Result<(), AtError> {
        crate::runtime::fs::write_atomic_0600(path, self.to_file_text(atsign).as_bytes())
            .map_err(|e| AtError::io(format!("writing {}", path.display()), e))
    }
}

fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}
