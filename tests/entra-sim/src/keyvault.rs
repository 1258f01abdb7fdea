//! Azure Key Vault's secrets data plane, under `/vaults/{vault}` (the URL
//! [`crate::Sim::key_vault_url`] gives is what `https://{vault}.vault.azure.net` is to a real client):
//!
//! - `PUT /secrets/{name}` — a new version every time (not idempotent, like the real one); body
//!   `{value, contentType?, attributes?{enabled?, nbf?, exp?}, tags?}`; answers the SecretBundle.
//! - `GET /secrets/{name}` (the newest enabled version), `GET /secrets/{name}/{version}` — with the
//!   value; `404 SecretNotFound` otherwise, and `403 Forbidden` / `SecretDisabled` for a version that
//!   is disabled.
//! - `PATCH /secrets/{name}/{version}` — update a version's `contentType`, `attributes` (`enabled`,
//!   `nbf`, `exp`) or `tags` (replaced as a whole when given); answers the bundle without its value.
//!   Needs the right to set secrets.
//! - `GET /secrets/{name}/versions`, `GET /secrets` — ids and attributes, never values, paged by
//!   `maxresults` (1–25, default 25) and an absolute `nextLink` carrying `$skiptoken`. Versions come
//!   in the order of their ids, not of their creation: Key Vault's order is not chronological (the
//!   author of the lowkey-vault emulator found it follows the version hashes, lowkey-vault issues
//!   #428 and #467), so a client must read `attributes.created`, never the position. The versions
//!   of a secret that does not exist are an empty page (`200 {"value":[],"nextLink":null}`), which is
//!   what Key Vault answers as far as we know (not verified against the live service; the published
//!   examples only show a secret that exists).
//!
//! Where it is strict, as Key Vault is:
//!
//! - **Challenge first.** Every request without a valid bearer gets `401` with
//!   `WWW-Authenticate: Bearer authorization="{authority_host}{tenant}", resource="https://vault.azure.net"`
//!   and `{"error":{"code":"Unauthorized","message":"AKV10000: …"}}`. The official client
//!   (`azure_security_keyvault_secrets` 1.x) sends its first request without a token (and without its
//!   body) to read this challenge, then asks for a token for the resource it names and resends. The
//!   challenge's resource (`vault.azure.net`) is not the sim's host, so that client must be built
//!   with `verify_challenge_resource: Some(false)` to talk to the sim.
//! - **Audience.** Only a token issued for `https://vault.azure.net/.default` is accepted (401
//!   `AKV10022` otherwise).
//! - **`api-version`** must be present (any value): `400 BadParameter` otherwise.
//! - **Rights** per vault and client ([`crate::VaultRole`]): without one the answer is Key Vault's RBAC
//!   `403 Forbidden` / `ForbiddenByRbac` naming the caller, the data action and the vault.
//! - **Names** 1–127 of `[0-9a-zA-Z-]`, a `value`, at most 15 tags: `400 BadParameter` otherwise.
//!
//! An unknown vault name would fail at DNS for a real client; the sim answers `404 VaultNotFound`
//! with a body saying so (checked before anything else, as DNS would be). The vault's resource id
//! in 403 messages uses a fixed placeholder subscription and resource group, since a simulated vault
//! belongs to none. Throttling (`429` with or without `Retry-After`) and 5xx come from the fault
//! queue, in Key Vault's error shape.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use crate::azure::{LOCATION, StoredSecret, StoredVersion, VaultAction, new_version};
use crate::lock;
use crate::server::{AppState, Audience, Shared, bearer, issued_token};

/// Key Vault's resource, as its challenge names it.
pub(crate) const VAULT_RESOURCE: &str = "https://vault.azure.net";

/// The most results one page of a listing holds, and the default.
const MAX_RESULTS: usize = 25;

/// The most tags a secret can carry.
const MAX_TAGS: usize = 15;

/// Placeholder for the subscription and resource group a simulated vault would live in.
const VAULT_SCOPE: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/entra-sim";

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/vaults/{vault}", any(vault_root)).route("/vaults/{vault}/{*rest}", any(vault_request))
}

/// A Key Vault error: `{"error":{"code","message"[,"innererror"]}}`.
struct KvError {
    status: StatusCode,
    code: &'static str,
    message: String,
    inner: Option<&'static str>,
    retry_after: Option<u64>,
    challenge: Option<String>,
}

impl KvError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), inner: None, retry_after: None, challenge: None }
    }

    fn bad_parameter(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadParameter", message)
    }

    fn secret_not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "SecretNotFound",
            format!(
                "A secret with (name/id) {what} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
            ),
        )
    }
}

