//! AWS outbound identity federation to Entra workload identity federation, both sides simulated:
//!
//! - **AWS STS `GetWebIdentityToken`** (the AWS Query protocol, `POST /aws/sts/`): a caller signed
//!   in with an access key registered by [`Federation::add_aws_role`] gets a JWT for the requested
//!   audience, signed RS256 by this simulated account's issuer, `sub` being the caller's role ARN,
//!   valid `DurationSeconds` (60 to 3600, default 300). The request's SigV4 `Authorization` header
//!   is verified as STS verifies it ([`authenticate`]): the access key must be known
//!   (`InvalidClientTokenId`), and so must its session token when it has one; the credential scope
//!   must be the request's day, a region, `sts` and `aws4_request`; `X-Amz-Date` within five minutes
//!   of now (else `SignatureDoesNotMatch`, "Signature expired"); and the signature, recomputed here
//!   from the request as received (method, path, query, signed headers, body), must match
//!   (`SignatureDoesNotMatch`). Any region is accepted: the sim stands for every regional endpoint.
//! - **The issuer's discovery documents**: `GET /aws/issuer/{id}/.well-known/openid-configuration`
//!   and its `jwks.json`, as Entra reads them.
//! - **Entra's side** ([`check_federated_assertion`], called by the token endpoint): the assertion's
//!   signature is verified against the issuer's key; `iss` and `sub` must match a federated
//!   identity credential of the client application ([`Federation::add_federated_credential`]),
//!   `aud` one of its audiences, and the time window must be current (five minutes' skew), with
//!   Entra's AADSTS codes for each refusal.

use std::sync::OnceLock;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{self, KeyPair as _, RsaPublicKeyComponents};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::macros::format_description;
use uuid::Uuid;

use crate::clock::wall_clock_now;
use crate::error::TokenError;
use crate::lock;
use crate::server::{AppState, Shared};
use crate::sigv4::{AwsPrincipal, encode, hex, same_signature, signature};

/// The audience Entra expects in a federated assertion.
pub const ENTRA_TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";
const SKEW_SECS: i64 = 300;

/// What the sim knows of federation: the roles STS answers for, the issuer's key, and the
/// federated identity credentials of applications.
#[derive(Debug, Default)]
pub(crate) struct FederationState {
    /// access key id → the principal STS knows by it.
    principals: std::collections::BTreeMap<String, AwsPrincipal>,
    /// (client id, issuer, subject, audiences).
    credentials: Vec<(Uuid, String, String, Vec<String>)>,
    tokens_issued: usize,
}

/// The simulated account's issuer: an id (in its URL) and an RSA key, made once.
struct Issuer {
    id: Uuid,
    key: KeyPair,
}

fn issuer() -> &'static Issuer {
    static ISSUER: OnceLock<Issuer> = OnceLock::new();
    ISSUER.get_or_init(|| Issuer {
        id: Uuid::new_v4(),
        key: KeyPair::generate(KeySize::Rsa2048).expect("an RSA key is generated"),
    })
}

fn kid() -> String {
    format!("sim-{}", &issuer().id.simple().to_string()[..8])
}

/// The issuer URL of this sim's AWS account, as `GetWebIdentityToken`'s tokens name it.
pub(crate) fn issuer_url(shared: &Shared) -> String {
    format!("{}aws/issuer/{}", shared.base_url, issuer().id)
}

/// The simulated federation, behind [`crate::Sim::federation`].
pub struct Federation {
    pub(crate) shared: std::sync::Arc<Shared>,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Federation")
    }
}

impl Federation {
    /// STS answers callers who sign with `access_key_id` and `secret_access_key` (and send
    /// `session_token`, for temporary credentials) as the role `role_arn`.
    pub fn add_aws_role(
        &self,
        access_key_id: &str,
        secret_access_key: &str,
        session_token: Option<&str>,
        role_arn: &str,
    ) {
        let principal = AwsPrincipal {
            secret_access_key: secret_access_key.to_owned(),
            session_token: session_token.map(str::to_owned),
            arn: role_arn.to_owned(),
        };
        lock(&self.shared.federation).principals.insert(access_key_id.to_owned(), principal);
    }

    /// A federated identity credential on the application `client_id` (the management
    /// application's too): Entra accepts assertions from `issuer` about `subject` for `audience`.
    pub fn add_federated_credential(&self, client_id: Uuid, issuer: &str, subject: &str, audience: &str) {
        lock(&self.shared.federation).credentials.push((
            client_id,
            issuer.to_owned(),
            subject.to_owned(),
            vec![audience.to_owned()],
        ));
    }

