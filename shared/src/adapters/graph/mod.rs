//! The Microsoft Graph adapter: the [`Directory`] port over HTTPS, against Graph and the Entra token
//! endpoint of one integration (tenant).
//!
//! Decided here, at the boundary, and nowhere else:
//! - which failures are transient (throttling, concurrency refusals, server errors, the network) and
//!   which are permanent (a missing permission, a missing object, a malformed request);
//! - which requests may be sent again: every read, `removePassword`, and any request refused before
//!   Graph acted on it (429, concurrency). `addPassword` is never re-sent after an answer that leaves
//!   its outcome unknown, because a second call would create a second secret;
//! - what may be written down: never an access token, a secret, or `addPassword`'s answer.
//!
//! One `reqwest` client serves Graph and, as its transport, the `azure_identity` credential, so the
//! configured CA certificate is trusted on both paths and only one TLS stack (rustls with aws-lc-rs)
//! is in the process.

mod auth;
mod retry;
mod wire;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use azure_core::credentials::{Secret, TokenCredential};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, StatusCode, header};
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use zeroize::Zeroize;

pub use auth::TokenSource;
pub use retry::{RetryPolicy, parse_retry_after};

use crate::adapters::system_clock::SystemClock;
use crate::domain::ids::{AppObjectId, ClientId, KeyId, ServicePrincipalId, TenantId};
use crate::domain::integration::IntegrationConfig;
use crate::domain::secret::SecretValue;
use crate::ports::Clock;
use crate::ports::directory::{
    Cursor, Directory, DirectoryApplication, DirectoryObject, DirectoryServicePrincipal, NewPassword, Page, Removal,
};
use crate::{Error, Result};

const GRAPH: &str = "Microsoft Graph";
const TOKEN_ENDPOINT: &str = "Entra token endpoint";

const APPLICATION_FIELDS: &str = "id,appId,displayName,signInAudience,passwordCredentials,keyCredentials";
// `servicePrincipalType` tells managed identities (whose credentials Azure itself rotates) from the
// rest; it is asked for so that a later sync can skip them, though the port does not carry it yet.
const SERVICE_PRINCIPAL_FIELDS: &str = "id,appId,displayName,servicePrincipalType,passwordCredentials,keyCredentials";
/// The largest page Graph serves for applications and service principals.
const PAGE_SIZE: u32 = 999;

/// The resource whose token Graph accepts. National clouds have their own Graph host; any other
/// host (a proxy, the simulated tenant) stands in for the global one.
const GLOBAL_GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
const NATIONAL_GRAPH_HOSTS: [&str; 4] =
    ["graph.microsoft.com", "graph.microsoft.us", "dod-graph.microsoft.us", "microsoftgraph.chinacloudapi.cn"];

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Characters left as they are in a query value: RFC 3986 "unreserved". Everything else, quotes,
/// `&`, `=`, `#`, `+`, `%`, spaces and non-ASCII included, is percent-encoded, so a value can never
/// end the parameter, start another, or change meaning when the server decodes it.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// `value` as an OData string literal, ready to be placed in a query string: quoted with `'`, every
/// `'` inside doubled (OData's only escape in string literals), then percent-encoded. Whatever the
/// input, the server decodes it to exactly one literal whose content is `value`.
///
/// `O'Brien` becomes `%27O%27%27Brien%27`, which Graph reads as `'O''Brien'`.
pub fn odata_string_literal(value: &str) -> String {
    let literal = format!("'{}'", value.replace('\'', "''"));
    utf8_percent_encode(&literal, QUERY_VALUE).to_string()
}

