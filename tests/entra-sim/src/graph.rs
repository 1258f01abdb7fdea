//! Microsoft Graph v1.0: applications and service principals (list, get, delta) and the two password
//! actions on applications (`addPassword`, `removePassword`).

use std::ops::Bound;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::error::GraphError;
use crate::faults::concurrency_violation;
use crate::lock;
use crate::odata::{
    Allowed, DEFAULT_TOP, Prop, QueryOptions, context, decode_token, encode_token, link, object_json, parse_filter,
    parse_list_token, parse_select, parse_top,
};
use crate::server::{AppState, Audience, Shared, bearer};
use crate::state::{
    Collection, DirectoryObject, PERSONAL_ACCOUNT_PASSWORD_LIMIT, PasswordCredential, StoredSecret,
    allows_personal_accounts,
};

/// How long a delta link stays usable: seven days for identity resources (Microsoft 365 Developer
/// Blog, "Duration of change tracking tokens for identity and education resources", July 2020).
const DELTA_LINK_LIFETIME: time::Duration = time::Duration::days(7);

/// The default lifetime Graph gives a password when `endDateTime` is absent.
const DEFAULT_PASSWORD_LIFETIME: time::Duration = time::Duration::days(365 * 2);

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1.0/applications", get(list_applications))
        .route("/v1.0/servicePrincipals", get(list_service_principals))
        .route("/v1.0/applications/delta", get(delta_applications))
        .route("/v1.0/applications/microsoft.graph.delta", get(delta_applications))
        .route("/v1.0/servicePrincipals/delta", get(delta_service_principals))
        .route("/v1.0/servicePrincipals/microsoft.graph.delta", get(delta_service_principals))
        .route("/v1.0/applications/{id}", get(get_application))
        .route("/v1.0/servicePrincipals/{id}", get(get_service_principal))
        .route("/v1.0/applications/{id}/addPassword", post(add_password))
        .route("/v1.0/applications/{id}/microsoft.graph.addPassword", post(add_password))
        .route("/v1.0/applications/{id}/removePassword", post(remove_password))
        .route("/v1.0/applications/{id}/microsoft.graph.removePassword", post(remove_password))
}

