//! Client certificates Entra knows the public half of: [`crate::Sim::issue_client_certificate`]
//! makes a self-signed certificate and its RSA key for an application (the management one too),
//! registers the certificate's thumbprint and public key, and hands the PEM (certificate and
//! private key) to the test, as an operator uploads a certificate and keeps its key.
//!
//! The token endpoint then checks a client assertion for that application as Entra does: the JWT
//! header's `x5t` (base64url SHA-1 thumbprint) or `x5t#S256` names a registered certificate of
//! that client (AADSTS700027 otherwise), `alg` is RS256, the signature verifies with the
//! certificate's key (AADSTS7000274 otherwise), `iss` and `sub` are the client id, `aud` is the
//! token endpoint the assertion is sent to, and it is within its time window.

use aws_lc_rs::digest;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{self, KeyPair as _, UnparsedPublicKey};
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls::pki_types::PrivatePkcs8KeyDer;
use serde_json::Value;
use uuid::Uuid;

use crate::error::TokenError;
use crate::lock;
use crate::server::Shared;

/// A certificate registered for a client: its thumbprints and its RSA public key (PKCS#1 DER).
#[derive(Debug, Clone)]
pub(crate) struct RegisteredCertificate {
    client_id: Uuid,
    sha1: Vec<u8>,
    sha256: Vec<u8>,
    public_key: Vec<u8>,
}

fn pem(label: &str, der: &[u8]) -> String {
    let text = STANDARD.encode(der);
    let lines: Vec<&str> = text.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// A new certificate and key for `client_id`, registered; the PEM of both.
pub(crate) fn issue(shared: &Shared, client_id: Uuid, common_name: &str) -> Result<String, crate::Error> {
    let key = KeyPair::generate(KeySize::Rsa2048).map_err(|_| crate::Error::Crypto("an RSA key".into()))?;
    let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&key)
        .map_err(|_| crate::Error::Crypto("PKCS#8".into()))?
        .as_ref()
        .to_vec();
    let signer = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &PrivatePkcs8KeyDer::from(pkcs8.clone()),
        &rcgen::PKCS_RSA_SHA256,
    )?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(rcgen::DnType::CommonName, common_name);
    let cert = params.self_signed(&signer)?;
    let der = cert.der().to_vec();
    let registered = RegisteredCertificate {
        client_id,
        sha1: digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &der).as_ref().to_vec(),
        sha256: digest::digest(&digest::SHA256, &der).as_ref().to_vec(),
        public_key: key.public_key().as_ref().to_vec(),
    };
    lock(&shared.client_certificates).push(registered);
    Ok(format!("{}{}", pem("CERTIFICATE", &der), pem("PRIVATE KEY", &pkcs8)))
}

fn refuse(aadsts: u32, description: &str) -> TokenError {
    TokenError::new(StatusCode::UNAUTHORIZED, "invalid_client", aadsts, description)
}

/// Whether `client_id` has a certificate registered here (then its assertions are checked in full).
pub(crate) fn has_registered(shared: &Shared, client_id: Uuid) -> bool {
    lock(&shared.client_certificates).iter().any(|c| c.client_id == client_id)
}

/// Entra's checks of a certificate assertion's header and signature for `client_id`, and of its
/// audience (the token endpoint, `endpoint`).
pub(crate) fn check(
    shared: &Shared,
    client_id: Uuid,
    assertion: &str,
    header: &Value,
    claims: &Value,
    endpoint: &str,
) -> Result<(), TokenError> {
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(refuse(5002738, "Invalid JWT token. 'alg' must be RS256 for a certificate assertion."));
    }
    let thumbprint = |name: &str| header.get(name).and_then(Value::as_str).and_then(|t| URL_SAFE_NO_PAD.decode(t).ok());
    let certificates = lock(&shared.client_certificates);
    let certificate = certificates.iter().filter(|c| c.client_id == client_id).find(|c| {
        thumbprint("x5t").is_some_and(|t| t == c.sha1) || thumbprint("x5t#S256").is_some_and(|t| t == c.sha256)
    });
    let Some(certificate) = certificate else {
        return Err(refuse(
            700027,
            "The certificate with identifier used to sign the client assertion is not registered on application.",
        ));
    };
    let (signed, signature) = assertion.rsplit_once('.').unwrap_or_default();
    let signature = URL_SAFE_NO_PAD.decode(signature).unwrap_or_default();
    UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &certificate.public_key)
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| refuse(7000274, "Client assertion failed signature validation."))?;
    if claims.get("aud").and_then(Value::as_str) != Some(endpoint) {
        return Err(refuse(700024, "Client assertion audience claim does not match the token endpoint."));
    }
    Ok(())
}