/// The Graph adapter for one integration. Cheap to share behind an `Arc`; its `Debug` shows where it
/// points and how it signs in, never a secret.
pub struct GraphClient {
    http: reqwest::Client,
    /// Without a trailing slash, e.g. `https://graph.microsoft.com/v1.0`.
    graph_base: String,
    graph_url: url::Url,
    authority: url::Url,
    tenant: TenantId,
    scope: String,
    token_method: &'static str,
    credential: Arc<dyn TokenCredential>,
    retry: RetryPolicy,
    request_timeout: Duration,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphClient")
            .field("graph", &self.graph_base)
            .field("authority", &self.authority.as_str())
            .field("tenant", &self.tenant)
            .field("auth", &self.token_method)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl GraphClient {
    /// The adapter an integration's configuration describes: its Graph and authority hosts, its CA
    /// certificate (read now), and its sign-in method.
    pub fn from_integration(config: &IntegrationConfig, retry: RetryPolicy) -> Result<Self> {
        let ca = match &config.ca_certificate {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|e| Error::Config(format!("cannot read ca_certificate {}: {e}", path.display())))?,
            ),
            None => None,
        };
        let source = TokenSource::from_credentials(config.client_id, &config.credentials)?;
        Self::new(
            config.graph_base_url.clone(),
            config.authority_host.clone(),
            config.tenant,
            source,
            ca.as_deref(),
            retry,
        )
    }

    /// The adapter from its parts. `extra_ca_pem` (one or more PEM certificates) is trusted besides
    /// the system's roots, by Graph requests and token requests alike.
    pub fn new(
        graph_base_url: url::Url,
        authority_host: url::Url,
        tenant: TenantId,
        token_source: TokenSource,
        extra_ca_pem: Option<&[u8]>,
        retry: RetryPolicy,
    ) -> Result<Self> {
        install_crypto_provider();
        for (field, url) in [("graph_base_url", &graph_base_url), ("authority_host", &authority_host)] {
            if url.scheme() != "https" || url.host_str().is_none() {
                return Err(Error::Config(format!("{field}: {url} is not an https URL")));
            }
        }
        if retry.max_attempts == 0 {
            return Err(Error::Config("retry policy: max_attempts must be at least 1".into()));
        }
        let http = http_client(extra_ca_pem)?;
        let token_method = token_source.method();
        let credential = auth::credential(token_source, tenant, &authority_host, http.clone(), retry)?;
        Ok(Self {
            http,
            graph_base: graph_base_url.as_str().trim_end_matches('/').to_owned(),
            scope: graph_scope(&graph_base_url),
            graph_url: graph_base_url,
            authority: authority_host,
            tenant,
            token_method,
            credential,
            retry,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            clock: Arc::new(SystemClock),
        })
    }

    /// How long one request may take before it counts as failed (default 60 s).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The clock `Retry-After` dates are measured against (default: the system's).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    // -----------------------------------------------------------------------------------------
    // Requests

    /// An access token for Graph. `azure_identity` caches it and retries its own transient failures,
    /// so a failure here is reported as it is.
    async fn token(&self) -> Result<Secret, Failure> {
        match self.credential.get_token(&[self.scope.as_str()], None).await {
            Ok(token) => Ok(token.token),
            Err(e) => Err(Failure::plain(token_error(&e, self.token_method))),
        }
    }

    /// Sends one logical request, retrying as `op` allows, and returns the successful answer's body.
    async fn call(
        &self,
        op: &Op,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Vec<u8>, Failure> {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match self.attempt(op, method.clone(), url, body).await {
                Ok(body) => return Ok(body),
                Err(failure) => failure,
            };
            if !failure.retry {
                return Err(failure);
            }
            let wait = failure.retry_after.unwrap_or_else(|| self.retry.backoff(attempt));
            if attempt >= self.retry.max_attempts || started.elapsed() + wait > self.retry.budget {
                return Err(failure.gave_up(attempt, started.elapsed()));
            }
            tracing::warn!(
                operation = %op.what,
                status = failure.status,
                code = %failure.code,
                attempt,
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                retry_after = failure.retry_after.is_some(),
                "Graph refused for now; trying again"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// One try: token, request, answer.
    async fn attempt(
        &self,
        op: &Op,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Vec<u8>, Failure> {
        let token = self.token().await?;
        let mut request = self
            .http
            .request(method.clone(), url)
            .bearer_auth(token.secret())
            .header(header::ACCEPT, "application/json")
            .timeout(self.request_timeout);
        if let Some(body) = body {
            request = request.json(body);
        }
        drop(token);
        tracing::debug!(operation = %op.what, %method, path = %path_of(url), "Graph request");
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return Err(network_failure(op, &e)),
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, self.clock.now()));
        let bytes = match response.bytes().await {
            Ok(bytes) => Vec::from(bytes),
            Err(e) => return Err(network_failure(op, &e)),
        };
        if status.is_success() {
            return Ok(bytes);
        }
        Err(classify(op, status, &bytes, retry_after))
    }

    /// A listing page of `collection` at `cursor`.
    async fn list<Id: DeserializeOwned>(
        &self,
        collection: &str,
        fields: &str,
        cursor: Cursor,
    ) -> Result<Page<DirectoryObject<Id>>> {
        let base = &self.graph_base;
        let (url, delta) = match cursor {
            Cursor::Full => (format!("{base}/{collection}?$select={fields}&$top={PAGE_SIZE}"), false),
            Cursor::DeltaStart => (format!("{base}/{collection}/delta?$select={fields}"), true),
            // Graph documents "sync from now" (`$deltatoken=latest`) for its directory resources,
            // applications and service principals among them. `$select` goes along so the delta
            // link it returns keeps asking for the credential collections.
            Cursor::DeltaLatest => (format!("{base}/{collection}/delta?$select={fields}&$deltatoken=latest"), true),
            Cursor::Link(link) => {
                self.check_link(&link)?;
                let delta = is_delta_link(&link);
                (link, delta)
            }
        };
        let op = Op::read(format!("list {collection}"), collection.to_owned()).listing();
        let body = self.call(&op, Method::GET, &url, None).await?;
        let page: wire::CollectionPage<Id> = parse(&op, &body)?;
        page.into_page(delta).map_err(|e| unreadable(&op, e))
    }

    /// A link from an earlier page is followed as Graph wrote it, but only to the configured Graph
    /// host: the access token must not travel anywhere else, whatever a stored link says.
    fn check_link(&self, link: &str) -> Result<()> {
        let parsed = url::Url::parse(link).map_err(|e| Error::invalid("Graph link", format!("not a URL: {e}")))?;
        if parsed.origin() != self.graph_url.origin() {
            return Err(Error::invalid(
                "Graph link",
                format!(
                    "it points to {}, not to the configured Graph host {}; the access token is only sent to Graph",
                    parsed.origin().ascii_serialization(),
                    self.graph_url.origin().ascii_serialization()
                ),
            ));
        }
        Ok(())
    }

    fn token_endpoint(&self) -> String {
        auth::token_endpoint(&self.authority, self.tenant)
    }
}

#[async_trait]
impl Directory for GraphClient {
    async fn applications(&self, cursor: Cursor) -> Result<Page<DirectoryApplication>> {
        self.list("applications", APPLICATION_FIELDS, cursor).await
    }

    async fn service_principals(&self, cursor: Cursor) -> Result<Page<DirectoryServicePrincipal>> {
        self.list::<ServicePrincipalId>("servicePrincipals", SERVICE_PRINCIPAL_FIELDS, cursor).await
    }

    async fn application(&self, id: AppObjectId) -> Result<Option<DirectoryApplication>> {
        let url = format!("{}/applications/{id}?$select={APPLICATION_FIELDS}", self.graph_base);
        let op = Op::read(format!("read application {id}"), format!("application {id}"));
        let body = match self.call(&op, Method::GET, &url, None).await {
            Ok(body) => body,
            Err(failure) if failure.status == 404 => return Ok(None),
            Err(failure) => return Err(failure.into()),
        };
        let object: wire::ObjectJson<AppObjectId> = parse(&op, &body)?;
        object.into_object(false).map(Some).map_err(|e| unreadable(&op, e))
    }

    async fn applications_named(&self, name: &str) -> Result<Vec<DirectoryApplication>> {
        let mut url = format!(
            "{}/applications?$filter=displayName%20eq%20{}&$select={APPLICATION_FIELDS}&$top={PAGE_SIZE}",
            self.graph_base,
            odata_string_literal(name)
        );
        let op = Op::read("find applications by display name".to_owned(), "applications".to_owned());
        let mut found = Vec::new();
        loop {
            let body = self.call(&op, Method::GET, &url, None).await?;
            let page: wire::CollectionPage<AppObjectId> = parse(&op, &body)?;
            let page = page.into_page(false).map_err(|e| unreadable(&op, e))?;
            // Graph compares display names without regard to case; the port promises an exact match.
            found.extend(page.items.into_iter().filter(|a| a.display_name.as_deref() == Some(name)));
            match page.next_link {
                Some(next) => {
                    self.check_link(&next)?;
                    url = next;
                }
                None => return Ok(found),
            }
        }
    }

    /// Creates a secret. `addPassword` is not idempotent, so it is sent again only when Graph
    /// certainly did not act on it: a 429, a concurrency refusal (409, or 400 naming concurrent
    /// requests), or a connection that never opened. A timeout, a dropped connection or a 5xx leaves
    /// the outcome unknown: the call fails with a transient error and is not repeated here. If Graph
    /// did create the secret, nobody has its value; the caller's orphan sweep finds it by the
    /// execution marker in `display_name` and removes it, and the retried rotation creates another.
    ///
    /// The answer holds the only copy of the secret text: it is never logged or quoted in an error.
    async fn add_password(&self, app: AppObjectId, display_name: &str, end: OffsetDateTime) -> Result<NewPassword> {
        let end = end
            .to_offset(time::UtcOffset::UTC)
            .replace_nanosecond(0)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .ok_or_else(|| Error::invalid("secret end date", "cannot be written as an RFC 3339 time"))?;
        let url = format!("{}/applications/{app}/addPassword", self.graph_base);
        let body = serde_json::json!({ "passwordCredential": { "displayName": display_name, "endDateTime": end } });
        let op = Op::write(format!("addPassword on application {app}"), format!("application {app}"))
            .not_replayable()
            .sensitive();
        let mut answer = self.call(&op, Method::POST, &url, Some(&body)).await?;
        let parsed: std::result::Result<wire::AddedPasswordJson, _> = serde_json::from_slice(&answer);
        answer.zeroize();
        // serde's message may quote the input, which holds the secret: say only what failed.
        let added = parsed.map_err(|_| Error::Directory {
            service: GRAPH,
            status: 200,
            code: "UnreadableResponse".into(),
            message: format!(
                "Graph's answer to addPassword on application {app} could not be read; if a secret was created \
                 its value is lost, and the orphan sweep removes it by its marker"
            ),
            transient: true,
            retry_after: None,
        })?;
        let Some(secret_text) = added.secret_text else {
            return Err(Error::Directory {
                service: GRAPH,
                status: 200,
                code: "MissingSecretText".into(),
                message: format!(
                    "Graph created password {} on application {app} but returned no secretText; the orphan sweep \
                     removes it by its marker",
                    added.key_id
                ),
                transient: true,
                retry_after: None,
            });
        };
        let read_time = |field, v: Option<String>| wire::timestamp(field, v.as_deref()).map_err(|e| unreadable(&op, e));
        Ok(NewPassword {
            key_id: added.key_id,
            secret: SecretValue::new(secret_text),
            hint: added.hint,
            display_name: added.display_name,
            start: read_time("startDateTime", added.start_date_time)?,
            end: read_time("endDateTime", added.end_date_time)?,
        })
    }

    /// Removes one password. Sending it twice is harmless (the second finds nothing), so it is
    /// retried like a read. An unknown key id, or an application that no longer exists, is
    /// [`Removal::AlreadyGone`]: either way no credential with that key id can sign in. Microsoft
    /// documents only the 204; for an unknown key id Graph answers 404 `Request_ResourceNotFound`
    /// ("No password credential found with keyId …", as the simulated tenant does), and a 400 with
    /// such a message is read the same way. A 404 can also be replication lag on an object created
    /// seconds ago; removals here target credentials past their grace period, or orphans past the
    /// sweep's safety delay, so that case does not arise.
    async fn remove_password(&self, app: AppObjectId, key_id: KeyId) -> Result<Removal> {
        let url = format!("{}/applications/{app}/removePassword", self.graph_base);
        let body = serde_json::json!({ "keyId": key_id.to_string() });
        let op = Op::write(format!("removePassword {key_id} on application {app}"), format!("application {app}"));
        match self.call(&op, Method::POST, &url, Some(&body)).await {
            Ok(_) => Ok(Removal::Removed),
            Err(failure) if failure.status == 404 => Ok(Removal::AlreadyGone),
            Err(failure) if failure.status == 400 && names_missing_key(&failure.graph_message) => {
                Ok(Removal::AlreadyGone)
            }
            Err(failure) => Err(failure.into()),
        }
    }

    /// A client-credentials token request for Graph as `client_id` with `secret`, at the
    /// integration's authority and tenant. Sent once: the verify step has its own patience.
    async fn secret_signs_in(&self, client_id: ClientId, secret: &SecretValue) -> Result<bool> {
        let client_id = client_id.to_string();
        let form = [
            ("client_id", client_id.as_str()),
            ("client_secret", secret.expose()),
            ("grant_type", "client_credentials"),
            ("scope", self.scope.as_str()),
        ];
        let response = self
            .http
            .post(self.token_endpoint())
            .form(&form)
            .timeout(self.request_timeout)
            .send()
            .await
            .map_err(|e| token_network_error(&e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, self.clock.now()));
        let mut body = Vec::from(response.bytes().await.map_err(|e| token_network_error(&e))?);
        if status.is_success() {
            // The answer is an access token: nothing in it is needed, and it is wiped.
            body.zeroize();
            return Ok(true);
        }
        let error: wire::TokenErrorBody = serde_json::from_slice(&body).unwrap_or_default();
        let description = one_line(&error.error_description);
        // invalid_client: wrong, expired or not yet replicated secret (AADSTS7000215, 7000222).
        // unauthorized_client with AADSTS700016: the application is not (yet) known to this tenant.
        if error.error == "invalid_client"
            || (error.error == "unauthorized_client" && error.error_codes.contains(&700016))
        {
            tracing::debug!(status = status.as_u16(), error = %error.error, codes = ?error.error_codes, "secret does not sign in (yet)");
            return Ok(false);
        }
        let transient = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
        Err(Error::Directory {
            service: TOKEN_ENDPOINT,
            status: status.as_u16(),
            code: if error.error.is_empty() { status_text(status) } else { error.error },
            message: if description.is_empty() {
                "the token request failed".into()
            } else {
                format!("the token request failed: {description}")
            },
            transient,
            retry_after,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// What one call is, and how its failures read

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

/// What a request does, so its failures can say so and be retried only as far as is safe.
#[derive(Debug, Clone)]
struct Op {
    /// For messages and logs, e.g. `addPassword on application …`.
    what: String,
    /// What a 404 means is missing.
    object: String,
    access: Access,
    /// Sending it twice is harmless, so a 5xx, a timeout or a dropped connection may be retried.
    replayable: bool,
    /// A listing, possibly on a delta link: an expired-delta answer is [`Error::DeltaExpired`].
    listing: bool,
    /// Its answer may hold a secret: nothing from it, not even an error text, is repeated.
    sensitive: bool,
}

impl Op {
    fn read(what: String, object: String) -> Self {
        Self { what, object, access: Access::Read, replayable: true, listing: false, sensitive: false }
    }
    fn write(what: String, object: String) -> Self {
        Self { what, object, access: Access::Write, replayable: true, listing: false, sensitive: false }
    }
    fn not_replayable(mut self) -> Self {
        self.replayable = false;
        self
    }
    fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }
    fn listing(mut self) -> Self {
        self.listing = true;
        self
    }
    /// The Graph application permission the call needs.
    fn permission(&self) -> &'static str {
        match self.access {
            Access::Read => "Application.Read.All",
            Access::Write => "Application.ReadWrite.All",
        }
    }
}

/// A failed try: the error to report, and what the retry loop needs to know about it.
struct Failure {
    error: Error,
    status: u16,
    code: String,
    /// Graph's own message, kept for callers that decide by it (never for `addPassword`).
    graph_message: String,
    retry: bool,
    retry_after: Option<Duration>,
}

impl Failure {
    fn plain(error: Error) -> Self {
        let (status, code) = match &error {
            Error::Directory { status, code, .. } => (*status, code.clone()),
            _ => (0, String::new()),
        };
        Self { error, status, code, graph_message: String::new(), retry: false, retry_after: None }
    }

    /// The retries are spent: the error says how many tries it took.
    fn gave_up(mut self, attempts: u32, elapsed: Duration) -> Self {
        if let Error::Directory { message, .. } = &mut self.error {
            message.push_str(&format!(" (gave up after {attempts} tries in {:.1}s)", elapsed.as_secs_f64()));
        }
        self
    }
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Self {
        f.error
    }
}

fn directory_error(
    status: u16,
    code: String,
    message: String,
    transient: bool,
    retry_after: Option<Duration>,
) -> Error {
    Error::Directory { service: GRAPH, status, code, message, transient, retry_after }
}

/// Turns a refusal into a verdict: retry, a transient error, a permanent error, or an expired delta.
fn classify(op: &Op, status: StatusCode, body: &[u8], retry_after: Option<Duration>) -> Failure {
    let parsed: wire::GraphErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let code = if parsed.error.code.is_empty() { status_text(status) } else { parsed.error.code };
    let graph_message = one_line(&parsed.error.message);
    let n = status.as_u16();
    let concurrency = (n == 409 || n == 400) && is_concurrency(&code, &graph_message);
    let throttled = n == 429;
    let server = status.is_server_error();

    if op.listing && (n == 410 || is_expired_delta(&code, &graph_message)) {
        return Failure { error: Error::DeltaExpired, status: n, code, graph_message, retry: false, retry_after: None };
    }
    // Nothing from the answer to a sensitive call (addPassword) is repeated, not even an error text.
    let said = if graph_message.is_empty() || op.sensitive { String::new() } else { format!(": {graph_message}") };
    let (message, transient, retry) = if throttled {
        (format!("{} was throttled{said}", op.what), true, true)
    } else if concurrency {
        (format!("{} collided with another write to the same object{said}", op.what), true, true)
    } else if server && op.replayable {
        (format!("{} failed on Graph's side{said}", op.what), true, true)
    } else if server {
        (
            format!(
                "{} got {n} from Graph, so whether it took effect is unknown; it is not sent again. A secret it may \
                 have created carries the execution marker and is removed by the orphan sweep",
                op.what
            ),
            true,
            false,
        )
    } else if n == 403 {
        (
            format!(
                "{} was denied: the integration's app needs the Microsoft Graph application permission {} \
                 (admin-consented){}{said}",
                op.what,
                op.permission(),
                if op.access == Access::Write {
                    ", or Application.ReadWrite.OwnedBy as an owner of the app"
                } else {
                    ""
                }
            ),
            false,
            false,
        )
    } else if n == 404 {
        (format!("{} found no {}: it does not exist or was deleted{said}", op.what, op.object), false, false)
    } else if n == 401 {
        (
            format!(
                "{} was refused: Graph did not accept the integration's access token (check the tenant id and that \
                 the app registration exists){said}",
                op.what
            ),
            false,
            false,
        )
    } else if op.sensitive && n == 400 {
        (
            format!(
                "{} was refused ({code}): the application may already hold the most passwords it allows (two when \
                 it accepts personal Microsoft accounts), or the end date breaks the tenant's credential lifetime policy",
                op.what
            ),
            false,
            false,
        )
    } else {
        (format!("{} was refused{said}", op.what), false, false)
    };
    let graph_message = if op.sensitive { String::new() } else { graph_message };
    Failure {
        error: directory_error(n, code.clone(), message, transient, retry_after),
        status: n,
        code,
        graph_message,
        retry,
        retry_after,
    }
}

/// A request that got no answer. A connection that never opened is always safe to retry; anything
/// later is retried only for replayable calls.
fn network_failure(op: &Op, e: &reqwest::Error) -> Failure {
    if let Some(tls) = tls_problem(e) {
        return Failure::plain(Error::Config(format!(
            "TLS with Graph failed ({tls}); if Graph is reached through a private CA, set ca_certificate"
        )));
    }
    let never_sent = e.is_connect();
    let kind = if e.is_timeout() {
        "timed out"
    } else if never_sent {
        "could not connect"
    } else {
        "lost its connection"
    };
    let (message, retry) = if never_sent || op.replayable {
        (format!("{} {kind}: {}", op.what, error_chain(e)), true)
    } else {
        (
            format!(
                "{} {kind} after it was sent, so whether it took effect is unknown; it is not sent again. A secret it \
                 may have created carries the execution marker and is removed by the orphan sweep ({})",
                op.what,
                error_chain(e)
            ),
            false,
        )
    };
    let code = if e.is_timeout() { "Timeout" } else { "NetworkError" };
    Failure {
        error: directory_error(0, code.into(), message, true, None),
        status: 0,
        code: code.into(),
        graph_message: String::new(),
        retry,
        retry_after: None,
    }
}

fn token_network_error(e: &reqwest::Error) -> Error {
    if let Some(tls) = tls_problem(e) {
        return Error::Config(format!(
            "TLS with the token endpoint failed ({tls}); if it is reached through a private CA, set ca_certificate"
        ));
    }
    Error::Directory {
        service: TOKEN_ENDPOINT,
        status: 0,
        code: if e.is_timeout() { "Timeout".into() } else { "NetworkError".into() },
        message: format!("the token request got no answer: {}", error_chain(e)),
        transient: true,
        retry_after: None,
    }
}

/// A certificate or handshake failure somewhere in the error's causes: permanent, and a matter of
/// configuration, so it is not retried.
pub(super) fn tls_problem(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(tls) = rustls_error(err) {
            return Some(tls.to_string());
        }
        cur = err.source();
    }
    None
}

/// `err` as a rustls error, looking through `io::Error` wrappers, which hide the error they carry
/// from `source()` (the TLS stream nests one inside another).
fn rustls_error<'a>(mut err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    loop {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        let inner = err.downcast_ref::<std::io::Error>()?.get_ref()?;
        err = inner;
    }
}

