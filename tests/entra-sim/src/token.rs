//! The Entra token endpoint, client credentials grant only: `POST /{tenant}/oauth2/v2.0/token` with
//! either a client secret or a client assertion (a JWT).
//!
//! Secrets that sign in: the management application's, and any password the sim itself created
//! (through `addPassword` or the tenant handle) on an application or on its service principal — but
//! only once the replication delay has passed since its creation (sim clock), from its start, and
//! before its end. A new secret that has not replicated yet is refused exactly like a wrong one, as
//! Entra refuses it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::clock::wall_clock_now;
use crate::error::TokenError;
use crate::lock;
use crate::server::{AppState, Audience, IssuedToken, Shared};
use crate::state::{Collection, PasswordCredential};

/// Lifetime of an access token, as Entra reports it (`expires_in`).
const TOKEN_LIFETIME_SECS: u64 = 3599;

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The application id of Microsoft Graph, which scopes may name instead of its URI.
const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

pub(crate) async fn token(State(shared): State<AppState>, Path(tenant): Path<String>, body: Bytes) -> Response {
    match issue(&shared, &tenant, &body) {
        Ok(body) => {
            let mut response = (StatusCode::OK, axum::Json(body)).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store, no-cache"));
            headers.insert(header::PRAGMA, header::HeaderValue::from_static("no-cache"));
            response
        }
        Err(error) => {
            tracing::debug!(status = %error.status(), "token request refused");
            error.into_response()
        }
    }
}

/// The OpenID discovery document, for clients (MSAL-style) that read it before asking for a token.
pub(crate) async fn openid_configuration(State(shared): State<AppState>, Path(tenant): Path<String>) -> Response {
    if !is_this_tenant(&shared, &tenant) {
        return tenant_not_found(&tenant).into_response();
    }
    let base = shared.graph_base.origin().ascii_serialization();
    axum::Json(json!({
        "issuer": format!("{base}/{}/v2.0", shared.tenant_id),
        "token_endpoint": format!("{base}/{}/oauth2/v2.0/token", shared.tenant_id),
        "authorization_endpoint": format!("{base}/{}/oauth2/v2.0/authorize", shared.tenant_id),
        "jwks_uri": format!("{base}/{}/discovery/v2.0/keys", shared.tenant_id),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "grant_types_supported": ["client_credentials"],
        "tenant_region_scope": "EU",
    }))
    .into_response()
}

fn is_this_tenant(shared: &Shared, tenant: &str) -> bool {
    Uuid::parse_str(tenant).is_ok_and(|t| t == shared.tenant_id)
}

fn tenant_not_found(tenant: &str) -> TokenError {
    TokenError::new(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        90002,
        format!(
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
        ),
    )
}

fn missing(parameter: &str) -> TokenError {
    TokenError::new(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        900144,
        format!("The request body must contain the following parameter: '{parameter}'."),
    )
}

fn invalid_secret(client_id: Uuid) -> TokenError {
    TokenError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        7000215,
        format!(
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
        ),
    )
}

fn expired_secret(client_id: Uuid) -> TokenError {
    TokenError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        7000222,
        format!("The provided client secret keys for app '{client_id}' are expired."),
    )
}

fn invalid_assertion(reason: &str) -> TokenError {
    // Approximated: Entra has several AADSTS codes for bad assertions; 700027 covers signature and
    // key problems, which is what a malformed or unexpected assertion amounts to here.
    TokenError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        700027,
        format!("Client assertion failed validation: {reason}."),
    )
}

