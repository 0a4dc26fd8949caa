//! The local CA and server certificates (atprotocol.md §2.1, §12): `DIR/ca.pem` + `DIR/ca.key`
//! made on first start; a fresh leaf for the served names/IPs (plus `localhost` and
//! `127.0.0.1`) is signed at every start, so host-name verification passes for IP names too.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

const CA_CN: &str = "noports atserver local CA";

/// The CA file path and the listener configuration.
pub(crate) struct Certs {
    pub ca_path: PathBuf,
    pub config: Arc<rustls::ServerConfig>,
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_CN);
    dn.push(DnType::OrganizationName, "noports-rs");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2049, 12, 31);
    p
}

/// Loads or creates the CA in `dir` and issues a leaf for `names`.
///
/// # Errors
/// A message naming the file or step that failed.
pub(crate) fn load_or_create(dir: &Path, names: &[String]) -> Result<Certs, String> {
    let ca_key_path = dir.join("ca.key");
    let ca_path = dir.join("ca.pem");
    let ca_key = if ca_key_path.exists() {
        let pem = std::fs::read_to_string(&ca_key_path)
            .map_err(|e| format!("reading {}: {e}", ca_key_path.display()))?;
        KeyPair::from_pem(&pem).map_err(|e| format!("parsing {}: {e}", ca_key_path.display()))?
    } else {
        let k = KeyPair::generate().map_err(|e| format!("generating CA key: {e}"))?;
        crate::runtime::fs::write_atomic_0600(&ca_key_path, k.serialize_pem().as_bytes())
            .map_err(|e| format!("writing {}: {e}", ca_key_path.display()))?;
        let _ = std::fs::remove_file(&ca_path);
        k
    };
    // Re-signing the same name with the same key gives an issuer that verifies the leaf against
    // the ca.pem written on first start.
    let ca_cert = ca_params()
        .self_signed(&ca_key)
        .map_err(|e| format!("CA certificate: {e}"))?;
    if !ca_path.exists() {
        crate::runtime::fs::write_atomic_0600(&ca_path, ca_cert.pem().as_bytes())
            .map_err(|e| format!("writing {}: {e}", ca_path.display()))?;
        // Clients read this file; it holds no secret.
        let _ = std::fs::set_permissions(
            &ca_path,
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        );
    }
    let mut sans: Vec<String> = vec!["localhost".into(), "127.0.0.1".into()];
    for n in names {
        if !sans.contains(n) && !n.is_empty() && n != "0.0.0.0" && n != "::" {
            sans.push(n.clone());
        }
    }
    let mut leaf =
        CertificateParams::new(sans).map_err(|e| format!("server certificate names: {e}"))?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_else(|| "localhost".into()),
    );
    leaf.distinguished_name = dn;
    leaf.not_before = rcgen::date_time_ymd(2024, 1, 1);
    leaf.not_after = rcgen::date_time_ymd(2049, 12, 31);
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let leaf_key = KeyPair::generate().map_err(|e| format!("generating server key: {e}"))?;
    let leaf_cert = leaf
        .signed_by(&leaf_key, &ca_cert, &ca_key)
        .map_err(|e| format!("signing server certificate: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf_cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .map_err(|e| format!("TLS server config: {e}"))?;
    Ok(Certs {
        ca_path,
        config: Arc::new(config),
    })
}
