//! HTTPS: a throwaway certificate authority and server certificate made at start-up.
//!
//! Some clients refuse plain http (the official Python SDK hard-codes `https://`, the JS SDK
//! rejects non-https webhook URLs). So the emulator can serve TLS with a CA generated on each
//! start and written as PEM to a directory of the caller's choice; pointing
//! `REQUESTS_CA_BUNDLE`, `SSL_CERT_FILE` or `NODE_EXTRA_CA_CERTS` at that file makes those
//! clients trust it. The private keys never leave memory. The server certificate covers
//! `localhost`, `127.0.0.1`, `::1` and the bound address when it is a specific one.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::error::Error;

/// File name of the CA certificate inside the TLS directory.
pub const CA_FILE: &str = "ca.pem";

/// What serving TLS needs.
pub struct TlsMaterial {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    pub server_config: Arc<rustls::ServerConfig>,
}

fn tls_error(e: impl std::fmt::Display) -> Error {
    Error::Tls(e.to_string())
}

/// Generate a CA and a server certificate for loopback (and `bound`, if specific).
pub fn generate(bound: Option<IpAddr>) -> Result<TlsMaterial, Error> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(tls_error)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "b24-emulator local CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().map_err(tls_error)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(tls_error)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if let Some(ip) = bound.filter(|ip| !ip.is_unspecified() && !ip.is_loopback()) {
        names.push(ip.to_string());
    }
    let mut leaf_params = CertificateParams::new(names).map_err(tls_error)?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "b24-emulator");
    leaf_params.is_ca = IsCa::ExplicitNoCa;
    leaf_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    // Strict verifiers (Python 3.13's VERIFY_X509_STRICT) want the authority key identifier.
    leaf_params.use_authority_key_identifier_extension = true;
    let leaf_key = KeyPair::generate().map_err(tls_error)?;
    let leaf_cert = leaf_params
        .signed_by(&leaf_key, &issuer)
        .map_err(tls_error)?;

    let chain: Vec<CertificateDer<'static>> = vec![leaf_cert.der().clone(), ca_cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(tls_error)?;
    // Only HTTP/1.1 is served.
    server_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsMaterial {
        ca_pem: ca_cert.pem(),
        server_config: Arc::new(server_config),
    })
}

/// Write the CA certificate to `dir/ca.pem`, creating `dir`.
pub fn write_ca(dir: &Path, ca_pem: &str) -> Result<(), Error> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(CA_FILE), ca_pem)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_a_pem_ca_and_a_server_config() {
        let m = generate(Some([192, 0, 2, 1].into())).unwrap_or_else(|e| panic!("{e}"));
        assert!(m.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(m.server_config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }
}
