//! EKS's side of an EKS token: what the cluster's authenticator (aws-iam-authenticator) and STS do
//! with `k8s-aws-v1.<base64url of a presigned GetCallerIdentity URL>`, done here without a network
//! call, as one check.
//!
//! - The authenticator's checks: the prefix and encoding; an `https` URL to an STS host (global or
//!   regional, `.amazonaws.com` or `.amazonaws.com.cn`) with path `/`; `Action=GetCallerIdentity`,
//!   `Version=2011-06-15`, each parameter once; `x-k8s-aws-id` among the signed headers; signed no
//!   more than 15 minutes ago (the token's life whatever `X-Amz-Expires` says) and not in the
//!   future beyond a 5-minute clock skew.
//! - STS's checks: the access key is known, its session token (when it has one) is the one sent,
//!   the credential scope is that day's, `sts`, `aws4_request` and (on a regional host) that region,
//!   and the SigV4 signature is right for the request the authenticator sends: the URL as given,
//!   with `x-k8s-aws-id` set to *this* cluster's name — so a token signed for another cluster fails.
//!
//! The SigV4 computation is this file's own (canonical request, string to sign, the HMAC chain), not
//! the product's signer, so the two check each other.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::macros::format_description;

pub(crate) use crate::sigv4::AwsPrincipal;
use crate::sigv4::{encode, hex, same_signature, signature};

/// What `aws eks get-token` puts before the encoded URL.
pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";
/// How long after its signing a token is accepted.
const TOKEN_LIFETIME: time::Duration = time::Duration::minutes(15);
const CLOCK_SKEW: time::Duration = time::Duration::minutes(5);
/// Longer tokens are refused before they are decoded (the authenticator's own bound).
const MAX_TOKEN_LEN: usize = 1024 * 4;

/// The ARN of the principal that signed `token` for `cluster`, or why it is refused.
pub(crate) fn verify(
    token: &str,
    cluster: &str,
    principals: &BTreeMap<String, AwsPrincipal>,
    now: OffsetDateTime,
) -> Result<String, String> {
    if token.len() > MAX_TOKEN_LEN {
        return Err("token too long".into());
    }
    let encoded = token.strip_prefix(TOKEN_PREFIX).ok_or("not an EKS token (no k8s-aws-v1. prefix)")?;
    let decoded =
        URL_SAFE_NO_PAD.decode(encoded.trim_end_matches('=')).map_err(|_| "the token is not base64url".to_owned())?;
    let url = String::from_utf8(decoded).map_err(|_| "the token is not a URL".to_owned())?;
    let url = url::Url::parse(&url).map_err(|_| "the token is not a URL".to_owned())?;
    if url.scheme() != "https" {
        return Err("the URL is not https".into());
    }
    let host = url.host_str().unwrap_or_default().to_owned();
    let host_region = sts_host_region(&host).ok_or_else(|| format!("{host} is not an STS endpoint"))?;
    if url.path() != "/" {
        return Err("the URL's path is not /".into());
    }
    let mut query = BTreeMap::new();
    for (k, v) in url.query_pairs() {
        if query.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("query parameter {k} given twice"));
        }
    }
    let param = |name: &str| query.get(name).map(String::as_str);
    if param("Action") != Some("GetCallerIdentity") || param("Version") != Some("2011-06-15") {
        return Err("not a GetCallerIdentity request".into());
    }
    if param("X-Amz-Algorithm") != Some("AWS4-HMAC-SHA256") {
        return Err("not signed with AWS4-HMAC-SHA256".into());
    }
    let signed_headers = param("X-Amz-SignedHeaders").ok_or("no X-Amz-SignedHeaders")?.to_owned();
    let signed: Vec<&str> = signed_headers.split(';').collect();
    if !signed.contains(&"x-k8s-aws-id") {
        return Err("x-k8s-aws-id is not a signed header".into());
    }
    if let Some(other) = signed.iter().find(|h| !["host", "x-k8s-aws-id"].contains(h)) {
        return Err(format!("signed header {other} is not one the authenticator sends"));
    }
    let date = param("X-Amz-Date").ok_or("no X-Amz-Date")?;
    let at = time::PrimitiveDateTime::parse(date, format_description!("[year][month][day]T[hour][minute][second]Z"))
        .map_err(|_| "X-Amz-Date is not a date".to_owned())?
        .assume_utc();
    if now - at > TOKEN_LIFETIME {
        return Err("the token has expired".into());
    }
    if at - now > CLOCK_SKEW {
        return Err("the token is signed in the future".into());
    }
    let credential = param("X-Amz-Credential").ok_or("no X-Amz-Credential")?;
    let parts: Vec<&str> = credential.split('/').collect();
    let [key_id, day, region, service, terminator] = parts[..] else {
        return Err("X-Amz-Credential is malformed".into());
    };
    if day != &date[..8] || service != "sts" || terminator != "aws4_request" {
        return Err("the credential scope is not this day's sts scope".into());
    }
    if host_region.is_some_and(|r| r != region) {
        return Err(format!("signed for region {region}, sent to {host}"));
    }
    let principal = principals.get(key_id).ok_or("the access key is not known to STS")?;
    if param("X-Amz-Security-Token") != principal.session_token.as_deref() {
        return Err("the security token is missing or not this session's".into());
    }
    let signature_given = param("X-Amz-Signature").ok_or("no X-Amz-Signature")?;

    let canonical_query = {
        let mut pairs: Vec<(String, String)> =
            query.iter().filter(|(k, _)| *k != "X-Amz-Signature").map(|(k, v)| (encode(k), encode(v))).collect();
        pairs.sort();
        pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
    };
    let canonical_headers: String =
        signed.iter().map(|h| format!("{h}:{}\n", if *h == "host" { host.as_str() } else { cluster })).collect();
    let canonical_request =
        format!("GET\n/\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{}", hex(&Sha256::digest(b"")));
    let scope = format!("{day}/{region}/sts/aws4_request");
    let string_to_sign =
        format!("AWS4-HMAC-SHA256\n{date}\n{scope}\n{}", hex(&Sha256::digest(canonical_request.as_bytes())));
    let expected = signature(&principal.secret_access_key, day, region, "sts", &string_to_sign);
    if !same_signature(&expected, signature_given) {
        return Err("the signature does not match (signed for another cluster, or with another key)".into());
    }
    Ok(principal.arn.clone())
}

