//! The pieces of AWS Signature Version 4 that both simulated STS checks share (the EKS token's
//! presigned URL and `GetWebIdentityToken`'s `Authorization` header): the principals STS knows, SigV4's
//! URI encoding, and the signing key's HMAC chain.
//!
//! This is the sim's own implementation of the published algorithm, not the product's signer
//! (`aws-sigv4`), so each checks the other.

use aws_lc_rs::hmac;

/// An AWS principal STS knows: its keys, and the role ARN it answers as.
#[derive(Debug, Clone)]
pub(crate) struct AwsPrincipal {
    pub secret_access_key: String,
    pub session_token: Option<String>,
    pub arn: String,
}

/// SigV4's URI encoding: every byte but RFC 3986's unreserved characters, as `%XY`.
pub(crate) fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hex signature of `string_to_sign` with the key derived from `secret` for the scope
/// `day/region/service/aws4_request`.
pub(crate) fn signature(secret: &str, day: &str, region: &str, service: &str, string_to_sign: &str) -> String {
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in [day, region, service, "aws4_request"] {
        key = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), part.as_bytes()).as_ref().to_vec();
    }
    hex(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), string_to_sign.as_bytes()).as_ref())
}

/// Whether two hex signatures are the same, compared in constant time.
pub(crate) fn same_signature(expected: &str, given: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), given.as_bytes()).is_ok()
}
