//! Request signing: every request the agent makes carries an Ed25519 signature over what it asks,
//! when, and a fresh nonce, so the server can tell it is the enrolled agent and refuse replays.
//!
//! # The canonical string
//!
//! Seven lines joined by `\n`, none able to contain a newline (each is checked):
//!
//! ```text
//! rotator-agent-request-v1
//! <METHOD, ASCII uppercase letters only>
//! <path and query exactly as sent, visible ASCII only>
//! <agent id, visible ASCII only>
//! <timestamp, Unix seconds, decimal>
//! <nonce, 16 random bytes, base64url>
//! <SHA-256 of the body, lowercase hex>
//! ```
//!
//! # Replays
//!
//! [`verify`] refuses a timestamp outside `now ± max_skew_secs`. Inside that window a captured
//! request could be sent again, so the server must remember each `(agent id, nonce)` of a
//! verified request until [`Verified::remember_until`] (`timestamp + max_skew_secs`) and refuse a
//! request whose pair it already holds. After that the timestamp alone refuses it.

use ed25519_dalek::{Signature, Signer as _};
use sha2::{Digest as _, Sha256};

use crate::b64;
use crate::keys::{AgentKeys, PublicKeys};

/// The first line of the canonical string; a new layout gets a new tag.
const VERSION_TAG: &str = "rotator-agent-request-v1";

pub const HEADER_AGENT_ID: &str = "Rotator-Agent-Id";
pub const HEADER_TIMESTAMP: &str = "Rotator-Timestamp";
pub const HEADER_NONCE: &str = "Rotator-Nonce";
pub const HEADER_SIGNATURE: &str = "Rotator-Signature";

const NONCE_LEN: usize = 16;
const MAX_AGENT_ID_LEN: usize = 128;

/// Why a request could not be signed or was not accepted. Never carries key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("the request has no {0} header")]
    MissingHeader(&'static str),
    #[error("the {header} header is malformed: {why}")]
    Malformed { header: &'static str, why: &'static str },
    #[error("the {what} cannot be signed: {why}")]
    Unsignable { what: &'static str, why: &'static str },
    #[error("the signature does not match this agent's key and this request")]
    BadSignature,
    #[error("the request is {age_secs} s old, more than the {max_skew_secs} s allowed")]
    TooOld { age_secs: i64, max_skew_secs: i64 },
    #[error("the request is dated {ahead_secs} s ahead, more than the {max_skew_secs} s allowed")]
    TooNew { ahead_secs: i64, max_skew_secs: i64 },
    #[error("the system's random number generator failed: {0}")]
    Random(String),
}

/// The headers a signed request carries, in the order to send them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub headers: Vec<(&'static str, String)>,
}

impl SignedHeaders {
    /// The value of one header, by its exact name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }
}

/// What a request says about itself, read before the server looks the agent up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub agent_id: String,
    pub timestamp: i64,
    pub nonce: String,
    signature: Signature,
}

/// A request that verified. The server records `(agent_id, nonce)` until `remember_until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub agent_id: String,
    pub nonce: String,
    pub timestamp: i64,
    pub remember_until: i64,
}

fn is_visible_ascii(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic())
}

fn check_agent_id(agent_id: &str) -> Result<(), &'static str> {
    if agent_id.len() > MAX_AGENT_ID_LEN {
        return Err("longer than 128 characters");
    }
    if !is_visible_ascii(agent_id) {
        return Err("empty or not visible ASCII");
    }
    Ok(())
}

fn canonical(
    method: &str,
    path_and_query: &str,
    agent_id: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
) -> Result<String, AuthError> {
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(AuthError::Unsignable { what: "method", why: "not ASCII letters" });
    }
    if !is_visible_ascii(path_and_query) {
        return Err(AuthError::Unsignable { what: "path", why: "empty or not visible ASCII" });
    }
    check_agent_id(agent_id).map_err(|why| AuthError::Unsignable { what: "agent id", why })?;
    let body_hash = hex::encode(Sha256::digest(body));
    Ok([VERSION_TAG, &method.to_ascii_uppercase(), path_and_query, agent_id, &timestamp.to_string(), nonce, &body_hash]
        .join("\n"))
}

/// Signs one request with a fresh nonce. `timestamp` is the caller's clock, Unix seconds.
pub fn sign(
    keys: &AgentKeys,
    agent_id: &str,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    timestamp: i64,
) -> Result<SignedHeaders, AuthError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| AuthError::Random(e.to_string()))?;
    let nonce = b64::encode(&nonce);
    let message = canonical(method, path_and_query, agent_id, timestamp, &nonce, body)?;
    let signature = keys.signing().sign(message.as_bytes());
    Ok(SignedHeaders {
        headers: vec![
            (HEADER_AGENT_ID, agent_id.to_owned()),
            (HEADER_TIMESTAMP, timestamp.to_string()),
            (HEADER_NONCE, nonce),
            (HEADER_SIGNATURE, b64::encode(&signature.to_bytes())),
        ],
    })
}