    /// This sim's AWS issuer URL (the `iss` of its web identity tokens).
    pub fn aws_issuer(&self) -> String {
        issuer_url(&self.shared)
    }

    /// The STS endpoint to give an AWS SDK (`…/aws/sts/`).
    pub fn sts_endpoint(&self) -> String {
        format!("{}aws/sts/", self.shared.base_url)
    }

    /// How many web identity tokens STS issued.
    pub fn tokens_issued(&self) -> usize {
        lock(&self.shared.federation).tokens_issued
    }

    /// A token as STS would issue it, with these claims replaced or added (for refusal tests).
    pub fn sign_token(&self, claims: &Value) -> String {
        sign(claims)
    }
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/aws/sts/", post(sts))
        .route("/aws/issuer/{id}/.well-known/openid-configuration", get(openid_configuration))
        .route("/aws/issuer/{id}/.well-known/jwks.json", get(jwks))
}

fn sign(claims: &Value) -> String {
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": kid()});
    let input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let key = &issuer().key;
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(&signature::RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut signature)
        .expect("RS256 signs");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// STS's error document (the AWS Query protocol's `ErrorResponse`).
pub(crate) fn sts_error_body(kind: &str, code: &str, message: &str) -> String {
    format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>{kind}</Type>\
         <Code>{code}</Code><Message>{message}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
        Uuid::new_v4()
    )
}

fn sts_error(status: StatusCode, code: &str, message: &str) -> Response {
    let kind = if status.is_server_error() { "Receiver" } else { "Sender" };
    (status, [(header::CONTENT_TYPE, "text/xml")], sts_error_body(kind, code, message)).into_response()
}

const SIGNATURE_MISMATCH: &str = "The request signature we calculated does not match the signature you provided. \
     Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";
const INVALID_TOKEN: &str = "The security token included in the request is invalid.";
const AMZ_DATE: &[time::format_description::FormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second]Z");

