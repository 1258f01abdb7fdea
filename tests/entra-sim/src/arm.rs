//! Azure Resource Manager, for App Service sites only: the paths under `/subscriptions/…` of
//! [`crate::Sim::resource_manager_url`] (what `https://management.azure.com/` is to a real client).
//!
//! For a site `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Web/sites/{name}` and
//! for a slot (`…/sites/{name}/slots/{slot}`), matched case-insensitively as ARM matches ids:
//!
//! - `GET {site}` — the site resource, in the shape of the published `GetWebApp.json` example (the
//!   example's body with this site's id, names, host names, state and identity put in; the example's
//!   other values are kept as they are). `properties.state` is `Running` or `Stopped`; the first
//!   `GET` after a `stop` still shows `Running`, as the platform takes a moment to report the change
//!   (after a `start` the site is `Running` at once).
//! - `POST {site}/restart?softRestart=&synchronous=`, `POST {site}/stop`, `POST {site}/start`,
//!   `POST {site}/config/configreferences/appsettings/refresh` — `200` once done (`refresh` answers
//!   the references it resolved, `{"value":[…]}`; the others an empty body). `softRestart` and
//!   `synchronous` are accepted and change nothing. What each does to the site's references and
//!   process: see `azure.rs`.
//! - `GET {site}/config/configreferences/appsettings[/{key}]` — `KeyVaultReferenceResource`s (the
//!   shape of `GetKeyVaultReferencesForAppSetting(s).json`, with every property the swagger
//!   documents); `404` for a key the site does not have. `secretVersion` is the version the
//!   reference names, `null` for a versionless one; `activeVersion` is the version resolved.
//!
//! **Long-running operations.** A site created with `async_operations` answers `stop`, `start`,
//! `restart` and `refresh` with `202 Accepted`, `Location`, `Azure-AsyncOperation` (absolute URLs
//! on the sim, under `/subscriptions/{sub}/providers/Microsoft.Web/locations/{loc}/…`) and
//! `Retry-After: 1`. The operation is done after [`crate::azure`]'s two polls (of either URL, in any
//! mix), and only then applied to the site: `Azure-AsyncOperation` answers `{"status":"InProgress"}`
//! then `{"status":"Succeeded"}`, `Location` answers `202` then `200`. An operation nobody polls never
//! completes — a real one would, but a client that does not poll is what the tests look for.
//!
//! Where it is strict, as ARM is: `api-version` is required (`400 MissingApiVersionParameter`); only
//! a token for `https://management.azure.com` is accepted (`401 InvalidAuthenticationToken` with a
//! `WWW-Authenticate: Bearer authorization_uri=…, error="invalid_token"` challenge; a request without
//! `Authorization` at all gets ARM's `401 AuthenticationFailed`); rights are checked before existence
//! ([`crate::ArmRole`] on a scope prefix: without a role, `403 AuthorizationFailed` naming the action
//! and the scope, even for a site that does not exist); an unknown site is `404 ResourceNotFound`.
//! Throttling (`429`, with `Retry-After` when the fault says so) and 5xx come from the fault queue,
//! in ARM's error shape.

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::azure::{
    ArmRole, AzureState, LOCATION, Operation, POLLS_UNTIL_DONE, Site, SiteAction, parse_secret_uri, site_resource_id,
};
use crate::keyvault::object_id_of;
use crate::lock;
use crate::server::{AppState, Audience, Shared, bearer, issued_token};

/// Resource Manager's resource, for tokens.
pub(crate) const MANAGEMENT_RESOURCE: &str = "https://management.azure.com";

/// The published site example, the template of every site the sim answers.
const SITE_TEMPLATE: &str = include_str!("../fixtures/azure/GetWebApp.json");

/// The display name ARM uses for [`LOCATION`].
const LOCATION_NAME: &str = "West Europe";

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/subscriptions/{*rest}", any(arm_request))
}

/// An ARM error: `{"error":{"code","message"}}`.
struct ArmError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
    challenge: Option<String>,
}

impl ArmError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None, challenge: None }
    }
}

impl IntoResponse for ArmError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(challenge) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