fn respond(result: Result<Response, GraphError>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn list_applications(State(s): State<AppState>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    respond(list(&s, Collection::Applications, &headers, q.as_deref()))
}

async fn list_service_principals(State(s): State<AppState>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    respond(list(&s, Collection::ServicePrincipals, &headers, q.as_deref()))
}

async fn delta_applications(State(s): State<AppState>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    respond(delta(&s, Collection::Applications, &headers, q.as_deref()))
}

async fn delta_service_principals(State(s): State<AppState>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    respond(delta(&s, Collection::ServicePrincipals, &headers, q.as_deref()))
}

async fn get_application(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    respond(get_one(&s, Collection::Applications, &headers, &id, q.as_deref()))
}

async fn get_service_principal(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    respond(get_one(&s, Collection::ServicePrincipals, &headers, &id, q.as_deref()))
}

/// The client id of a request's valid Graph token; 401 without one, as Graph answers.
pub(crate) fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<Uuid, GraphError> {
    let token = bearer(headers).ok_or_else(|| GraphError::unauthenticated("Access token is empty."))?;
    let issued = lock(&shared.tokens).get(token).cloned();
    let issued =
        issued.ok_or_else(|| GraphError::unauthenticated("Access token validation failure. Invalid audience."))?;
    if issued.expires <= std::time::Instant::now() {
        return Err(GraphError::unauthenticated("Lifetime validation failed, the token is expired."));
    }
    // A Key Vault or Resource Manager token is a valid token for another resource.
    if issued.audience != Audience::Graph {
        return Err(GraphError::unauthenticated("Access token validation failure. Invalid audience."));
    }
    Ok(issued.client_id)
}

/// Graph requires a bearer token issued to an application allowed to read applications (see
/// `permissions.rs`); a valid token without the permission is answered 403.
fn authorize(shared: &Shared, headers: &HeaderMap) -> Result<Uuid, GraphError> {
    let client_id = authenticate(shared, headers)?;
    if !crate::permissions::may_read(shared, client_id) {
        return Err(GraphError::forbidden());
    }
    Ok(client_id)
}

/// As [`authorize`], for a write to the application `id`: `Application.ReadWrite.All`, or
/// `Application.ReadWrite.OwnedBy` and an owner. An unknown application is left for the handler
/// to answer 404.
fn authorize_write(shared: &Shared, headers: &HeaderMap, id: &str) -> Result<(), GraphError> {
    let client_id = authorize(shared, headers)?;
    let Ok(object_id) = Uuid::parse_str(id) else { return Ok(()) };
    let exists = lock(&shared.directory).get(Collection::Applications, object_id).is_some();
    if exists && !crate::permissions::may_write(shared, client_id, object_id) {
        return Err(GraphError::forbidden());
    }
    Ok(())
}

fn parse_object_id(raw: &str) -> Result<Uuid, GraphError> {
    Uuid::parse_str(raw).map_err(|_| GraphError::bad_request(format!("Invalid object identifier '{raw}'.")))
}

fn json_response(value: Value) -> Response {
    (StatusCode::OK, axum::Json(value)).into_response()
}

/// `GET /applications`, `GET /servicePrincipals`: stable order (by object id), `@odata.nextLink` while
/// more remain. The page holds `min($top or 100, page_size)` objects.
fn list(
    shared: &Shared,
    collection: Collection,
    headers: &HeaderMap,
    raw: Option<&str>,
) -> Result<Response, GraphError> {
    authorize(shared, headers)?;
    let q = QueryOptions::parse(raw, Allowed::List)?;
    let select = parse_select(collection, q.select.as_deref())?;
    let top = parse_top(q.top.as_deref())?.unwrap_or(DEFAULT_TOP);
    let page_size = top.min(shared.page_size).max(1);
    let filter = q.filter.as_deref().map(parse_filter).transpose()?;
    let after = q.skiptoken.as_deref().map(parse_list_token).transpose()?.map(|t| t.after);

    let (items, last, more) = {
        let directory = lock(&shared.directory);
        let live = &directory.store(collection).live;
        let range = match after {
            Some(after) => live.range((Bound::Excluded(after), Bound::Unbounded)),
            None => live.range(..),
        };
        let mut items = Vec::with_capacity(page_size);
        let mut last = None;
        let mut more = false;
        for object in range.map(|(_, o)| o).filter(|o| filter.as_ref().is_none_or(|f| f.matches(o))) {
            if items.len() == page_size {
                more = true;
                break;
            }
            items.push(object_json(object, &select));
            last = Some(object.id);
        }
        (items, last, more)
    };

    let mut body = json!({
        "@odata.context": context(&shared.graph_base, collection, q.select.is_some().then_some(select.as_slice())),
        "value": items,
    });
    if let (true, Some(last)) = (more, last) {
        // Graph keeps the request's own options in the next link and adds the skip token.
        let token = encode_token(&crate::odata::ListToken { after: last });
        let mut params = Vec::new();
        if let Some(select) = q.select.as_deref() {
            params.push(("$select", select));
        }
        if let Some(filter) = q.filter.as_deref() {
            params.push(("$filter", filter));
        }
        if let Some(top) = q.top.as_deref() {
            params.push(("$top", top));
        }
        params.push(("$skiptoken", token.as_str()));
        body["@odata.nextLink"] = json!(link(&shared.graph_base, collection.segment(), &params));
    }
    Ok(json_response(body))
}

fn get_one(
    shared: &Shared,
    collection: Collection,
    headers: &HeaderMap,
    raw_id: &str,
    raw: Option<&str>,
) -> Result<Response, GraphError> {
    authorize(shared, headers)?;
    let q = QueryOptions::parse(raw, Allowed::Item)?;
    let select = parse_select(collection, q.select.as_deref())?;
    let id = parse_object_id(raw_id)?;
    let directory = lock(&shared.directory);
    let object = directory.get(collection, id).ok_or_else(|| GraphError::object_not_found(raw_id))?;
    let mut body = object_json(object, &select);
    body["@odata.context"] = json!(format!(
        "{}/$metadata#{}/$entity",
        shared.graph_base.as_str().trim_end_matches('/'),
        collection.segment()
    ));
    Ok(json_response(body))
}

/// The state of a delta round between pages, carried in `$skiptoken`.
#[derive(Debug, Serialize, Deserialize)]
struct DeltaPage {
    c: Collection,
    /// `None` in the first round (enumerate everything); otherwise the change counter value whose
    /// later changes this round reports.
    since: Option<u64>,
    /// The change counter value when this round began: the next delta link reports what comes after
    /// it. Changes made while the round is being paged through are therefore reported (again) by the
    /// next round — at least once, never lost.
    until: u64,
    after: Option<Uuid>,
    select: Vec<Prop>,
    page: usize,
}

/// What a delta link carries in `$deltatoken`.
#[derive(Debug, Serialize, Deserialize)]
struct DeltaLink {
    c: Collection,
    version: u64,
    /// When the link was issued, Unix seconds on the sim clock.
    issued: i64,
    select: Vec<Prop>,
    page: usize,
}

/// The answer to an expired or unknown delta token. The Microsoft 365 Developer Blog ("Duration of
/// change tracking tokens for identity and education resources", July 2020) documents it for
/// identity resources: `400 Bad Request`, code `syncStateNotFound`, this message. (Outlook resources
/// answer `410 Gone` instead; clients should restart with a full round on either.) A token the sim
/// cannot read at all gets the same answer, since the client's remedy is the same.
fn sync_state_not_found() -> GraphError {
    GraphError::new(
        StatusCode::BAD_REQUEST,
        "syncStateNotFound",
        "The sync state generation is not found. The delta token is expired and data must be synchronized again.",
    )
}

/// `GET /applications/delta`, `GET /servicePrincipals/delta`.
fn delta(
    shared: &Shared,
    collection: Collection,
    headers: &HeaderMap,
    raw: Option<&str>,
) -> Result<Response, GraphError> {
    authorize(shared, headers)?;
    let q = QueryOptions::parse(raw, Allowed::Delta)?;
    let top = parse_top(q.top.as_deref())?;
    let now = shared.clock.now();
    let path = format!("{}/delta", collection.segment());
    let directory = lock(&shared.directory);

    let state = match (q.skiptoken.as_deref(), q.deltatoken.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(GraphError::bad_request("$skiptoken and $deltatoken cannot be used together."));
        }
        (Some(skip), None) => {
            decode_token::<DeltaPage>(skip).filter(|s| s.c == collection).ok_or_else(sync_state_not_found)?
        }
        (None, Some("latest")) => {
            // "Sync from now": no objects, only a delta link for the current state.
            let select = parse_select(collection, q.select.as_deref())?;
            let page = top.unwrap_or(shared.page_size).min(shared.page_size);
            let token = encode_token(&DeltaLink {
                c: collection,
                version: directory.version(),
                issued: now.unix_timestamp(),
                select,
                page,
            });
            return Ok(json_response(json!({
                "@odata.context": context(&shared.graph_base, collection, None),
                "value": [],
                "@odata.deltaLink": link(&shared.graph_base, &path, &[("$deltatoken", token.as_str())]),
            })));
        }
        (None, Some(token)) => {
            let link_state =
                decode_token::<DeltaLink>(token).filter(|l| l.c == collection).ok_or_else(sync_state_not_found)?;
            let issued = OffsetDateTime::from_unix_timestamp(link_state.issued).map_err(|_| sync_state_not_found())?;
            if now - issued > DELTA_LINK_LIFETIME {
                return Err(sync_state_not_found());
            }
            DeltaPage {
                c: collection,
                since: Some(link_state.version),
                until: directory.version(),
                after: None,
                select: link_state.select,
                page: top.map_or(link_state.page, |t| t.min(shared.page_size)),
            }
        }
        (None, None) => DeltaPage {
            c: collection,
            since: None,
            until: directory.version(),
            after: None,
            select: parse_select(collection, q.select.as_deref())?,
            page: top.unwrap_or(shared.page_size).min(shared.page_size).max(1),
        },
    };

    let store = directory.store(collection);
    let lower = state.after.map_or(Bound::Unbounded, Bound::Excluded);
    // Candidates in object id order: every live object in the first round; afterwards the live objects
    // and tombstones stamped after `since`.
    let mut candidates: Vec<(Uuid, Option<&DirectoryObject>)> = match state.since {
        None => {
            store.live.range((lower, Bound::Unbounded)).take(state.page + 1).map(|(id, o)| (*id, Some(o))).collect()
        }
        Some(since) => {
            let mut changed: Vec<_> = store
                .live
                .range((lower, Bound::Unbounded))
                .filter(|(_, o)| o.version > since)
                .map(|(id, o)| (*id, Some(o)))
                .chain(
                    store
                        .removed
                        .range((lower, Bound::Unbounded))
                        .filter(|(_, v)| **v > since)
                        .map(|(id, _)| (*id, None)),
                )
                .collect();
            changed.sort_by_key(|(id, _)| *id);
            changed
        }
    };
    let more = candidates.len() > state.page;
    candidates.truncate(state.page);
    let items: Vec<Value> = candidates
        .iter()
        .map(|(id, object)| match object {
            Some(object) => object_json(object, &state.select),
            // Graph reports a removed application or service principal by id only.
            None => json!({ "id": id.to_string(), "@removed": { "reason": "deleted" } }),
        })
        .collect();
    let last = candidates.last().map(|(id, _)| *id);
    drop(directory);

    let mut body = json!({
        "@odata.context": context(&shared.graph_base, collection, Some(&state.select)),
        "value": items,
    });
    match (more, last) {
        (true, Some(last)) => {
            let token = encode_token(&DeltaPage { after: Some(last), ..state });
            body["@odata.nextLink"] = json!(link(&shared.graph_base, &path, &[("$skiptoken", token.as_str())]));
        }
        _ => {
            let token = encode_token(&DeltaLink {
                c: collection,
                version: state.until,
                issued: now.unix_timestamp(),
                select: state.select,
                page: state.page,
            });
            body["@odata.deltaLink"] = json!(link(&shared.graph_base, &path, &[("$deltatoken", token.as_str())]));
        }
    }
    Ok(json_response(body))
}

