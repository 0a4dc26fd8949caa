//! Creating hosted atSigns (`--create`, `--create-cram`): the server-side records and the
//! `.atKeys` file that a first activation (atprotocol.md §11.2) would have produced, or a
//! CRAM-only registration awaiting a real activation (§4.3, §12 step 1).
use std::path::Path;

use super::enroll::{EnrollState, Enrollment};
use super::meta::now_ms;
use super::server::AtServer;
use crate::at::keys::AtKeys;
use crate::at::AtSign;
use crate::crypto::aes_ctr::{encrypt_b64, ZERO_IV};
use crate::crypto::{b64, random, rsa::RsaPrivateKey};

/// App and device names of the enrollment `--create` makes.
const APP: &str = "atserver";
const DEVICE: &str = "create";

/// Where `--create` writes the keys of `@alice`: `DIR/keys/@alice_key.atKeys`.
pub(crate) fn keys_path(dir: &Path, atsign: &AtSign) -> std::path::PathBuf {
    dir.join("keys")
        .join(format!("{}_key.atKeys", atsign.as_str()))
}

/// The state directory of a hosted atSign.
pub(crate) fn state_dir(dir: &Path, atsign: &AtSign) -> std::path::PathBuf {
    dir.join("atsigns").join(atsign.name())
}

fn io(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Creates the server signing key pair if the atSign has none (atSigns made before federation).
///
/// # Errors
/// Key generation or the log write failed.
pub(crate) fn ensure_signing_keys(server: &AtServer) -> Result<(), String> {
    let me = server.atsign.clone();
    let has = {
        let st = server.state();
        st.value(&format!("public:signing_publickey{me}")).is_some()
            && st.value(&format!("{me}:signing_privatekey{me}")).is_some()
    };
    if has {
        return Ok(());
    }
    log::info!("{me}: creating the server signing key pair");
    signing_keys(server, RsaPrivateKey::generate().map_err(io)?)
}

/// Stores `k` as the server signing key pair used for `pol` (§4.4).
fn signing_keys(server: &AtServer, k: RsaPrivateKey) -> Result<(), String> {
    let me = server.atsign.clone();
    let mut st = server.state();
    st.put_simple(
        &format!("public:signing_publickey{me}"),
        &k.public_key().to_spki_b64(),
        &me,
        None,
    )
    .map_err(io)?;
    st.put_simple(
        &format!("{me}:signing_privatekey{me}"),
        &k.to_pkcs8_b64(),
        &me,
        None,
    )
    .map_err(io)?;
    st.put_simple("privatekey:signing_keypair_generated", "true", &me, None)
        .map_err(io)?;
    Ok(())
}

/// Makes an activated atSign: keys, public key record, auto-approved first enrollment with
/// `{"__manage":"rw","*":"rw"}`, at_secret deleted, and the `.atKeys` file.
///
/// # Errors
/// Key generation or store/file write failures.
pub(crate) fn create_activated(
    dir: &Path,
    atsign: &AtSign,
    server: &AtServer,
) -> Result<(), String> {
    // The three RSA keys (PKAM, encryption, server signing) are generated in parallel.
    let mut three = RsaPrivateKey::generate_many(3).map_err(io)?;
    let (Some(signing), Some(encrypt), Some(pkam)) = (three.pop(), three.pop(), three.pop()) else {
        return Err("key generation returned too few keys".into());
    };
    let mut keys = AtKeys::from_new_keys(pkam, encrypt);
    let enrollment_id = random::uuid_v4();
    keys.enrollment_id = Some(enrollment_id.clone());
    let apkam = keys.apkam_symmetric_key.unwrap_or_else(random::bytes::<32>);
    keys.apkam_symmetric_key = Some(apkam);
    let me = atsign.as_str().to_string();
    signing_keys(server, signing)?;
    let pkam_public = keys.pkam_public.to_spki_b64();
    let e = Enrollment {
        id: enrollment_id,
        session_id: String::new(),
        app: APP.into(),
        device: DEVICE.into(),
        namespaces: vec![("__manage".into(), "rw".into()), ("*".into(), "rw".into())],
        apkam_public_key: pkam_public.clone(),
        state: EnrollState::Approved,
        enc_apkam_sym_key: None,
        expiry_ms: 0,
    };
    let enc_private = encrypt_b64(&apkam, &ZERO_IV, &keys.encrypt_private.to_pkcs8_b64());
    let self_key = encrypt_b64(&apkam, &ZERO_IV, &b64::encode(&keys.self_encryption_key));
    e.save_keys(server, &enc_private, &self_key).map_err(io)?;
    e.save(server, None).map_err(io)?;
    {
        let mut st = server.state();
        st.put_simple("privatekey:at_pkam_publickey", &pkam_public, &me, None)
            .map_err(io)?;
        let now = now_ms();
        let mut meta = super::meta::Meta::updated(None, &Default::default(), &me, now);
        meta.fields[super::meta::IS_ENCRYPTED] = Some("false".into());
        st.put(
            &format!("public:publickey{me}"),
            keys.encrypt_public.to_spki_b64(),
            meta,
        )
        .map_err(io)?;
        st.put_simple("privatekey:at_secret_deleted", "true", &me, None)
            .map_err(io)?;
    }
    keys.save(atsign, &keys_path(dir, atsign)).map_err(io)?;
    Ok(())
}

/// Registers an atSign that still needs its first activation with `secret`.
///
/// # Errors
/// Key generation or store write failures.
pub(crate) fn create_cram(atsign: &AtSign, server: &AtServer, secret: &str) -> Result<(), String> {
    signing_keys(server, RsaPrivateKey::generate().map_err(io)?)?;
    server
        .state()
        .put_simple("privatekey:at_secret", secret, atsign.as_str(), None)
        .map_err(io)?;
    Ok(())
}

/// A random CRAM secret (128 hex characters, like the registrar's).
pub(crate) fn random_secret() -> String {
    crate::crypto::hash::hex(&random::bytes::<64>())
}