/// A fault from the queue, in ARM's shape.
pub(crate) fn fault_response(status: StatusCode, retry_after: Option<u64>) -> Response {
    let (code, message) = match status.as_u16() {
        429 => (
            "TooManyRequests",
            "The request is being throttled as the limit has been reached for operation type - Write. For more information, see - https://aka.ms/srpthrottlinglimits",
        ),
        403 => ("AuthorizationFailed", "The client does not have authorization to perform this action."),
        409 => ("Conflict", "The operation conflicts with another operation in progress."),
        400 => ("BadRequest", "The request was refused."),
        500 => ("InternalServerError", "An internal error occurred. Please retry."),
        502 => ("BadGateway", "The gateway did not receive a response in time."),
        503 => ("ServiceUnavailable", "The service is temporarily unavailable. Please retry."),
        504 => ("GatewayTimeout", "The gateway did not receive a response within the specified time period."),
        _ => ("InternalServerError", "An internal error occurred. Please retry."),
    };
    ArmError { retry_after, ..ArmError::new(status, code, message) }.into_response()
}

async fn arm_request(
    State(s): State<AppState>,
    Path(rest): Path<String>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    handle(&s, &rest, &method, &headers, q.as_deref()).unwrap_or_else(IntoResponse::into_response)
}

/// Which site a path names and what it asks of it.
struct SiteRequest {
    subscription: String,
    group: String,
    name: String,
    slot: Option<String>,
    /// The path after the site (or slot), e.g. `["restart"]`.
    tail: Vec<String>,
}

impl SiteRequest {
    fn id(&self) -> String {
        site_resource_id(&self.subscription, &self.group, &self.name, self.slot.as_deref())
    }

    /// ARM's name for the resource type in messages: `Microsoft.Web/sites/{name}[/slots/{slot}]`.
    fn typed_name(&self) -> String {
        match &self.slot {
            Some(slot) => format!("Microsoft.Web/sites/{}/slots/{slot}", self.name),
            None => format!("Microsoft.Web/sites/{}", self.name),
        }
    }
}

fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn handle(
    shared: &Shared,
    rest: &str,
    method: &Method,
    headers: &HeaderMap,
    raw_query: Option<&str>,
) -> Result<Response, ArmError> {
    let client_id = authenticate(shared, headers)?;
    let query: Vec<(String, String)> = url::form_urlencoded::parse(raw_query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let api_version =
        query.iter().find(|(k, v)| k == "api-version" && !v.is_empty()).map(|(_, v)| v.clone()).ok_or_else(|| {
            ArmError::new(
                StatusCode::BAD_REQUEST,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        })?;
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    // `rest` is what follows `/subscriptions/`.
    match segments.as_slice() {
        [sub, providers, web, locations, _location, kind, id]
            if eq(providers, "providers") && eq(web, "Microsoft.Web") && eq(locations, "locations") =>
        {
            let by_location = eq(kind, "operationResults");
            if !by_location && !eq(kind, "operations") {
                return Err(not_routable(rest));
            }
            poll(shared, &client_id, sub, id, by_location, &api_version)
        }
        [sub, groups, group, providers, web, sites, name, tail @ ..]
            if eq(groups, "resourceGroups")
                && eq(providers, "providers")
                && eq(web, "Microsoft.Web")
                && eq(sites, "sites") =>
        {
            let (slot, tail) = match tail {
                [slots, slot, tail @ ..] if eq(slots, "slots") => (Some((*slot).to_owned()), tail),
                _ => (None, tail),
            };
            let request = SiteRequest {
                subscription: (*sub).to_owned(),
                group: (*group).to_owned(),
                name: (*name).to_owned(),
                slot,
                tail: tail.iter().map(|s| (*s).to_owned()).collect(),
            };
            site_request(shared, &client_id, &request, method, &api_version)
        }
        _ => Err(not_routable(rest)),
    }
}

fn not_routable(rest: &str) -> ArmError {
    ArmError::new(
        StatusCode::NOT_FOUND,
        "InvalidResourceType",
        format!("The resource type could not be found for '/subscriptions/{rest}' in the simulated Resource Manager."),
    )
}

fn invalid_token(shared: &Shared, message: &str) -> ArmError {
    let mut error = ArmError::new(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", message);
    error.challenge = Some(format!(
        "Bearer authorization_uri=\"{}{}\", error=\"invalid_token\", error_description=\"{message}\"",
        shared.base_url, shared.tenant_id
    ));
    error
}

fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<String, ArmError> {
    let Some(token) = bearer(headers) else {
        let mut error = ArmError::new(
            StatusCode::UNAUTHORIZED,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        );
        error.challenge = Some(format!(
            "Bearer authorization_uri=\"{}{}\", error=\"invalid_token\", error_description=\"The authentication failed because of missing 'Authorization' header.\"",
            shared.base_url, shared.tenant_id
        ));
        return Err(error);
    };
    let issued = issued_token(shared, token)
        .ok_or_else(|| invalid_token(shared, "The access token is invalid or has expired."))?;
    if issued.audience != Audience::Management {
        return Err(invalid_token(
            shared,
            &format!("The access token has an invalid audience; the expected audience is {MANAGEMENT_RESOURCE}/."),
        ));
    }
    Ok(issued.client_id.to_string())
}

/// What a request does, for the rights check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Read,
    Write,
}

fn authorize(shared: &Shared, client_id: &str, scope: &str, action: &str, need: Need) -> Result<(), ArmError> {
    let role = lock(&shared.azure).arm_role(client_id, scope);
    let allowed = match (role, need) {
        (Some(ArmRole::Contributor), _) | (Some(ArmRole::Reader), Need::Read) => true,
        (Some(ArmRole::Reader), Need::Write) | (None, _) => false,
    };
    if allowed {
        return Ok(());
    }
    Err(ArmError::new(
        StatusCode::FORBIDDEN,
        "AuthorizationFailed",
        format!(
            "The client '{client_id}' with object id '{}' does not have authorization to perform action '{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, please refresh your credentials.",
            object_id_of(shared, client_id)
        ),
    ))
}

/// `GET {scope}/providers/Microsoft.Authorization/permissions` ("Permissions - List For
/// Resource"): what the caller's role assignments allow on the scope, as the built-in roles define
/// them (Contributor: `*` but authorization writes; Reader: `*/read`). Any caller may ask.
fn caller_permissions(shared: &Shared, client_id: &str, scope: &str) -> Response {
    let role = lock(&shared.azure).arm_role(client_id, scope);
    let value = match role {
        Some(ArmRole::Contributor) => vec![json!({
            "actions": ["*"],
            "notActions": [
                "Microsoft.Authorization/*/Delete",
                "Microsoft.Authorization/*/Write",
                "Microsoft.Authorization/elevateAccess/Action",
                "Microsoft.Blueprint/blueprintAssignments/write",
                "Microsoft.Blueprint/blueprintAssignments/delete",
                "Microsoft.Compute/galleries/share/action"
            ],
            "dataActions": [],
            "notDataActions": []
        })],
        Some(ArmRole::Reader) => {
            vec![json!({ "actions": ["*/read"], "notActions": [], "dataActions": [], "notDataActions": [] })]
        }
        None => Vec::new(),
    };
    axum::Json(json!({ "value": value, "nextLink": null })).into_response()
}

fn site_request(
    shared: &Shared,
    client_id: &str,
    request: &SiteRequest,
    method: &Method,
    api_version: &str,
) -> Result<Response, ArmError> {
    let tail: Vec<&str> = request.tail.iter().map(String::as_str).collect();
    let prefix = if request.slot.is_some() { "Microsoft.Web/sites/slots" } else { "Microsoft.Web/sites" };
    let id = request.id();
    if let (&Method::GET, [providers, authorization, permissions]) = (method, tail.as_slice())
        && eq(providers, "providers")
        && eq(authorization, "Microsoft.Authorization")
        && eq(permissions, "permissions")
    {
        return Ok(caller_permissions(shared, client_id, &id));
    }
    let (action, need, run): (String, Need, Option<SiteAction>) = match (method.clone(), tail.as_slice()) {
        (Method::GET, []) => (format!("{prefix}/read"), Need::Read, None),
        (Method::POST, [op]) if eq(op, "restart") => {
            (format!("{prefix}/restart/action"), Need::Write, Some(SiteAction::Restart))
        }
        (Method::POST, [op]) if eq(op, "stop") => {
            (format!("{prefix}/stop/action"), Need::Write, Some(SiteAction::Stop))
        }
        (Method::POST, [op]) if eq(op, "start") => {
            (format!("{prefix}/start/action"), Need::Write, Some(SiteAction::Start))
        }
        (Method::POST, [config, references, settings, refresh])
            if eq(config, "config")
                && eq(references, "configreferences")
                && eq(settings, "appsettings")
                && eq(refresh, "refresh") =>
        {
            (
                format!("{prefix}/config/configreferences/appsettings/refresh/action"),
                Need::Write,
                Some(SiteAction::Refresh),
            )
        }
        (Method::GET, [config, references, settings, ..])
            if eq(config, "config")
                && eq(references, "configreferences")
                && eq(settings, "appsettings")
                && tail.len() <= 4 =>
        {
            (format!("{prefix}/config/read"), Need::Read, None)
        }
        _ => {
            return Err(ArmError::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("The simulated Resource Manager does not serve {method} {id}/{}.", tail.join("/")),
            ));
        }
    };
    authorize(shared, client_id, &id, &action, need)?;
    let key = id.to_ascii_lowercase();
    let mut azure = lock(&shared.azure);
    let Some(site) = azure.sites.get_mut(&key) else {
        return Err(ArmError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            format!(
                "The Resource '{}' under resource group '{}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
                request.typed_name(),
                request.group
            ),
        ));
    };
    match (run, tail.as_slice()) {
        (None, []) => {
            let body = site_json(shared, site);
            site.stale_reads = site.stale_reads.saturating_sub(1);
            Ok(ok_json(body))
        }
        (None, [_, _, _]) => {
            let value = vec![reference_json(shared, site)];
            Ok(ok_json(json!({ "value": value })))
        }
        (None, [_, _, _, setting]) => {
            if !site.spec.setting_key.eq_ignore_ascii_case(setting) {
                return Err(ArmError::new(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("Cannot find app setting with key '{setting}' on {}.", request.typed_name()),
                ));
            }
            Ok(ok_json(reference_json(shared, site)))
        }
        (Some(action), _) if site.spec.async_operations => {
            let subscription = site.spec.subscription_id.clone();
            let operation = Uuid::new_v4();
            azure
                .operations
                .insert(operation, Operation { site: key, action, polls_left: POLLS_UNTIL_DONE, done: false });
            Ok(accepted(shared, &subscription, operation, api_version))
        }
        (Some(action), _) => {
            azure.apply(&key, action);
            Ok(action_done(shared, &azure, &key, action))
        }
        (None, _) => Err(not_routable(&id)),
    }
}