/// Reads the four headers through `lookup` (which should match names case-insensitively, as
/// HTTP does) and checks their form.
pub fn parse_headers(lookup: impl Fn(&str) -> Option<String>) -> Result<Claimed, AuthError> {
    let get = |name: &'static str| lookup(name).ok_or(AuthError::MissingHeader(name));
    let malformed = |header, why| AuthError::Malformed { header, why };

    let agent_id = get(HEADER_AGENT_ID)?.trim().to_owned();
    check_agent_id(&agent_id).map_err(|why| malformed(HEADER_AGENT_ID, why))?;

    let timestamp = get(HEADER_TIMESTAMP)?;
    let timestamp =
        timestamp.trim().parse::<i64>().map_err(|_| malformed(HEADER_TIMESTAMP, "not a whole number of seconds"))?;

    let nonce = get(HEADER_NONCE)?.trim().to_owned();
    match b64::decode(&nonce) {
        Some(bytes) if bytes.len() == NONCE_LEN => {}
        _ => return Err(malformed(HEADER_NONCE, "not 16 bytes in base64url")),
    }

    let signature = get(HEADER_SIGNATURE)?;
    let signature = b64::decode(signature.trim())
        .and_then(|bytes| <[u8; 64]>::try_from(bytes.as_slice()).ok())
        .map(|bytes| Signature::from_bytes(&bytes))
        .ok_or_else(|| malformed(HEADER_SIGNATURE, "not 64 bytes in base64url"))?;

    Ok(Claimed { agent_id, timestamp, nonce, signature })
}