/// An STS refusal: the status, STS's error code and its message.
struct Refusal(StatusCode, &'static str, String);

/// STS's checks of a SigV4-signed request: the role ARN of the principal that signed it, or STS's
/// refusal.
fn authenticate(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<String, Refusal> {
    let forbidden = |code: &'static str, message: &str| Refusal(StatusCode::FORBIDDEN, code, message.to_owned());
    let incomplete = |message: &str| Refusal(StatusCode::BAD_REQUEST, "IncompleteSignature", message.to_owned());
    let Some(authorization) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("AWS4-HMAC-SHA256 "))
    else {
        return Err(forbidden("MissingAuthenticationToken", "Request is missing Authentication Token"));
    };
    let part =
        |name: &str| authorization.split(',').map(str::trim).find_map(|p| p.strip_prefix(name)?.strip_prefix('='));
    let (Some(credential), Some(signed_headers), Some(given)) =
        (part("Credential"), part("SignedHeaders"), part("Signature"))
    else {
        return Err(incomplete(
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters.",
        ));
    };
    let [key_id, day, region, service, terminator] = credential.split('/').collect::<Vec<_>>()[..] else {
        return Err(incomplete(
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term.",
        ));
    };
    let principal = lock(&shared.federation).principals.get(key_id).cloned();
    let Some(principal) = principal else {
        return Err(forbidden("InvalidClientTokenId", INVALID_TOKEN));
    };
    let token = headers.get("x-amz-security-token").and_then(|v| v.to_str().ok());
    if token != principal.session_token.as_deref() {
        return Err(forbidden("InvalidClientTokenId", INVALID_TOKEN));
    }
    let Some(date) = headers.get("x-amz-date").and_then(|v| v.to_str().ok()) else {
        return Err(incomplete("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."));
    };
    let Ok(at) = time::PrimitiveDateTime::parse(date, AMZ_DATE).map(time::PrimitiveDateTime::assume_utc) else {
        return Err(incomplete("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\""));
    };
    if day != &date[..8] {
        return Err(forbidden(
            "SignatureDoesNotMatch",
            &format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{day}' != '{}', from '{date}'.",
                &date[..8]
            ),
        ));
    }
    if service != "sts" {
        return Err(forbidden(
            "SignatureDoesNotMatch",
            &format!("Credential should be scoped to correct service: 'sts'. (not '{service}')"),
        ));
    }
    if terminator != "aws4_request" {
        return Err(forbidden(
            "SignatureDoesNotMatch",
            &format!("Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'."),
        ));
    }
    if !is_region(region) {
        return Err(forbidden(
            "SignatureDoesNotMatch",
            &format!("Credential should be scoped to a valid region, not '{region}'."),
        ));
    }
    let skew = time::Duration::seconds(SKEW_SECS);
    let format = |t: OffsetDateTime| t.format(AMZ_DATE).unwrap_or_default();
    if now - at > skew {
        return Err(forbidden(
            "SignatureDoesNotMatch",
            &format!("Signature expired: {date} is now earlier than {} ({} - 5 min.)", format(now - skew), format(now)),
        ));
    }
    if at - now > skew {
        return Err(forbidden(
            "SignatureDoesNotMatch",
            &format!(
                "Signature not yet current: {date} is still later than {} ({} + 5 min.)",
                format(now + skew),
                format(now)
            ),
        ));
    }
    let signed: Vec<&str> = signed_headers.split(';').collect();
    if !signed.contains(&"host") {
        return Err(forbidden(
            "SignatureDoesNotMatch",
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }
    let expected = signature(
        &principal.secret_access_key,
        day,
        region,
        "sts",
        &string_to_sign(
            date,
            &format!("{day}/{region}/sts/aws4_request"),
            &canonical_request(method, uri, headers, &signed, signed_headers, body),
        ),
    );
    if !same_signature(&expected, given) {
        return Err(forbidden("SignatureDoesNotMatch", SIGNATURE_MISMATCH));
    }
    Ok(principal.arn)
}

/// An AWS region name as the partitions spell them: `eu-west-1`, `us-gov-east-1`, `cn-north-1`.
fn is_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts[..parts.len() - 1].iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

/// SigV4's canonical request for the request as received: the path with each segment encoded again
/// (as every service but S3 signs it), the query sorted, the signed headers' values trimmed with
/// inner runs of spaces collapsed (repeated headers joined by commas), and the body's SHA-256.
fn canonical_request(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    signed: &[&str],
    signed_headers: &str,
    body: &[u8],
) -> String {
    let path: Vec<String> = uri.path().split('/').map(encode).collect();
    let path = if path.join("/").is_empty() { "/".to_owned() } else { path.join("/") };
    let mut query: Vec<(String, String)> = url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .map(|(k, v)| (encode(&k), encode(&v)))
        .collect();
    query.sort();
    let query = query.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    let value_of = |name: &str| -> String {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        if values.is_empty() && name == "host" {
            // HTTP/2 carries the host as the `:authority` pseudo-header, which is the URI's.
            return uri.authority().map(|a| a.as_str().to_owned()).unwrap_or_default();
        }
        values.join(",")
    };
    let canonical_headers: String = signed.iter().map(|h| format!("{h}:{}\n", value_of(h))).collect();
    format!("{method}\n{path}\n{query}\n{canonical_headers}\n{signed_headers}\n{}", hex(&Sha256::digest(body)))
}

fn string_to_sign(date: &str, scope: &str, canonical_request: &str) -> String {
    format!("AWS4-HMAC-SHA256\n{date}\n{scope}\n{}", hex(&Sha256::digest(canonical_request.as_bytes())))
}

async fn sts(State(shared): State<AppState>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let role = match authenticate(&shared, &method, &uri, &headers, &body, wall_clock_now()) {
        Ok(role) => role,
        Err(Refusal(status, code, message)) => return sts_error(status, code, &message),
    };
    let form: Vec<(String, String)> =
        url::form_urlencoded::parse(&body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    if field("Action") != Some("GetWebIdentityToken") || field("Version") != Some("2011-06-15") {
        return sts_error(StatusCode::BAD_REQUEST, "InvalidAction", "Only GetWebIdentityToken is simulated");
    }
    let audiences: Vec<&str> =
        form.iter().filter(|(k, _)| k.starts_with("Audience.member.")).map(|(_, v)| v.as_str()).collect();
    if audiences.is_empty() {
        return sts_error(StatusCode::BAD_REQUEST, "ValidationError", "Audience is required");
    }
    if field("SigningAlgorithm").is_some_and(|a| a != "RS256" && a != "ES384") {
        return sts_error(StatusCode::BAD_REQUEST, "ValidationError", "SigningAlgorithm must be RS256 or ES384");
    }
    let duration = match field("DurationSeconds").map(str::parse::<i64>) {
        None => 300,
        Some(Ok(d)) if (60..=3600).contains(&d) => d,
        Some(_) => {
            return sts_error(StatusCode::BAD_REQUEST, "ValidationError", "DurationSeconds must be from 60 to 3600");
        }
    };
    let now = wall_clock_now().unix_timestamp();
    let aud: Value = if audiences.len() == 1 { json!(audiences[0]) } else { json!(audiences) };
    let claims = json!({
        "iss": issuer_url(&shared), "sub": role, "aud": aud, "iat": now, "nbf": now, "exp": now + duration,
        "jti": Uuid::new_v4().to_string(),
        "https://sts.amazonaws.com/": {"aws_account": "123456789012", "source_region": "eu-west-1"},
    });
    let token = sign(&claims);
    lock(&shared.federation).tokens_issued += 1;
    let expiration = time::OffsetDateTime::from_unix_timestamp(now + duration)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default();
    let body = format!(
        "<GetWebIdentityTokenResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
         <GetWebIdentityTokenResult><WebIdentityToken>{token}</WebIdentityToken><Expiration>{expiration}</Expiration>\
         </GetWebIdentityTokenResult><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata>\
         </GetWebIdentityTokenResponse>",
        Uuid::new_v4()
    );
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

async fn openid_configuration(State(shared): State<AppState>, Path(id): Path<String>) -> Response {
    if id != issuer().id.to_string() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let issuer = issuer_url(&shared);
    axum::Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES384"],
    }))
    .into_response()
}

async fn jwks(Path(id): Path<String>) -> Response {
    if id != issuer().id.to_string() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let public = issuer().key.public_key();
    axum::Json(json!({"keys": [{
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid(),
        "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
        "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
    }]}))
    .into_response()
}

fn refuse(aadsts: u32, description: impl Into<String>) -> TokenError {
    TokenError::new(StatusCode::UNAUTHORIZED, "invalid_client", aadsts, description)
}

/// Whether `claims` name this sim's AWS issuer: such an assertion is a federated one.
pub(crate) fn is_federated(shared: &Shared, claims: &Value) -> bool {
    claims.get("iss").and_then(Value::as_str) == Some(issuer_url(shared).as_str())
}

/// Entra's checks of a federated assertion for `client_id`.
pub(crate) fn check_federated_assertion(
    shared: &Shared,
    client_id: Uuid,
    assertion: &str,
    claims: &Value,
) -> Result<(), TokenError> {
    let (signed, signature) = assertion.rsplit_once('.').ok_or_else(|| refuse(50013, "Assertion is not a JWT."))?;
    let signature =
        URL_SAFE_NO_PAD.decode(signature).map_err(|_| refuse(50013, "Assertion signature is not valid."))?;
    let public = issuer().key.public_key();
    let components = RsaPublicKeyComponents {
        n: public.modulus().big_endian_without_leading_zero(),
        e: public.exponent().big_endian_without_leading_zero(),
    };
    components
        .verify(&signature::RSA_PKCS1_2048_8192_SHA256, signed.as_bytes(), &signature)
        .map_err(|_| refuse(50013, "Assertion failed signature validation."))?;
    let issuer = claims.get("iss").and_then(Value::as_str).unwrap_or_default();
    let subject = claims.get("sub").and_then(Value::as_str).unwrap_or_default();
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let state = lock(&shared.federation);
    let of_client: Vec<_> = state.credentials.iter().filter(|c| c.0 == client_id && c.1 == issuer).collect();
    if of_client.is_empty() {
        return Err(refuse(
            700211,
            format!("No matching federated identity record found for presented assertion issuer '{issuer}'."),
        ));
    }
    let Some(credential) = of_client.iter().find(|c| c.2 == subject) else {
        return Err(refuse(
            700213,
            format!("No matching federated identity record found for presented assertion subject '{subject}'."),
        ));
    };
    if !audiences.iter().any(|a| credential.3.iter().any(|c| c == a)) {
        return Err(refuse(
            700212,
            format!(
                "No matching federated identity record found for presented assertion audience '{}'.",
                audiences.join(",")
            ),
        ));
    }
    let now = wall_clock_now().unix_timestamp();
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    let nbf = claims.get("nbf").or_else(|| claims.get("iat")).and_then(Value::as_i64).unwrap_or(i64::MAX);
    if exp + SKEW_SECS < now || nbf - SKEW_SECS > now {
        return Err(refuse(700024, "Client assertion is not within its valid time range."));
    }
    Ok(())
}