/// A token acquisition failure: transient when the endpoint was unreachable, busy or failing.
fn token_error(e: &azure_core::Error, method: &'static str) -> Error {
    use azure_core::error::ErrorKind;
    if let Some(tls) = tls_problem(e) {
        return Error::Config(format!(
            "the integration could not get a Graph token ({method}): TLS with the token endpoint failed ({tls}); if \
             it is reached through a private CA, set ca_certificate"
        ));
    }
    let mut status = 0u16;
    let mut transient = false;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(az) = err.downcast_ref::<azure_core::Error>() {
            match az.kind() {
                ErrorKind::HttpResponse { status: s, .. } => {
                    status = u16::from(*s);
                    transient |= status == 429 || status >= 500;
                }
                ErrorKind::Connection | ErrorKind::Io => transient = true,
                _ => {}
            }
        }
        cur = err.source();
    }
    Error::Directory {
        service: TOKEN_ENDPOINT,
        status,
        code: "TokenUnavailable".into(),
        message: format!("the integration could not get a Graph token ({method}): {}", one_line(&e.to_string())),
        transient,
        retry_after: None,
    }
}

/// Graph reports overlapping writes to one object as 409 `Directory_ConcurrencyViolation`, or as a
/// 400 whose message speaks of concurrent requests.
fn is_concurrency(code: &str, message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    code.to_ascii_lowercase().contains("concurrency")
        || message.contains("concurrent request")
        || message.contains("directory_concurrencyviolation")
}