/// Checks a claimed request against the agent's registered keys and the server's clock (`now`).
/// The caller then refuses a nonce it has seen (see the module's note on replays).
pub fn verify(
    claimed: &Claimed,
    public: &PublicKeys,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    now: i64,
    max_skew_secs: i64,
) -> Result<Verified, AuthError> {
    let age = now.saturating_sub(claimed.timestamp);
    if age > max_skew_secs {
        return Err(AuthError::TooOld { age_secs: age, max_skew_secs });
    }
    // Saturating: a timestamp of i64::MAX must be refused, not overflow.
    let ahead = age.saturating_neg();
    if ahead > max_skew_secs {
        return Err(AuthError::TooNew { ahead_secs: ahead, max_skew_secs });
    }
    let message = canonical(method, path_and_query, &claimed.agent_id, claimed.timestamp, &claimed.nonce, body)
        .map_err(|_| AuthError::BadSignature)?;
    public.verifying().verify_strict(message.as_bytes(), &claimed.signature).map_err(|_| AuthError::BadSignature)?;
    Ok(Verified {
        agent_id: claimed.agent_id.clone(),
        nonce: claimed.nonce.clone(),
        timestamp: claimed.timestamp,
        remember_until: claimed.timestamp.saturating_add(max_skew_secs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;
    const SKEW: i64 = 300;
    const PATH: &str = "/agent/v1/tasks?wait=30";
    const BODY: &[u8] = br#"{"task_id":"t-1"}"#;

    fn claimed_from(headers: &SignedHeaders) -> Claimed {
        parse_headers(|name| headers.get(name).map(str::to_owned)).expect("headers parse")
    }

    fn signed(keys: &AgentKeys) -> Claimed {
        claimed_from(&sign(keys, "agent-1", "POST", PATH, BODY, NOW).expect("sign"))
    }

    #[test]
    fn the_canonical_string_is_the_documented_one() {
        let text = canonical("post", PATH, "agent-1", NOW, "AAAAAAAAAAAAAAAAAAAAAA", b"").expect("canonical");
        assert_eq!(
            text,
            "rotator-agent-request-v1\nPOST\n/agent/v1/tasks?wait=30\nagent-1\n1800000000\n\
             AAAAAAAAAAAAAAAAAAAAAA\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn a_signed_request_verifies() {
        let keys = AgentKeys::generate().expect("keys");
        let claimed = signed(&keys);
        let verified = verify(&claimed, keys.public(), "POST", PATH, BODY, NOW + 10, SKEW).expect("verify");
        assert_eq!(verified.agent_id, "agent-1");
        assert_eq!(verified.timestamp, NOW);
        assert_eq!(verified.remember_until, NOW + SKEW);
        assert_eq!(verified.nonce, claimed.nonce);
    }

    #[test]
    fn the_method_is_compared_without_case() {
        let keys = AgentKeys::generate().expect("keys");
        let claimed = signed(&keys);
        assert!(verify(&claimed, keys.public(), "post", PATH, BODY, NOW, SKEW).is_ok());
    }

    #[test]
    fn any_change_to_the_request_breaks_the_signature() {
        let keys = AgentKeys::generate().expect("keys");
        let claimed = signed(&keys);
        let check =
            |method: &str, path: &str, body: &[u8]| verify(&claimed, keys.public(), method, path, body, NOW, SKEW);
        assert_eq!(check("PUT", PATH, BODY), Err(AuthError::BadSignature));
        assert_eq!(check("POST", "/agent/v1/task?wait=30", BODY), Err(AuthError::BadSignature));
        assert_eq!(check("POST", "/agent/v1/tasks?wait=31", BODY), Err(AuthError::BadSignature));
        assert_eq!(check("POST", "/agent/v1/tasks", BODY), Err(AuthError::BadSignature));
        assert_eq!(check("POST", PATH, b"{}"), Err(AuthError::BadSignature));

        let mut other = claimed.clone();
        other.agent_id = "agent-2".into();
        assert_eq!(verify(&other, keys.public(), "POST", PATH, BODY, NOW, SKEW), Err(AuthError::BadSignature));
        let mut other = claimed.clone();
        other.timestamp += 1;
        assert_eq!(verify(&other, keys.public(), "POST", PATH, BODY, NOW, SKEW), Err(AuthError::BadSignature));
        let mut other = claimed.clone();
        other.nonce = b64::encode(&[0u8; NONCE_LEN]);
        assert_eq!(verify(&other, keys.public(), "POST", PATH, BODY, NOW, SKEW), Err(AuthError::BadSignature));
    }

    #[test]
    fn another_agents_signature_is_refused() {
        let keys = AgentKeys::generate().expect("keys");
        let other = AgentKeys::generate().expect("keys");
        let claimed = signed(&other);
        assert_eq!(verify(&claimed, keys.public(), "POST", PATH, BODY, NOW, SKEW), Err(AuthError::BadSignature));
    }

    #[test]
    fn requests_outside_the_skew_window_are_refused_both_ways() {
        let keys = AgentKeys::generate().expect("keys");
        let claimed = signed(&keys);
        let at = |now| verify(&claimed, keys.public(), "POST", PATH, BODY, now, SKEW);
        assert!(at(NOW + SKEW).is_ok());
        assert!(at(NOW - SKEW).is_ok());
        assert_eq!(at(NOW + SKEW + 1), Err(AuthError::TooOld { age_secs: SKEW + 1, max_skew_secs: SKEW }));
        assert_eq!(at(NOW - SKEW - 1), Err(AuthError::TooNew { ahead_secs: SKEW + 1, max_skew_secs: SKEW }));
    }

    #[test]
    fn extreme_timestamps_are_refused_without_overflow() {
        let keys = AgentKeys::generate().expect("keys");
        for timestamp in [i64::MAX, i64::MIN] {
            let headers = sign(&keys, "agent-1", "GET", PATH, b"", timestamp).expect("sign");
            let claimed = claimed_from(&headers);
            let result = verify(&claimed, keys.public(), "GET", PATH, b"", -NOW, SKEW);
            assert!(matches!(result, Err(AuthError::TooOld { .. } | AuthError::TooNew { .. })));
        }
    }

    #[test]
    fn two_signatures_of_one_request_have_different_nonces() {
        let keys = AgentKeys::generate().expect("keys");
        assert_ne!(signed(&keys).nonce, signed(&keys).nonce);
    }

    #[test]
    fn missing_or_malformed_headers_are_named() {
        let keys = AgentKeys::generate().expect("keys");
        let good = sign(&keys, "agent-1", "GET", PATH, b"", NOW).expect("sign");
        for name in [HEADER_AGENT_ID, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE] {
            let result = parse_headers(|n| (n != name).then(|| good.get(n).map(str::to_owned)).flatten());
            assert_eq!(result, Err(AuthError::MissingHeader(name)));
        }
        let with = |name: &str, value: &str| {
            parse_headers(|n| if n == name { Some(value.to_owned()) } else { good.get(n).map(str::to_owned) })
        };
        let is_malformed = |result: Result<Claimed, AuthError>, header: &str| matches!(result, Err(AuthError::Malformed { header: h, .. }) if h == header);
        assert!(is_malformed(with(HEADER_TIMESTAMP, "soon"), HEADER_TIMESTAMP));
        assert!(is_malformed(with(HEADER_NONCE, "abc"), HEADER_NONCE));
        assert!(is_malformed(with(HEADER_SIGNATURE, "AAAA"), HEADER_SIGNATURE));
        assert!(is_malformed(with(HEADER_AGENT_ID, "agent 1"), HEADER_AGENT_ID));
        assert!(is_malformed(with(HEADER_AGENT_ID, ""), HEADER_AGENT_ID));
    }

    #[test]
    fn a_path_with_a_newline_cannot_be_signed() {
        let keys = AgentKeys::generate().expect("keys");
        assert!(matches!(
            sign(&keys, "agent-1", "GET", "/a\nb", b"", NOW),
            Err(AuthError::Unsignable { what: "path", .. })
        ));
        assert!(matches!(
            sign(&keys, "agent\n1", "GET", PATH, b"", NOW),
            Err(AuthError::Unsignable { what: "agent id", .. })
        ));
    }
}