fn issue(shared: &Shared, tenant: &str, body: &[u8]) -> Result<Value, TokenError> {
    if !is_this_tenant(shared, tenant) {
        return Err(tenant_not_found(tenant));
    }
    // The first occurrence of a parameter wins.
    let mut form: HashMap<String, String> = HashMap::new();
    for (key, value) in url::form_urlencoded::parse(body) {
        form.entry(key.into_owned()).or_insert_with(|| value.into_owned());
    }
    let field = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());

    let grant_type = field("grant_type").ok_or_else(|| missing("grant_type"))?;
    if grant_type != "client_credentials" {
        return Err(TokenError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{grant_type}'."),
        ));
    }
    let raw_client_id = field("client_id").ok_or_else(|| missing("client_id"))?;
    let scope = field("scope").ok_or_else(|| missing("scope"))?;
    let audience = check_scope(shared, tenant, scope)?;

    let unknown_client = || {
        TokenError::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{raw_client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        )
    };
    let client_id = Uuid::parse_str(raw_client_id).map_err(|_| unknown_client())?;
    let is_management = client_id == shared.management_client_id;
    let has_certificate = {
        let directory = lock(&shared.directory);
        match directory.store(Collection::Applications).by_app_id(client_id) {
            Some(app) => !app.keys.is_empty(),
            None if is_management => true,
            None => return Err(unknown_client()),
        }
    };

    match (field("client_secret"), field("client_assertion")) {
        (Some(secret), _) => {
            check_secret(shared, client_id, secret)?;
            crate::sign_ins::note(shared, client_id, secret);
        }
        (None, Some(assertion)) => {
            if field("client_assertion_type") != Some(JWT_BEARER) {
                return Err(TokenError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    50027,
                    format!("Invalid client_assertion_type; expected '{JWT_BEARER}'."),
                ));
            }
            match assertion_claims(assertion) {
                Some(claims) if crate::federation::is_federated(shared, &claims) => {
                    crate::federation::check_federated_assertion(shared, client_id, assertion, &claims)?;
                }
                _ => {
                    check_assertion(client_id, assertion)?;
                    if crate::client_certs::has_registered(shared, client_id) {
                        let header = assertion_header(assertion).unwrap_or_default();
                        let claims = assertion_claims(assertion).unwrap_or_default();
                        let endpoint = format!("{}{tenant}/oauth2/v2.0/token", shared.base_url);
                        crate::client_certs::check(shared, client_id, assertion, &header, &claims, &endpoint)?;
                    } else if !has_certificate {
                        return Err(invalid_assertion("the application has no certificate credential"));
                    }
                }
            }
        }
        (None, None) => {
            return Err(TokenError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            ));
        }
    }

    let access_token = new_access_token();
    {
        let mut tokens = lock(&shared.tokens);
        let now = Instant::now();
        tokens.retain(|_, t| t.expires > now);
        tokens.insert(
            access_token.clone(),
            IssuedToken { client_id, audience, expires: now + Duration::from_secs(TOKEN_LIFETIME_SECS) },
        );
    }
    Ok(json!({
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME_SECS,
        "ext_expires_in": TOKEN_LIFETIME_SECS,
        "access_token": access_token,
    }))
}