/// Graph answers an expired delta link (7 days for directory objects) with 400 `syncStateNotFound`
/// ("The sync state generation is not found. The delta token is expired…"); other resources use 410
/// Gone with `resyncRequired`. All of them mean: sync again in full.
fn is_expired_delta(code: &str, message: &str) -> bool {
    let code = code.to_ascii_lowercase();
    let message = message.to_ascii_lowercase();
    matches!(code.as_str(), "syncstatenotfound" | "syncstateinvalid" | "resyncrequired")
        || message.contains("delta token is expired")
        || message.contains("sync state generation is not found")
}

/// Whether a 400 from `removePassword` says the key id is not on the application.
fn names_missing_key(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    (message.contains("keyid") || message.contains("key id") || message.contains("credential"))
        && (message.contains("not found")
            || message.contains("no password")
            || message.contains("does not exist")
            || message.contains("not exist"))
}

fn is_delta_link(link: &str) -> bool {
    url::Url::parse(link)
        .ok()
        .and_then(|u| u.path_segments().and_then(|mut s| s.next_back().map(str::to_owned)))
        .is_some_and(|last| last.starts_with("delta") || last.contains(".delta"))
}

fn parse<T: DeserializeOwned>(op: &Op, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| unreadable(op, e.to_string()))
}

