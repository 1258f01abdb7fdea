//! The sim's TLS identity, generated at every start: a self-signed CA and a server certificate for
//! `localhost`, `127.0.0.1` and `::1` signed by it. Clients trust the CA (written to a file and
//! available as PEM), exactly as they would trust a private CA in production — nothing disables
//! certificate verification.

use std::net::IpAddr;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::error::Error;

pub(crate) struct Identity {
    pub(crate) ca_pem: String,
    pub(crate) server_config: Arc<ServerConfig>,
}

/// Generate the CA and the server certificate, and the rustls configuration serving it. `extra_ip`
/// is added to the certificate's names when the sim listens on an address other than loopback.
pub(crate) fn generate(extra_ip: Option<IpAddr>) -> Result<Identity, Error> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "entra-sim test CA");
    ca_params.distinguished_name.push(DnType::OrganizationName, "entra-rotator simulated tenant");
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    if let Some(ip) = extra_ip.map(|ip| ip.to_string()).filter(|ip| !names.contains(ip)) {
        names.push(ip);
    }
    let server_key = KeyPair::generate()?;
    let mut server_params = CertificateParams::new(names)?;
    server_params.distinguished_name.push(DnType::CommonName, "entra-sim");
    server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server_params.use_authority_key_identifier_extension = true;
    let server_cert = server_params.signed_by(&server_key, &issuer)?;

    // Explicitly aws-lc-rs: never rely on a process-wide default that another crate may have set.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![server_cert.der().clone(), ca_cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        )?;
    // HTTP/2 as well as HTTP/1.1: reqwest with its http2 feature negotiates h2 through ALPN.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Identity { ca_pem: ca_cert.pem(), server_config: Arc::new(config) })
}