impl IntoResponse for KvError {
    fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(inner) = self.inner {
            error["innererror"] = json!({ "code": inner });
        }
        let mut response = (self.status, axum::Json(json!({ "error": error }))).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(challenge) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

/// A fault from the queue, in Key Vault's shape.
pub(crate) fn fault_response(status: StatusCode, retry_after: Option<u64>) -> Response {
    let (code, message) = match status.as_u16() {
        429 => (
            "Throttled",
            "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached",
        ),
        403 => ("Forbidden", "Access denied."),
        409 => ("Conflict", "There was a conflict while updating the secret. Please retry."),
        400 => ("BadParameter", "The request was refused."),
        _ => ("InternalServerError", "The service encountered an internal error. Please retry."),
    };
    KvError { retry_after, ..KvError::new(status, code, message) }.into_response()
}

/// The query options of a request (the first occurrence of each wins).
struct Query {
    params: BTreeMap<String, String>,
}

impl Query {
    fn parse(raw: Option<&str>) -> Self {
        let mut params = BTreeMap::new();
        for (key, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            params.entry(key.into_owned()).or_insert_with(|| value.into_owned());
        }
        Self { params }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }
}

async fn vault_root(
    State(s): State<AppState>,
    Path(vault): Path<String>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    handle(&s, &vault, "", &method, &headers, q.as_deref(), &body).unwrap_or_else(IntoResponse::into_response)
}

async fn vault_request(
    State(s): State<AppState>,
    Path((vault, rest)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    handle(&s, &vault, &rest, &method, &headers, q.as_deref(), &body).unwrap_or_else(IntoResponse::into_response)
}

/// The caller of an authenticated request.
struct Caller {
    client_id: String,
}

fn handle(
    shared: &Shared,
    vault: &str,
    rest: &str,
    method: &Method,
    headers: &HeaderMap,
    raw_query: Option<&str>,
    body: &[u8],
) -> Result<Response, KvError> {
    let vault_key = vault.to_ascii_lowercase();
    {
        let mut azure = lock(&shared.azure);
        let Some(stored) = azure.vaults.get_mut(&vault_key) else {
            return Err(KvError::new(
                StatusCode::NOT_FOUND,
                "VaultNotFound",
                format!(
                    "No vault named '{vault}' exists in the simulated tenant (a real client would fail to resolve {vault}.vault.azure.net)."
                ),
            ));
        };
        stored.requests += 1;
    }
    let caller = authenticate(shared, headers)?;
    let query = Query::parse(raw_query);
    let api_version = query
        .get("api-version")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| KvError::bad_parameter("The 'api-version' query parameter is missing."))?
        .to_owned();
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let vault_url = vault_url(shared, vault);
    match (method.clone(), segments.as_slice()) {
        (Method::GET, ["secrets"]) => {
            authorize(shared, &caller, vault, None, VaultAction::List)?;
            list_secrets(shared, vault, &vault_url, &query, &api_version)
        }
        (Method::PUT, ["secrets", name]) => {
            authorize(shared, &caller, vault, Some(name), VaultAction::Set)?;
            set_secret(shared, vault, &vault_url, name, body)
        }
        (Method::GET, ["secrets", name]) => {
            authorize(shared, &caller, vault, Some(name), VaultAction::Get)?;
            get_secret(shared, vault, &vault_url, name, None)
        }
        (Method::GET, ["secrets", name, "versions"]) => {
            authorize(shared, &caller, vault, Some(name), VaultAction::List)?;
            list_versions(shared, vault, &vault_url, name, &query, &api_version)
        }
        (Method::GET, ["secrets", name, version]) => {
            authorize(shared, &caller, vault, Some(name), VaultAction::Get)?;
            get_secret(shared, vault, &vault_url, name, Some(version))
        }
        (Method::PATCH, ["secrets", name, version]) => {
            authorize(shared, &caller, vault, Some(name), VaultAction::Set)?;
            update_secret(shared, vault, &vault_url, name, version, body)
        }
        (_, ["secrets", ..]) => Err(KvError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "BadParameter",
            format!("The method '{method}' is not supported by the simulated vault for this path."),
        )),
        _ => Err(KvError::new(StatusCode::NOT_FOUND, "NotFound", format!("No resource at '/{rest}'."))),
    }
}

/// `{base}vaults/{name}`, no trailing slash.
pub(crate) fn vault_url(shared: &Shared, vault: &str) -> String {
    format!("{}vaults/{vault}", shared.base_url)
}

