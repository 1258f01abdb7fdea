//! The configuration of the HTTP side: the address to listen on, and the API's bearer tokens with
//! their [`Role`]s, kept only as SHA-256 hashes so the file never holds a token.

use std::net::SocketAddr;

use serde::Deserialize;

use super::Env;

/// The `[http]` table as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    #[serde(default)]
    pub(super) tokens: Vec<RawToken>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawToken {
    pub(super) name: String,
    /// SHA-256 of the bearer token, hex: the file never holds the token itself.
    pub(super) sha256: String,
    pub(super) roles: Vec<Role>,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// What a caller of the HTTP API may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
pub enum Role {
    /// Dashboard, executions, history.
    #[serde(rename = "entra:read")]
    Read,
    /// Operator decisions, such as confirming the cleanup of a rollout that needs attention.
    #[serde(rename = "entra:write")]
    Write,
    /// Start a rotation (or a dry run).
    #[serde(rename = "entra:rotate")]
    Rotate,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "entra:read",
            Self::Write => "entra:write",
            Self::Rotate => "entra:rotate",
        }
    }
}

/// An HTTP API token: its name (who is calling, for the audit trail), the SHA-256 of the token, its
/// roles. The token itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub name: String,
    pub sha256: [u8; 32],
    pub roles: Vec<Role>,
}

/// The address to listen on: `$ROTATOR_LISTEN`, else the file's `listen`, else the default. A bad
/// address is reported in `errors` and the default stands in, so the other errors still show.
pub(super) fn listen(written: Option<String>, env: &dyn Env, errors: &mut Vec<String>) -> SocketAddr {
    let listen_text = env.var("ROTATOR_LISTEN").or(written).unwrap_or_else(|| DEFAULT_LISTEN.into());
    listen_text.parse().unwrap_or_else(|_| {
        errors.push(format!("listen: {listen_text:?} is not an address such as 127.0.0.1:8080"));
        SocketAddr::from(([127, 0, 0, 1], 8080))
    })
}

/// The `[[http.tokens]]` tables, each with a name, a well-formed hash and at least one role.
pub(super) fn api_tokens(written: Vec<RawToken>, errors: &mut Vec<String>) -> Vec<ApiToken> {
    let mut api_tokens = Vec::new();
    for (i, t) in written.into_iter().enumerate() {
        let at = format!("http.tokens[{i}]");
        let mut sha256 = [0u8; 32];
        match hex::decode_to_slice(t.sha256.trim(), &mut sha256).ok().map(|()| sha256) {
            // One token with two entries would get whichever roles are found last: refused.
            Some(sha256) if api_tokens.iter().any(|a: &ApiToken| a.sha256 == sha256) => errors.push(format!(
                "{at}.sha256: the same token hash as another [[http.tokens]] entry; give each token one entry"
            )),
            Some(sha256) if !t.roles.is_empty() && !t.name.trim().is_empty() => {
                api_tokens.push(ApiToken { name: t.name, sha256, roles: t.roles })
            }
            Some(_) => errors.push(format!("{at}: give a name and at least one role")),
            None => errors.push(format!(
                "{at}.sha256: must be 64 hex digits, the SHA-256 of the token (printf %s TOKEN | sha256sum)"
            )),
        }
    }
    api_tokens
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{MINIMAL, env, err, parse};

    #[test]
    fn api_tokens_are_kept_hashed_with_their_roles() {
        let hash = "a".repeat(64);
        let text = format!(
            "{MINIMAL}\n[[http.tokens]]\nname = \"ops\"\nsha256 = \"{hash}\"\nroles = [\"entra:read\", \"entra:rotate\"]\n"
        );
        let c = parse(&text, &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")])).unwrap();
        assert_eq!(c.api_tokens[0].roles, vec![Role::Read, Role::Rotate]);
        assert_eq!(c.api_tokens[0].sha256, [0xaa; 32]);
        let upper =
            parse(&text.replace(&hash, &"A".repeat(64)), &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")])).unwrap();
        assert_eq!(upper.api_tokens[0].sha256, [0xaa; 32]);
        let bad = text.replace(&hash, "not-hex");
        assert!(err(&bad, &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")])).contains("http.tokens[0].sha256"));
        let twice =
            format!("{text}\n[[http.tokens]]\nname = \"other\"\nsha256 = \"{hash}\"\nroles = [\"entra:write\"]\n");
        assert!(
            err(&twice, &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")])).contains("http.tokens[1].sha256: the same")
        );
        let bad_role = text.replace("entra:rotate", "entra:admin");
        assert!(err(&bad_role, &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")])).contains("entra:admin"));
    }
}