/// Marks an application as being written to for as long as it lives. A second write to the same
/// application while the first is in flight is refused with 409, as Graph refuses overlapping writes
/// to one directory object; the product must serialize its writes per application.
struct WriteInFlight<'a> {
    shared: &'a Shared,
    id: Uuid,
}

impl<'a> WriteInFlight<'a> {
    fn begin(shared: &'a Shared, id: Uuid) -> Result<Self, GraphError> {
        if lock(&shared.writes_in_flight).insert(id) {
            Ok(Self { shared, id })
        } else {
            Err(concurrency_violation(StatusCode::CONFLICT))
        }
    }
}

impl Drop for WriteInFlight<'_> {
    fn drop(&mut self) {
        lock(&self.shared.writes_in_flight).remove(&self.id);
    }
}

/// Run `write` on an existing application as Graph would: 404 when absent, 409 when another write to
/// it is in flight, and only after the write latency (the time during which the two can overlap).
async fn write_application<T>(
    shared: &Shared,
    raw_id: &str,
    write: impl FnOnce(&mut DirectoryObject, OffsetDateTime) -> Result<T, GraphError>,
) -> Result<T, GraphError> {
    let id = parse_object_id(raw_id)?;
    if lock(&shared.directory).get(Collection::Applications, id).is_none() {
        return Err(GraphError::object_not_found(raw_id));
    }
    let _in_flight = WriteInFlight::begin(shared, id)?;
    if shared.write_latency > Duration::ZERO {
        tokio::time::sleep(shared.write_latency).await;
    }
    let now = shared.clock.now();
    let mut directory = lock(&shared.directory);
    // `update` stamps a new version only when the write goes through; a refused write changes nothing.
    let object = directory.get(Collection::Applications, id).ok_or_else(|| GraphError::object_not_found(raw_id))?;
    let mut changed = object.clone();
    let result = write(&mut changed, now)?;
    directory.update(Collection::Applications, id, |object| *object = changed);
    Ok(result)
}