/// Client credentials need `{resource}/.default`. The resources here: Microsoft Graph (named by its
/// URI, its application id, or the sim's own origin), Key Vault (`https://vault.azure.net`) and Azure
/// Resource Manager (`https://management.azure.com`, also with its legacy `https://management.core.windows.net`).
/// One token is for one resource: scopes naming two are refused (AADSTS70011), as Entra does.
fn check_scope(shared: &Shared, tenant: &str, scope: &str) -> Result<Audience, TokenError> {
    let own_origin = shared.graph_base.origin().ascii_serialization();
    let mut audience = None;
    for item in scope.split_whitespace() {
        let Some(resource) = item.strip_suffix("/.default") else {
            return Err(TokenError::new(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                1002012,
                format!(
                    "The provided value for scope {item} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                ),
            ));
        };
        let resource = resource.trim_end_matches('/');
        let this = if resource.eq_ignore_ascii_case("https://graph.microsoft.com")
            || resource.eq_ignore_ascii_case(GRAPH_APP_ID)
            || resource.eq_ignore_ascii_case(&own_origin)
        {
            Some(Audience::Graph)
        } else if resource.eq_ignore_ascii_case(crate::kubernetes::AKS_SERVER_APP_ID) {
            Some(Audience::AksServer)
        } else if resource.eq_ignore_ascii_case("https://vault.azure.net") {
            Some(Audience::KeyVault)
        } else if resource.eq_ignore_ascii_case("https://management.azure.com")
            || resource.eq_ignore_ascii_case("https://management.core.windows.net")
        {
            Some(Audience::Management)
        } else {
            None
        };
        let Some(this) = this else {
            return Err(TokenError::new(
                StatusCode::BAD_REQUEST,
                "invalid_resource",
                500011,
                format!(
                    "The resource principal named {resource} was not found in the tenant named {tenant}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant."
                ),
            ));
        };
        if audience.is_some_and(|a| a != this) {
            return Err(TokenError::new(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                70011,
                format!(
                    "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
                ),
            ));
        }
        audience = Some(this);
    }
    audience.ok_or_else(|| missing("scope"))
}

/// Whether `secret` signs in as `client_id` now: the token endpoint's own check, also used by the
/// simulated web app to tell whether the secret its process holds still works.
pub(crate) fn check_secret(shared: &Shared, client_id: Uuid, secret: &str) -> Result<(), TokenError> {
    let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    if client_id == shared.management_client_id {
        return if digest == shared.management_secret_sha256 { Ok(()) } else { Err(invalid_secret(client_id)) };
    }
    let now = shared.clock.now();
    let directory = lock(&shared.directory);
    // A service principal's own passwords sign in as its application too.
    let passwords = [Collection::Applications, Collection::ServicePrincipals]
        .into_iter()
        .filter_map(|c| directory.store(c).by_app_id(client_id))
        .flat_map(|object| object.passwords.iter());
    let matching: Vec<&PasswordCredential> =
        passwords.filter(|p| p.secret.as_ref().is_some_and(|s| s.sha256 == digest)).collect();
    let replicated = |p: &&PasswordCredential| {
        p.secret.as_ref().is_some_and(|s| s.created_at + shared.replication_delay <= now) && p.start <= now
    };
    match matching.into_iter().filter(replicated).map(|p| p.end).max() {
        Some(end) if end > now => Ok(()),
        Some(_) => Err(expired_secret(client_id)),
        None => Err(invalid_secret(client_id)),
    }
}

/// The header of a JWT, unverified.
fn assertion_header(assertion: &str) -> Option<Value> {
    let header = assertion.split('.').next()?;
    let bytes = URL_SAFE_NO_PAD.decode(header.trim_end_matches('=')).ok()?;
    serde_json::from_slice::<Value>(&bytes).ok().filter(Value::is_object)
}

/// The claims of a JWT, unverified.
fn assertion_claims(assertion: &str) -> Option<Value> {
    let payload = assertion.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice::<Value>(&bytes).ok().filter(Value::is_object)
}

/// Checks that the assertion is a well-formed JWT naming the client as issuer and subject, within its
/// time window (real time, with five minutes' skew). The signature is NOT verified: the sim does not
/// hold the certificates' public keys, and what it tests is the product's flow, not cryptography.
fn check_assertion(client_id: Uuid, assertion: &str) -> Result<(), TokenError> {
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, payload, _signature] = parts.as_slice() else {
        return Err(invalid_assertion("not a JWT"));
    };
    let decode = |part: &str| -> Option<Value> {
        let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
        serde_json::from_slice::<Value>(&bytes).ok().filter(Value::is_object)
    };
    let header = decode(header).ok_or_else(|| invalid_assertion("the JWT header is not valid"))?;
    let claims = decode(payload).ok_or_else(|| invalid_assertion("the JWT payload is not valid"))?;
    if header.get("alg").and_then(Value::as_str).is_none() {
        return Err(invalid_assertion("the JWT header has no alg"));
    }
    let names_client = |claim: &str| {
        claims.get(claim).and_then(Value::as_str).and_then(|v| Uuid::parse_str(v).ok()) == Some(client_id)
    };
    if !names_client("iss") || !names_client("sub") {
        return Err(invalid_assertion("iss and sub must be the client id"));
    }
    let now = wall_clock_now().unix_timestamp();
    const SKEW: i64 = 300;
    if claims.get("exp").and_then(Value::as_i64).is_some_and(|exp| exp + SKEW < now) {
        return Err(TokenError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700024,
            "Client assertion is not within its valid time range.",
        ));
    }
    if claims.get("nbf").and_then(Value::as_i64).is_some_and(|nbf| nbf - SKEW > now) {
        return Err(TokenError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700024,
            "Client assertion is not within its valid time range.",
        ));
    }
    Ok(())
}

/// An opaque, unguessable access token.
fn new_access_token() -> String {
    let mut bytes = [0u8; 48];
    rand::rng().fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        format!("{header}.{payload}.c2lnbmF0dXJl")
    }

    #[test]
    fn assertions_must_name_the_client_as_issuer_and_subject_and_be_current() {
        let client = Uuid::new_v4();
        let now = wall_clock_now().unix_timestamp();
        let good = jwt(json!({ "iss": client.to_string(), "sub": client.to_string(), "exp": now + 600 }));
        assert!(check_assertion(client, &good).is_ok());
        let other = jwt(json!({ "iss": Uuid::new_v4().to_string(), "sub": client.to_string() }));
        assert!(check_assertion(client, &other).is_err());
        let expired = jwt(json!({ "iss": client.to_string(), "sub": client.to_string(), "exp": now - 3600 }));
        assert!(check_assertion(client, &expired).is_err());
        assert!(check_assertion(client, "not-a-jwt").is_err());
        assert!(check_assertion(client, "a.b.c").is_err());
    }

    #[test]
    fn access_tokens_are_long_and_distinct() {
        let a = new_access_token();
        assert_eq!(a.len(), 64);
        assert_ne!(a, new_access_token());
    }
}