fn challenge(shared: &Shared, message: &str) -> KvError {
    let mut error = KvError::new(StatusCode::UNAUTHORIZED, "Unauthorized", message);
    error.challenge = Some(format!(
        "Bearer authorization=\"{}{}\", resource=\"{VAULT_RESOURCE}\"",
        shared.base_url, shared.tenant_id
    ));
    error
}

fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<Caller, KvError> {
    let token =
        bearer(headers).ok_or_else(|| challenge(shared, "AKV10000: Request is missing a Bearer or PoP token."))?;
    let issued = issued_token(shared, token)
        .ok_or_else(|| challenge(shared, "AKV10032: Invalid issuer or the token is expired."))?;
    if issued.audience != Audience::KeyVault {
        return Err(challenge(
            shared,
            &format!("AKV10022: Invalid audience. Expected {VAULT_RESOURCE}, found another resource."),
        ));
    }
    Ok(Caller { client_id: issued.client_id.to_string() })
}

/// An object id for a caller: its service principal's in this tenant, else a stable stand-in.
pub(crate) fn object_id_of(shared: &Shared, client_id: &str) -> String {
    let sp = uuid::Uuid::parse_str(client_id).ok().and_then(|id| {
        lock(&shared.directory).store(crate::state::Collection::ServicePrincipals).by_app_id(id).map(|sp| sp.id)
    });
    sp.map(|id| id.to_string()).unwrap_or_else(|| {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(format!("oid:{}", client_id.to_ascii_lowercase()).as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
    })
}

fn authorize(
    shared: &Shared,
    caller: &Caller,
    vault: &str,
    secret: Option<&str>,
    action: VaultAction,
) -> Result<(), KvError> {
    let role = lock(&shared.azure).vault_role(vault, &caller.client_id);
    if role.is_some_and(|r| r.allows(action)) {
        return Ok(());
    }
    let vault_lc = vault.to_ascii_lowercase();
    let resource = match secret {
        Some(secret) => {
            format!(
                "{VAULT_SCOPE}/providers/microsoft.keyvault/vaults/{vault_lc}/secrets/{}",
                secret.to_ascii_lowercase()
            )
        }
        None => format!("{VAULT_SCOPE}/providers/microsoft.keyvault/vaults/{vault_lc}"),
    };
    let message = format!(
        "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nCaller: appid={};oid={};iss=https://sts.windows.net/{}/\r\nAction: '{}'\r\nResource: '{resource}'\r\nAssignment: (not found)\r\nVault: {vault};location={LOCATION}\r\n",
        caller.client_id,
        object_id_of(shared, &caller.client_id),
        shared.tenant_id,
        action.data_action(),
    );
    let mut error = KvError::new(StatusCode::FORBIDDEN, "Forbidden", message);
    error.inner = Some("ForbiddenByRbac");
    Err(error)
}

fn check_name(name: &str) -> Result<(), KvError> {
    if (1..=127).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        Ok(())
    } else {
        Err(KvError::bad_parameter(format!(
            "The request URI contains an invalid name: {name}. Secret names must be 1-127 characters of 0-9, a-z, A-Z and -."
        )))
    }
}

fn attributes_json(v: &StoredVersion, full: bool) -> Value {
    let mut attributes = Map::new();
    attributes.insert("enabled".into(), json!(v.enabled));
    if let Some(nbf) = v.nbf {
        attributes.insert("nbf".into(), json!(nbf));
    }
    if let Some(exp) = v.exp {
        attributes.insert("exp".into(), json!(exp));
    }
    attributes.insert("created".into(), json!(v.created.unix_timestamp()));
    attributes.insert("updated".into(), json!(v.updated.unix_timestamp()));
    if full {
        attributes.insert("recoveryLevel".into(), json!("Recoverable+Purgeable"));
        attributes.insert("recoverableDays".into(), json!(90));
    }
    Value::Object(attributes)
}

/// The SecretBundle (`with_value`) or a SecretItem of a version listing.
fn version_json(vault_url: &str, secret: &StoredSecret, v: &StoredVersion, with_value: bool) -> Value {
    let mut object = Map::new();
    if with_value {
        object.insert("value".into(), json!(v.value));
    }
    object.insert("id".into(), json!(format!("{vault_url}/secrets/{}/{}", secret.name, v.version)));
    if let Some(content_type) = &v.content_type {
        object.insert("contentType".into(), json!(content_type));
    }
    object.insert("attributes".into(), attributes_json(v, true));
    if !v.tags.is_empty() {
        object.insert("tags".into(), json!(v.tags));
    }
    Value::Object(object)
}