fn parse_body<T: for<'de> Deserialize<'de> + Default>(body: &Bytes) -> Result<T, GraphError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| GraphError::bad_request(format!("Unable to read JSON request payload: {e}")))
}

fn parse_time(field: &str, raw: Option<&str>) -> Result<Option<OffsetDateTime>, GraphError> {
    raw.map(|s| {
        OffsetDateTime::parse(s, &Rfc3339).map_err(|_| {
            GraphError::bad_request(format!(
                "Invalid value specified for property '{field}' of resource 'PasswordCredential'."
            ))
        })
    })
    .transpose()
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AddPasswordBody {
    #[serde(default)]
    password_credential: Option<NewPasswordCredential>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewPasswordCredential {
    display_name: Option<String>,
    end_date_time: Option<String>,
    start_date_time: Option<String>,
}

/// `POST /applications/{id}/addPassword`: a new password with a new key id on every call (it is not
/// idempotent); the answer carries `secretText`, the only time Graph ever shows it.
async fn add_password(State(s): State<AppState>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    let result: Result<Response, GraphError> = async {
        authorize_write(&s, &headers, &id)?;
        let request: AddPasswordBody = parse_body(&body)?;
        let request = request.password_credential.unwrap_or_default();
        let start = parse_time("startDateTime", request.start_date_time.as_deref())?;
        let end = parse_time("endDateTime", request.end_date_time.as_deref())?;
        let secret = new_secret_text();
        let (credential, secret) = write_application(&s, &id, |app, now| {
            if allows_personal_accounts(app.sign_in_audience.as_deref())
                && app.passwords.len() >= PERSONAL_ACCOUNT_PASSWORD_LIMIT
            {
                return Err(too_many_passwords(app.passwords.len() + 1));
            }
            let now = now.truncate_to_millisecond();
            let start = start.unwrap_or(now);
            let end = end.unwrap_or(start + DEFAULT_PASSWORD_LIFETIME);
            if end <= start {
                // Approximated: Graph refuses an end before the start; the exact wording is not documented.
                return Err(GraphError::bad_request(
                    "Invalid value specified for property 'endDateTime' of resource 'PasswordCredential'.",
                ));
            }
            let credential = PasswordCredential {
                key_id: Uuid::new_v4(),
                display_name: request.display_name,
                hint: Some(secret.chars().take(3).collect()),
                start,
                end,
                secret: Some(StoredSecret { sha256: Sha256::digest(secret.as_bytes()).into(), created_at: now }),
            };
            app.passwords.push(credential.clone());
            Ok((credential, secret))
        })
        .await?;
        let mut body = crate::odata::password_json(&credential);
        body["secretText"] = json!(secret);
        body["@odata.context"] = json!(format!(
            "{}/$metadata#microsoft.graph.passwordCredential",
            s.graph_base.as_str().trim_end_matches('/')
        ));
        Ok(json_response(body))
    }
    .await;
    respond(result)
}

/// The refusal of a third password on an application that allows personal Microsoft accounts, as
/// Graph sends it (quoted in Azure/azure-cli issue #12946, April 2022).
fn too_many_passwords(attempted: usize) -> GraphError {
    GraphError::new(
        StatusCode::BAD_REQUEST,
        "TooManyAppPasswords",
        format!(
            "Not allowed to add {attempted} passwords. You can only add a maximum of {PERSONAL_ACCOUNT_PASSWORD_LIMIT} passwords."
        ),
    )
    .with_details(json!([{ "target": "passwordCredentials", "code": "TooManyAppPasswords" }]))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RemovePasswordBody {
    key_id: Option<String>,
}

/// `POST /applications/{id}/removePassword`: 204, or 404 when the application does not exist.
///
/// An unknown key id (for example one already removed) is answered `404 Request_ResourceNotFound`
/// with "No password credential found with keyId …". Microsoft documents only the 204; the 404 is the
/// best evidence found (clients such as hamilton, behind the Terraform azuread provider, treat 404 on
/// removePassword as the consistency case), so a client must tell it apart from a missing application
/// by its message — or better, treat both as "already gone".
async fn remove_password(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let result: Result<Response, GraphError> = async {
        authorize_write(&s, &headers, &id)?;
        let request: RemovePasswordBody = parse_body(&body)?;
        let raw_key = request.key_id.ok_or_else(|| GraphError::bad_request("The 'keyId' parameter is required."))?;
        let key_id = Uuid::parse_str(&raw_key).map_err(|_| {
            GraphError::bad_request(format!("Invalid value '{raw_key}' specified for parameter 'keyId'."))
        })?;
        write_application(&s, &id, |app, _| {
            let before = app.passwords.len();
            app.passwords.retain(|p| p.key_id != key_id);
            if app.passwords.len() == before {
                return Err(GraphError::new(
                    StatusCode::NOT_FOUND,
                    "Request_ResourceNotFound",
                    format!("No password credential found with keyId '{key_id}'."),
                ));
            }
            Ok(())
        })
        .await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    respond(result)
}

/// The characters of Entra client secrets.
const SECRET_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.~";

/// A secret in the shape Entra issues today: 40 characters, three random, a digit, `Q~`, then 34
/// random (e.g. `abC8Q~…`).
pub(crate) fn new_secret_text() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let mut pick = |alphabet: &[u8]| char::from(alphabet[rng.random_range(0..alphabet.len())]);
    let mut secret = String::with_capacity(40);
    (0..3).for_each(|_| secret.push(pick(SECRET_ALPHABET)));
    secret.push(pick(b"0123456789"));
    secret.push_str("Q~");
    (0..34).for_each(|_| secret.push(pick(SECRET_ALPHABET)));
    secret
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_have_the_entra_shape() {
        for _ in 0..100 {
            let secret = new_secret_text();
            assert_eq!(secret.len(), 40);
            assert_eq!(&secret[4..6], "Q~");
            assert!(secret.as_bytes()[3].is_ascii_digit());
            assert!(secret.bytes().all(|b| SECRET_ALPHABET.contains(&b)));
        }
        assert_ne!(new_secret_text(), new_secret_text());
    }

    #[test]
    fn the_password_limit_error_names_the_attempted_count_and_the_limit() {
        let error = too_many_passwords(3);
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
    }
}