/// For an STS host, its region (`None` for the global `sts.amazonaws.com`); `None` for any other host.
fn sts_host_region(host: &str) -> Option<Option<&str>> {
    let rest = host.strip_suffix(".amazonaws.com").or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    if rest == "sts" {
        return Some(None);
    }
    let region = rest.strip_prefix("sts.")?;
    let ok = !region.is_empty() && region.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
    ok.then_some(Some(region))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AWS SDK for Ruby's published presigned URL for cluster `my-eks-cluster` (key `akid`,
    /// secret `secret`, us-west-2, 2018-08-05T00:00:00Z, 59 s).
    const PUBLISHED: &str = "https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15\
        &X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=akid%2F20180805%2Fus-west-2%2Fsts%2Faws4_request\
        &X-Amz-Date=20180805T000000Z&X-Amz-Expires=59&X-Amz-SignedHeaders=host%3Bx-k8s-aws-id\
        &X-Amz-Signature=d1f6551aafc0f5c57971fe161a12cbe0539fc1681698ea4a4c0fde5abc51e32e";

    fn principals() -> BTreeMap<String, AwsPrincipal> {
        let p = AwsPrincipal {
            secret_access_key: "secret".into(),
            session_token: None,
            arn: "arn:aws:iam::123456789012:role/run-step".into(),
        };
        BTreeMap::from([("akid".to_owned(), p)])
    }

    fn token(url: &str) -> String {
        format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(url))
    }

    #[test]
    fn the_published_example_is_accepted_for_its_cluster_only_and_only_while_fresh() {
        let signed = time::macros::datetime!(2018-08-05 00:00:00 UTC);
        let now = signed + time::Duration::minutes(10);
        assert_eq!(
            verify(&token(PUBLISHED), "my-eks-cluster", &principals(), now).unwrap(),
            "arn:aws:iam::123456789012:role/run-step"
        );
        let other = verify(&token(PUBLISHED), "another-cluster", &principals(), now).unwrap_err();
        assert!(other.contains("signature does not match"), "{other}");
        let late = verify(&token(PUBLISHED), "my-eks-cluster", &principals(), signed + time::Duration::minutes(16));
        assert!(late.unwrap_err().contains("expired"));
        let mut wrong_key = principals();
        wrong_key.get_mut("akid").unwrap().secret_access_key = "other".into();
        assert!(verify(&token(PUBLISHED), "my-eks-cluster", &wrong_key, now).is_err());
        let tampered = PUBLISHED.replace("Expires=59", "Expires=58");
        assert!(verify(&token(&tampered), "my-eks-cluster", &principals(), now).is_err());
        let elsewhere = PUBLISHED.replace("sts.amazonaws.com", "sts.example.com");
        assert!(verify(&token(&elsewhere), "my-eks-cluster", &principals(), now).unwrap_err().contains("not an STS"));
        assert!(verify("Bearer-ish", "my-eks-cluster", &principals(), now).is_err());
    }
}