fn ok_json(body: Value) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// What a finished operation answers: the references for `refresh`, an empty body otherwise.
fn action_done(shared: &Shared, azure: &AzureState, key: &str, action: SiteAction) -> Response {
    match (action, azure.sites.get(key)) {
        (SiteAction::Refresh, Some(site)) => ok_json(json!({ "value": [reference_json(shared, site)] })),
        _ => StatusCode::OK.into_response(),
    }
}

fn operation_urls(shared: &Shared, subscription: &str, operation: Uuid, api_version: &str) -> (String, String) {
    let api_version: String = url::form_urlencoded::byte_serialize(api_version.as_bytes()).collect();
    let base = format!("{}subscriptions/{subscription}/providers/Microsoft.Web/locations/{LOCATION}", shared.base_url);
    (
        format!("{base}/operationResults/{operation}?api-version={api_version}"),
        format!("{base}/operations/{operation}?api-version={api_version}"),
    )
}

/// `202 Accepted` with the two polling URLs and `Retry-After: 1`.
fn accepted(shared: &Shared, subscription: &str, operation: Uuid, api_version: &str) -> Response {
    let (location, async_operation) = operation_urls(shared, subscription, operation, api_version);
    let mut response = StatusCode::ACCEPTED.into_response();
    let headers = response.headers_mut();
    if let (Ok(location), Ok(async_operation)) =
        (HeaderValue::from_str(&location), HeaderValue::from_str(&async_operation))
    {
        headers.insert(header::LOCATION, location);
        headers.insert("azure-asyncoperation", async_operation);
    }
    headers.insert(header::RETRY_AFTER, HeaderValue::from(1u32));
    response
}

fn poll(
    shared: &Shared,
    client_id: &str,
    subscription: &str,
    raw_id: &str,
    by_location: bool,
    api_version: &str,
) -> Result<Response, ArmError> {
    let not_found = || {
        ArmError::new(StatusCode::NOT_FOUND, "OperationNotFound", format!("The operation '{raw_id}' was not found."))
    };
    let id = Uuid::parse_str(raw_id).map_err(|_| not_found())?;
    let site = lock(&shared.azure).operations.get(&id).map(|o| o.site.clone()).ok_or_else(not_found)?;
    authorize(shared, client_id, &site, "Microsoft.Web/locations/operationResults/read", Need::Read)?;

    let mut azure = lock(&shared.azure);
    let operation = azure.operations.get_mut(&id).ok_or_else(not_found)?;
    let was_done = operation.done;
    if !operation.done {
        operation.polls_left = operation.polls_left.saturating_sub(1);
        operation.done = operation.polls_left == 0;
    }
    let (done, action) = (operation.done, operation.action);
    if done && !was_done {
        azure.apply(&site, action);
    }
    if by_location {
        if done {
            return Ok(action_done(shared, &azure, &site, action));
        }
        let (location, _) = operation_urls(shared, subscription, id, api_version);
        let mut response = StatusCode::ACCEPTED.into_response();
        if let Ok(location) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1u32));
        return Ok(response);
    }
    let status = if done { "Succeeded" } else { "InProgress" };
    let mut response = ok_json(
        json!({ "id": format!("/subscriptions/{subscription}/providers/Microsoft.Web/locations/{LOCATION}/operations/{id}"), "name": id.to_string(), "status": status }),
    );
    if !done {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1u32));
    }
    Ok(response)
}