fn unreadable(op: &Op, reason: impl fmt::Display) -> Error {
    directory_error(
        200,
        "UnreadableResponse".into(),
        format!("Graph's answer to {} could not be read: {reason}", op.what),
        false,
        None,
    )
}

fn status_text(status: StatusCode) -> String {
    status.canonical_reason().unwrap_or("error").replace(' ', "")
}

fn one_line(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > 400 { format!("{}…", line.chars().take(400).collect::<String>()) } else { line }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        out.push_str(": ");
        out.push_str(&err.to_string());
        cur = err.source();
    }
    out
}

/// The path of a URL, for logs: the query may carry a display name and is left out.
fn path_of(url: &str) -> String {
    url::Url::parse(url).map(|u| u.path().to_owned()).unwrap_or_default()
}

fn graph_scope(graph: &url::Url) -> String {
    match graph.host_str() {
        Some(host) if NATIONAL_GRAPH_HOSTS.contains(&host) => format!("https://{host}/.default"),
        _ => GLOBAL_GRAPH_SCOPE.to_owned(),
    }
}

fn http_client(extra_ca_pem: Option<&[u8]>) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        // Graph does not redirect; a redirect would only carry the token somewhere unexpected.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("entra-rotator/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = extra_ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| Error::Config(format!("ca_certificate: not a PEM certificate: {e}")))?;
        if certs.is_empty() {
            return Err(Error::Config("ca_certificate: the file holds no PEM certificate".into()));
        }
        builder = builder.tls_certs_merge(certs);
    }
    builder.build().map_err(|e| Error::Config(format!("cannot build the HTTPS client: {}", error_chain(&e))))
}