/// The properties a PUT or PATCH body gives; `None` where it says nothing, `Some(None)` where it
/// clears an optional property with `null`.
struct Properties {
    content_type: Option<Option<String>>,
    tags: Option<BTreeMap<String, String>>,
    enabled: Option<bool>,
    nbf: Option<Option<i64>>,
    exp: Option<Option<i64>>,
}

fn properties(body: &Value) -> Result<Properties, KvError> {
    let content_type = match body.get("contentType") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(_) => return Err(KvError::bad_parameter("Property 'contentType' must be a string.")),
    };
    let tags = match body.get("tags") {
        None => None,
        Some(Value::Null) => Some(BTreeMap::new()),
        Some(Value::Object(map)) => {
            if map.len() > MAX_TAGS {
                return Err(KvError::bad_parameter(format!("A secret can have at most {MAX_TAGS} tags.")));
            }
            let mut tags = BTreeMap::new();
            for (k, v) in map {
                let v = v.as_str().ok_or_else(|| KvError::bad_parameter("Tag values must be strings."))?;
                tags.insert(k.clone(), v.to_owned());
            }
            Some(tags)
        }
        Some(_) => return Err(KvError::bad_parameter("Property 'tags' must be an object.")),
    };
    let attributes = body.get("attributes").cloned().unwrap_or(Value::Null);
    let enabled = match attributes.get("enabled") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(KvError::bad_parameter("Property 'attributes.enabled' must be a boolean.")),
    };
    let seconds = |key: &str| match attributes.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => v.as_i64().map(|n| Some(Some(n))).ok_or_else(|| {
            KvError::bad_parameter(format!("Property 'attributes.{key}' must be a number of seconds since 1970."))
        }),
    };
    Ok(Properties { content_type, tags, enabled, nbf: seconds("nbf")?, exp: seconds("exp")? })
}

fn update_secret(
    shared: &Shared,
    vault: &str,
    vault_url: &str,
    name: &str,
    version: &str,
    body: &[u8],
) -> Result<Response, KvError> {
    let body: Value = serde_json::from_slice(body)
        .map_err(|e| KvError::bad_parameter(format!("The request body is not valid JSON: {e}")))?;
    let update = properties(&body)?;
    let now = shared.clock.now();
    let mut azure = lock(&shared.azure);
    let secret = azure
        .vaults
        .get_mut(&vault.to_ascii_lowercase())
        .and_then(|v| v.secrets.get_mut(&name.to_ascii_lowercase()))
        .ok_or_else(|| KvError::secret_not_found(name))?;
    let stored = secret
        .versions
        .iter_mut()
        .find(|v| v.version.eq_ignore_ascii_case(version))
        .ok_or_else(|| KvError::secret_not_found(&format!("{name}/{version}")))?;
    if let Some(content_type) = update.content_type {
        stored.content_type = content_type;
    }
    if let Some(tags) = update.tags {
        stored.tags = tags;
    }
    if let Some(enabled) = update.enabled {
        stored.enabled = enabled;
    }
    if let Some(nbf) = update.nbf {
        stored.nbf = nbf;
    }
    if let Some(exp) = update.exp {
        stored.exp = exp;
    }
    stored.updated = now;
    let stored = stored.clone();
    let answer = version_json(vault_url, secret, &stored, false);
    Ok((StatusCode::OK, axum::Json(answer)).into_response())
}

fn set_secret(shared: &Shared, vault: &str, vault_url: &str, name: &str, body: &[u8]) -> Result<Response, KvError> {
    check_name(name)?;
    let body: Value = serde_json::from_slice(body)
        .map_err(|e| KvError::bad_parameter(format!("The request body is not valid JSON: {e}")))?;
    let value = body
        .get("value")
        .and_then(Value::as_str)
        .ok_or_else(|| KvError::bad_parameter("Property 'value' is required and must be a string."))?;
    let Properties { content_type, tags, enabled, nbf, exp } = properties(&body)?;
    let now = shared.clock.now();
    let stored = StoredVersion {
        version: new_version(),
        value: value.to_owned(),
        content_type: content_type.flatten(),
        tags: tags.unwrap_or_default(),
        enabled: enabled.unwrap_or(true),
        nbf: nbf.flatten(),
        exp: exp.flatten(),
        created: now,
        updated: now,
    };
    let mut azure = lock(&shared.azure);
    let vault = azure
        .vaults
        .get_mut(&vault.to_ascii_lowercase())
        .ok_or_else(|| KvError::new(StatusCode::NOT_FOUND, "VaultNotFound", "The vault is gone."))?;
    let secret = vault
        .secrets
        .entry(name.to_ascii_lowercase())
        .or_insert_with(|| StoredSecret { name: name.to_owned(), versions: Vec::new() });
    secret.versions.push(stored.clone());
    let answer = version_json(vault_url, secret, &stored, true);
    Ok((StatusCode::OK, axum::Json(answer)).into_response())
}