/// The host name a site (or slot) answers on, as Azure names it.
fn host_name(site: &Site) -> String {
    match &site.spec.slot {
        Some(slot) => format!("{}-{slot}.azurewebsites.net", site.spec.name).to_ascii_lowercase(),
        None => format!("{}.azurewebsites.net", site.spec.name).to_ascii_lowercase(),
    }
}

/// The site as `GET` shows it: the published example with this site's values put in.
fn site_json(shared: &Shared, site: &Site) -> Value {
    let template: Value = serde_json::from_str(SITE_TEMPLATE).unwrap_or(Value::Null);
    let mut body = template.pointer("/responses/200/body").cloned().unwrap_or_else(|| json!({ "properties": {} }));
    let spec = &site.spec;
    let id = spec.resource_id();
    let host = host_name(site);
    let scm_host = host.replacen(".azurewebsites.net", ".scm.azurewebsites.net", 1);
    // Still running, for the one read the platform lags behind a stop.
    let running = if site.stale_reads > 0 { !site.running } else { site.running };
    body["id"] = json!(id);
    body["name"] = json!(match &spec.slot {
        Some(slot) => format!("{}/{slot}", spec.name),
        None => spec.name.clone(),
    });
    body["type"] = json!(if spec.slot.is_some() { "Microsoft.Web/sites/slots" } else { "Microsoft.Web/sites" });
    body["kind"] = json!("app");
    body["location"] = json!(LOCATION_NAME);
    body["identity"] = json!({
        "type": "SystemAssigned",
        "principalId": site.principal_id.to_string(),
        "tenantId": shared.tenant_id.to_string(),
    });
    let properties = &mut body["properties"];
    properties["state"] = json!(if running { "Running" } else { "Stopped" });
    properties["hostNames"] = json!([host]);
    properties["repositorySiteName"] = json!(spec.name);
    properties["enabledHostNames"] = json!([host, scm_host]);
    properties["hostNameSslStates"] = json!([
        { "name": host, "sslState": "Disabled", "hostType": "Standard" },
        { "name": scm_host, "sslState": "Disabled", "hostType": "Repository" },
    ]);
    properties["serverFarmId"] = json!(format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Web/serverfarms/{}-plan",
        spec.subscription_id, spec.resource_group, spec.name
    ));
    properties["resourceGroup"] = json!(spec.resource_group);
    properties["defaultHostName"] = json!(host);
    properties["keyVaultReferenceIdentity"] = json!("SystemAssigned");
    body
}

/// The site's Key Vault reference as a `KeyVaultReferenceResource`.
fn reference_json(_shared: &Shared, site: &Site) -> Value {
    let spec = &site.spec;
    let parsed = parse_secret_uri(&spec.secret_uri);
    let (vault, secret, version) = match &parsed {
        Some((vault, secret, version)) => (Some(vault.clone()), Some(secret.clone()), version.clone()),
        None => (None, None, None),
    };
    json!({
        "id": format!("{}/config/configreferences/appsettings/{}", spec.resource_id(), spec.setting_key),
        "name": spec.setting_key,
        "type": if spec.slot.is_some() { "Microsoft.Web/sites/slots/config/configreferences" } else { "Microsoft.Web/sites/config/configreferences" },
        "location": LOCATION_NAME,
        "properties": {
            "reference": format!("@Microsoft.KeyVault(SecretUri={})", spec.secret_uri),
            "status": site.cache.status.as_str(),
            "vaultName": vault,
            "secretName": secret,
            "secretVersion": version,
            "identityType": "SystemAssigned",
            "details": site.cache.status.details(),
            "source": "KeyVault",
            "activeVersion": site.cache.version,
        }
    })
}