/// Makes aws-lc-rs the process's rustls provider. reqwest picks aws-lc-rs itself, but anything that
/// asks rustls for "the" provider would panic if two providers were compiled in; installing one
/// explicitly settles it. Installing twice is refused harmlessly, hence the ignored result.
fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odata_literals_double_quotes_and_encode_everything_that_could_escape() {
        assert_eq!(odata_string_literal("O'Brien"), "%27O%27%27Brien%27");
        assert_eq!(odata_string_literal(""), "%27%27");
        assert_eq!(odata_string_literal("a&$top=1"), "%27a%26%24top%3D1%27");
        assert_eq!(odata_string_literal("%27"), "%27%2527%27");
        assert_eq!(odata_string_literal("a b+c"), "%27a%20b%2Bc%27");
        assert_eq!(odata_string_literal("é"), "%27%C3%A9%27");
    }

    #[test]
    fn expired_delta_answers_are_recognised_by_code_or_message() {
        assert!(is_expired_delta("syncStateNotFound", ""));
        assert!(is_expired_delta("resyncRequired", ""));
        assert!(is_expired_delta(
            "Request_BadRequest",
            "The sync state generation is not found. The delta token is expired and data must be synchronized again."
        ));
        assert!(!is_expired_delta("Request_BadRequest", "Invalid filter clause"));
    }

    #[test]
    fn concurrency_refusals_are_recognised_as_409_code_or_400_message() {
        assert!(is_concurrency("Directory_ConcurrencyViolation", ""));
        assert!(is_concurrency(
            "Request_BadRequest",
            "Another concurrent request is updating this object. Please retry after a short delay."
        ));
        assert!(!is_concurrency("Request_BadRequest", "Invalid value for endDateTime"));
    }

    #[test]
    fn a_403_names_the_permission_the_call_needs() {
        let write =
            Op::write("addPassword on application x".into(), "application x".into()).not_replayable().sensitive();
        let f = classify(&write, StatusCode::FORBIDDEN, br#"{"error":{"code":"Authorization_RequestDenied"}}"#, None);
        assert!(!f.retry);
        assert!(f.error.to_string().contains("Application.ReadWrite.All"), "{}", f.error);
        let read = Op::read("list applications".into(), "applications".into());
        let f = classify(&read, StatusCode::FORBIDDEN, b"", None);
        assert!(f.error.to_string().contains("Application.Read.All"), "{}", f.error);
        assert!(!f.error.is_transient());
    }

    #[test]
    fn a_5xx_is_retried_for_reads_but_not_for_add_password() {
        let read = Op::read("list applications".into(), "applications".into());
        assert!(classify(&read, StatusCode::SERVICE_UNAVAILABLE, b"", None).retry);
        let add = Op::write("addPassword".into(), "application x".into()).not_replayable();
        let f = classify(&add, StatusCode::SERVICE_UNAVAILABLE, b"", None);
        assert!(!f.retry);
        assert!(f.error.is_transient());
        assert!(f.error.to_string().contains("orphan sweep"), "{}", f.error);
    }

    #[test]
    fn add_password_refusals_do_not_quote_the_answer() {
        let add = Op::write("addPassword".into(), "application x".into()).not_replayable().sensitive();
        let f = classify(
            &add,
            StatusCode::BAD_REQUEST,
            br#"{"error":{"code":"Request_BadRequest","message":"s3cr3t"}}"#,
            None,
        );
        assert!(!f.error.to_string().contains("s3cr3t"));
        assert!(f.graph_message.is_empty());
    }

    #[test]
    fn delta_links_are_told_from_plain_next_links() {
        assert!(is_delta_link("https://graph.microsoft.com/v1.0/applications/delta?$skiptoken=abc"));
        assert!(is_delta_link("https://graph.microsoft.com/v1.0/applications/delta()?$deltatoken=abc"));
        assert!(is_delta_link("https://graph.microsoft.com/v1.0/applications/microsoft.graph.delta()?$skiptoken=x"));
        assert!(!is_delta_link("https://graph.microsoft.com/v1.0/applications?$top=999&$skiptoken=abc"));
    }

    #[test]
    fn the_scope_follows_national_clouds_and_defaults_to_global_graph() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert_eq!(graph_scope(&u("https://graph.microsoft.us/v1.0")), "https://graph.microsoft.us/.default");
        assert_eq!(graph_scope(&u("https://127.0.0.1:8443/v1.0")), GLOBAL_GRAPH_SCOPE);
    }
}