fn get_secret(
    shared: &Shared,
    vault: &str,
    vault_url: &str,
    name: &str,
    version: Option<&str>,
) -> Result<Response, KvError> {
    let azure = lock(&shared.azure);
    let secret = azure
        .vaults
        .get(&vault.to_ascii_lowercase())
        .and_then(|v| v.secrets.get(&name.to_ascii_lowercase()))
        .ok_or_else(|| KvError::secret_not_found(name))?;
    let found = match version {
        Some(version) => secret.version(version),
        None => secret.current(),
    };
    let found = found.ok_or_else(|| KvError::secret_not_found(&format!("{name}/{}", version.unwrap_or(""))))?;
    if !found.enabled {
        let mut error =
            KvError::new(StatusCode::FORBIDDEN, "Forbidden", "Operation get is not allowed on a disabled secret.");
        error.inner = Some("SecretDisabled");
        return Err(error);
    }
    Ok((StatusCode::OK, axum::Json(version_json(vault_url, secret, found, true))).into_response())
}

/// `maxresults` and the offset `$skiptoken` carries.
fn paging(query: &Query) -> Result<(usize, usize), KvError> {
    let max = match query.get("maxresults") {
        None => MAX_RESULTS,
        Some(raw) => raw.parse::<usize>().ok().filter(|n| (1..=MAX_RESULTS).contains(n)).ok_or_else(|| {
            KvError::bad_parameter(format!("Invalid maxresults: {raw}. It must be 1 to {MAX_RESULTS}."))
        })?,
    };
    let offset = match query.get("$skiptoken") {
        None => 0,
        Some(token) => URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.strip_prefix("offset:").and_then(|n| n.parse().ok()))
            .ok_or_else(|| KvError::bad_parameter("The $skiptoken is not valid."))?,
    };
    Ok((max, offset))
}

/// One page of `items`, with `nextLink` to `{list_url}?api-version=…&$skiptoken=…&maxresults=…`
/// (the order of the published example) while more remain.
fn page(items: Vec<Value>, list_url: &str, api_version: &str, max: usize, offset: usize) -> Response {
    let total = items.len();
    let value: Vec<Value> = items.into_iter().skip(offset).take(max).collect();
    let next = offset + value.len();
    let next_link = (next < total).then(|| {
        let token = URL_SAFE_NO_PAD.encode(format!("offset:{next}"));
        let api_version: String = url::form_urlencoded::byte_serialize(api_version.as_bytes()).collect();
        format!("{list_url}?api-version={api_version}&$skiptoken={token}&maxresults={max}")
    });
    (StatusCode::OK, axum::Json(json!({ "value": value, "nextLink": next_link }))).into_response()
}

fn list_versions(
    shared: &Shared,
    vault: &str,
    vault_url: &str,
    name: &str,
    query: &Query,
    api_version: &str,
) -> Result<Response, KvError> {
    let (max, offset) = paging(query)?;
    let azure = lock(&shared.azure);
    let secret = azure.vaults.get(&vault.to_ascii_lowercase()).and_then(|v| v.secrets.get(&name.to_ascii_lowercase()));
    // In the order of the version ids, not of creation (see the module docs).
    let items: Vec<Value> = secret
        .map(|s| {
            let mut versions: Vec<&StoredVersion> = s.versions.iter().collect();
            versions.sort_by(|a, b| a.version.cmp(&b.version));
            versions.into_iter().map(|v| version_json(vault_url, s, v, false)).collect()
        })
        .unwrap_or_default();
    let list_url = format!("{vault_url}/secrets/{}/versions", secret.map_or(name, |s| s.name.as_str()));
    Ok(page(items, &list_url, api_version, max, offset))
}

fn list_secrets(
    shared: &Shared,
    vault: &str,
    vault_url: &str,
    query: &Query,
    api_version: &str,
) -> Result<Response, KvError> {
    let (max, offset) = paging(query)?;
    let azure = lock(&shared.azure);
    let items: Vec<Value> = azure
        .vaults
        .get(&vault.to_ascii_lowercase())
        .map(|v| {
            v.secrets
                .values()
                .filter_map(|s| {
                    // A secret's item shows its newest version's attributes, under the versionless id.
                    let newest = s.versions.last()?;
                    let mut item = version_json(vault_url, s, newest, false);
                    item["id"] = json!(format!("{vault_url}/secrets/{}", s.name));
                    Some(item)
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(page(items, &format!("{vault_url}/secrets"), api_version, max, offset))
}
