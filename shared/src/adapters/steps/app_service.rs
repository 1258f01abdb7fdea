//! The `azure_app_service_restart` runner, through Azure Resource Manager (plain HTTPS with a bearer
//! token from `azure_identity`: there is no maintained Rust client for Microsoft.Web).
//!
//! App Service resolves `@Microsoft.KeyVault(SecretUri=…)` app settings when the app starts and
//! keeps them: a new secret version reaches the app only on a restart. So the step
//!
//! 1. asks App Service to refresh the app's Key Vault references (`POST
//!    …/config/configreferences/appsettings/refresh`), unless `refresh_key_vault_references` is off;
//! 2. restarts the app (`POST …/restart?softRestart=false&synchronous=true`), or in `stop_start`
//!    mode stops it, waits for `Stopped`, starts it and waits for `Running` (the runbook's remedy
//!    when a restart keeps the references cached);
//! 3. reads the status of the app setting's Key Vault reference (`GET
//!    …/config/configreferences/appsettings/{key}`; every reference of the app when no
//!    `app_setting` is given) and fails, in words, unless it is `Resolved`.
//!
//! Deployment slots are addressed as `…/sites/{app}/slots/{slot}`. Long-running operations are
//! followed as ARM documents them: a `202` with `Azure-AsyncOperation` (polled until its `status`
//! is terminal) or `Location` (polled until it stops answering `202`), `Retry-After` between polls.
//! `429` waits for `Retry-After`; `5xx` is retried; `401`/`403`/`404` are permanent, in words. The
//! whole step stays within its `timeout`.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::Azure;
use super::azure::AzureIdentity;
use super::http::transport;
use crate::domain::steps::{AzureAppServiceRestartConfig, RestartMode};
use crate::ports::step_runner::{Probe, ProbeContext, ProbeOutcome, StepContext, StepFailure};

/// The Microsoft.Web API version the step speaks.
pub const API_VERSION: &str = "2024-04-01";

/// The status of a reference whose answer has none.
const NOT_REPORTED: &str = "not reported";

/// The pause between two polls when ARM names none.
const DEFAULT_POLL: Duration = Duration::from_secs(5);
/// The longest pause the step takes between two polls or retries, whatever `Retry-After` says.
const MAX_PAUSE: Duration = Duration::from_secs(60);
/// Attempts of one request answered 429 or 5xx.
const MAX_ATTEMPTS: u32 = 5;

/// What the roles must allow, in the words of the portal.
const RIGHTS: &str = "the \"Website Contributor\" role (or one allowing Microsoft.Web/sites/restart/action, \
                      stop/action, start/action and config/configreferences) on the app or its resource group";

pub(super) async fn run(
    azure: &Azure,
    cfg: &AzureAppServiceRestartConfig,
    ctx: &StepContext<'_>,
) -> Result<(), StepFailure> {
    let identity = azure.identities.for_step(cfg.identity.as_ref(), ctx.credential)?;
    let arm = Arm { azure, identity, cfg, deadline: Instant::now() + cfg.timeout.as_duration() };
    if cfg.refresh_key_vault_references {
        arm.call(
            reqwest::Method::POST,
            "/config/configreferences/appsettings/refresh",
            &[],
            "refresh the Key Vault references of",
        )
        .await?;
    }
    match cfg.mode {
        RestartMode::Restart => {
            arm.call(
                reqwest::Method::POST,
                "/restart",
                &[("softRestart", "false"), ("synchronous", "true")],
                "restart",
            )
            .await?;
        }
        RestartMode::StopStart => {
            arm.call(reqwest::Method::POST, "/stop", &[], "stop").await?;
            arm.wait_for_state("Stopped").await?;
            arm.call(reqwest::Method::POST, "/start", &[], "start").await?;
            arm.wait_for_state("Running").await?;
        }
    }
    arm.check_references().await
}

/// The site exists and the identity may read it; the app setting exists and refers to Key Vault
/// (with its current status); whether the identity may restart the app, from ARM's own list of
/// the caller's permissions on the site. Nothing changes.
pub(super) async fn probe(azure: &Azure, cfg: &AzureAppServiceRestartConfig, ctx: &ProbeContext<'_>) -> Vec<Probe> {
    let probe = |target: &str, outcome, reason: String| Probe { target: target.to_owned(), outcome, reason };
    let refused = |f: &StepFailure| if f.retryable { ProbeOutcome::Warning } else { ProbeOutcome::Failed };
    let identity = match azure.identities.for_step(cfg.identity.as_ref(), ctx.credential) {
        Ok(i) => i,
        Err(f) => return vec![probe("site", ProbeOutcome::Failed, f.message)],
    };
    // A probe must not wait long: a minute at most.
    let arm = Arm { azure, identity, cfg, deadline: Instant::now() + Duration::from_secs(60) };
    let mut probes = Vec::new();
    match arm.call(reqwest::Method::GET, "", &[], "read").await {
        Ok(_) => {
            probes.push(probe("site", ProbeOutcome::Ok, format!("exists, and {} may read it", identity.describe())))
        }
        Err(f) => return vec![probe("site", refused(&f), f.message)],
    }
    probes.push(match arm.permissions().await {
        Some(actions) if actions.iter().any(|a| *a == "restart" || *a == "all") => {
            probe("restart", ProbeOutcome::Ok, format!("{} may restart, stop and start it", identity.describe()))
        }
        Some(_) => probe(
            "restart",
            ProbeOutcome::Failed,
            format!("{} may not restart the app: it needs {RIGHTS}", identity.describe()),
        ),
        None => probe(
            "restart",
            ProbeOutcome::ManualReview,
            format!("Resource Manager did not list the permissions of {}: check it has {RIGHTS}", identity.describe()),
        ),
    });
    let (suffix, action) = match &cfg.app_setting {
        Some(key) => (format!("/config/configreferences/appsettings/{key}"), "read the app setting of"),
        None => ("/config/configreferences/appsettings".to_owned(), "read the app settings of"),
    };
    probes.push(match arm.call(reqwest::Method::GET, &suffix, &[], action).await {
        Ok(body) => {
            let refs = references(&body);
            if refs.is_empty() {
                probe(
                    "Key Vault reference",
                    ProbeOutcome::Warning,
                    "the app has no Key Vault reference: a restart will not bring it a new secret".to_owned(),
                )
            } else {
                let states: Vec<String> = refs.iter().map(|r| format!("{} ({})", r.name, r.status)).collect();
                probe("Key Vault reference", ProbeOutcome::Ok, states.join(", "))
            }
        }
        Err(f) => probe("Key Vault reference", refused(&f), f.message),
    });
    probes
}

/// One app's Resource Manager calls within one deadline.
struct Arm<'a> {
    azure: &'a Azure,
    identity: &'a AzureIdentity,
    cfg: &'a AzureAppServiceRestartConfig,
    deadline: Instant,
}

/// One Key Vault reference's status, as ARM reports it.
struct Reference {
    name: String,
    status: String,
    details: Option<String>,
}

impl Arm<'_> {
    /// `{resource manager}/subscriptions/…/sites/{app}[/slots/{slot}]`.
    fn site_url(&self, suffix: &str, query: &[(&str, &str)]) -> Result<url::Url, StepFailure> {
        let c = self.cfg;
        let mut path = format!(
            "{}/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Web/sites/{}",
            self.identity.resource_manager.as_str().trim_end_matches('/'),
            c.subscription_id,
            c.resource_group,
            c.app_name
        );
        if let Some(slot) = &c.slot {
            path.push_str(&format!("/slots/{slot}"));
        }
        path.push_str(suffix);
        let mut url = url::Url::parse(&path)
            .map_err(|_| StepFailure::permanent("the Resource Manager address of the app is not a valid URL"))?;
        url.query_pairs_mut().append_pair("api-version", API_VERSION).extend_pairs(query);
        Ok(url)
    }

    fn what(&self) -> String {
        let c = self.cfg;
        let slot = c.slot.as_ref().map(|s| format!(" slot {s}")).unwrap_or_default();
        format!("App Service {}{slot} in resource group {}", c.app_name, c.resource_group)
    }

    /// One call on the app, followed to its end when ARM answers 202; the answer's JSON (`null`
    /// when it has none).
    async fn call(
        &self,
        method: reqwest::Method,
        suffix: &str,
        query: &[(&str, &str)],
        action: &str,
    ) -> Result<Value, StepFailure> {
        let url = self.site_url(suffix, query)?;
        let response = self.send(method, &url, action).await?;
        if response.status().as_u16() == 202 {
            return self.follow(&response, action).await;
        }
        Ok(response.json::<Value>().await.unwrap_or(Value::Null))
    }

    /// Sends one request with a fresh token, retrying 429 (after `Retry-After`) and 5xx within the
    /// deadline. Any other failure is returned in words.
    async fn send(
        &self,
        method: reqwest::Method,
        url: &url::Url,
        action: &str,
    ) -> Result<reqwest::Response, StepFailure> {
        let client = self.azure.http.client_for(url)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let token = self.token().await?;
            let mut request = client.request(method.clone(), url.as_str()).bearer_auth(token.secret());
            if method == reqwest::Method::POST {
                request = request.header("content-length", "0");
            }
            let response = request.timeout(self.remaining().max(Duration::from_secs(1))).send().await.map_err(|e| {
                StepFailure { message: format!("Resource Manager: {}", transport(&e).message), ..transport(&e) }
            })?;
            let status = response.status().as_u16();
            if response.status().is_success() {
                return Ok(response);
            }
            let (code, after) = error_code(response).await;
            let retryable = status == 429 || status == 409 || status >= 500;
            if retryable
                && attempt < MAX_ATTEMPTS
                && self.sleep_within_deadline(after.unwrap_or_else(|| backoff(attempt))).await
            {
                continue;
            }
            return Err(self.refusal(status, code.as_deref(), action, retryable));
        }
    }

    /// The token for Resource Manager, from the identity's credential (cached by it).
    async fn token(&self) -> Result<azure_core::credentials::Secret, StepFailure> {
        let scope = self.identity.resource_manager_scope();
        self.identity.credential.get_token(&[scope.as_str()], None).await.map(|t| t.token).map_err(|_| {
            StepFailure::retryable(format!("{} could not get a token for Resource Manager", self.identity.describe()))
        })
    }

    fn refusal(&self, status: u16, code: Option<&str>, action: &str, retryable: bool) -> StepFailure {
        let code = code.map(|c| format!(" {c}")).unwrap_or_default();
        let message = match status {
            401 | 403 => format!(
                "Resource Manager refused to let {} {action} {} ({status}{code}): it needs {RIGHTS}",
                self.identity.describe(),
                self.what()
            ),
            404 => format!(
                "{} was not found ({status}{code}): check subscription_id, resource_group, app_name and slot",
                self.what()
            ),
            _ if retryable => {
                format!("Resource Manager could not {action} {} ({status}{code}), after retrying", self.what())
            }
            _ => format!("Resource Manager refused to {action} {} ({status}{code})", self.what()),
        };
        StepFailure { message, retryable, left_in_place: false }
    }

    /// Follows a long-running operation to its end: `Azure-AsyncOperation` first (its `status`),
    /// else `Location` (until it no longer answers 202).
    async fn follow(&self, accepted: &reqwest::Response, action: &str) -> Result<Value, StepFailure> {
        let header = |name: &str| {
            accepted.headers().get(name).and_then(|v| v.to_str().ok()).and_then(|v| url::Url::parse(v).ok())
        };
        let mut pause = retry_after(accepted.headers()).unwrap_or(DEFAULT_POLL);
        if let Some(operation) = header("azure-asyncoperation") {
            loop {
                if !self.sleep_within_deadline(pause).await {
                    return Err(self.timed_out(action));
                }
                let response = self.send(reqwest::Method::GET, &operation, action).await?;
                pause = retry_after(response.headers()).unwrap_or(DEFAULT_POLL);
                let body = response.json::<Value>().await.unwrap_or(Value::Null);
                match body.get("status").and_then(Value::as_str).unwrap_or("InProgress") {
                    "Succeeded" => return Ok(Value::Null),
                    "Failed" | "Canceled" | "Cancelled" => {
                        let code = body.pointer("/error/code").and_then(Value::as_str).unwrap_or("no error code");
                        let status = body.get("status").and_then(Value::as_str).unwrap_or("Failed");
                        return Err(StepFailure::retryable(format!(
                            "Resource Manager could not {action} {}: the operation ended {status} ({code})",
                            self.what()
                        )));
                    }
                    _ => {}
                }
            }
        }
        let Some(location) = header("location") else {
            // Accepted with nothing to follow: ARM says the work goes on; the state checks after it
            // wait for its effect.
            return Ok(Value::Null);
        };
        loop {
            if !self.sleep_within_deadline(pause).await {
                return Err(self.timed_out(action));
            }
            let response = self.send(reqwest::Method::GET, &location, action).await?;
            if response.status().as_u16() != 202 {
                return Ok(response.json::<Value>().await.unwrap_or(Value::Null));
            }
            pause = retry_after(response.headers()).unwrap_or(DEFAULT_POLL);
        }
    }

    /// Polls the site until its `state` is `wanted`, within the deadline.
    async fn wait_for_state(&self, wanted: &str) -> Result<(), StepFailure> {
        let mut pause = Duration::from_millis(500);
        loop {
            let site = self.call(reqwest::Method::GET, "", &[], "read").await?;
            let state = site.pointer("/properties/state").and_then(Value::as_str).unwrap_or("Unknown");
            if state.eq_ignore_ascii_case(wanted) {
                return Ok(());
            }
            if !self.sleep_within_deadline(pause).await {
                return Err(StepFailure::retryable(format!(
                    "{} did not reach state {wanted} within {} (it is {state})",
                    self.what(),
                    crate::domain::Span(self.cfg.timeout.as_duration())
                )));
            }
            pause = (pause * 2).min(DEFAULT_POLL);
        }
    }

    /// The app setting's reference (or every reference of the app) must be `Resolved`; one still
    /// `Initialized` (App Service has not resolved it yet) is polled within the deadline.
    async fn check_references(&self) -> Result<(), StepFailure> {
        let (suffix, action) = match &self.cfg.app_setting {
            Some(key) => (format!("/config/configreferences/appsettings/{key}"), "read the Key Vault reference of"),
            None => ("/config/configreferences/appsettings".to_owned(), "read the Key Vault references of"),
        };
        let mut pause = Duration::from_millis(500);
        loop {
            let body = match self.call(reqwest::Method::GET, &suffix, &[], action).await {
                Err(f) if f.message.contains("(404") && self.cfg.app_setting.is_some() => {
                    return Err(StepFailure::permanent(format!(
                        "{} has no app setting {}: check app_setting",
                        self.what(),
                        self.cfg.app_setting.as_deref().unwrap_or_default()
                    )));
                }
                other => other?,
            };
            let refs = references(&body);
            if refs.is_empty() {
                return Err(StepFailure::permanent(format!(
                    "{} has no Key Vault reference: its app settings do not read the secret from Key Vault",
                    self.what()
                )));
            }
            let pending = refs.iter().any(|r| r.status.eq_ignore_ascii_case("Initialized"));
            let unresolved: Vec<&Reference> =
                refs.iter().filter(|r| !r.status.eq_ignore_ascii_case("Resolved")).collect();
            if unresolved.is_empty() {
                return Ok(());
            }
            if pending && self.sleep_within_deadline(pause).await {
                pause = (pause * 2).min(DEFAULT_POLL);
                continue;
            }
            let words: Vec<String> = unresolved.iter().map(|r| describe_status(r)).collect();
            let retryable = unresolved
                .iter()
                .all(|r| matches!(r.status.as_str(), "Initialized" | "FetchTimedOut" | "OtherReasons"));
            return Err(StepFailure {
                message: format!("after the restart, {}: {}", self.what(), words.join("; ")),
                retryable,
                left_in_place: false,
            });
        }
    }

    /// The kinds of action the identity may take on the site, from
    /// `…/providers/Microsoft.Authorization/permissions`: `all` (`*`), `restart`, or what else
    /// it lists; `None` when ARM did not answer the question.
    async fn permissions(&self) -> Option<Vec<&'static str>> {
        let mut url = self.site_url("/providers/Microsoft.Authorization/permissions", &[]).ok()?;
        url.query_pairs_mut().clear().append_pair("api-version", "2022-04-01");
        let response = self.send(reqwest::Method::GET, &url, "read the permissions on").await.ok()?;
        let body = response.json::<Value>().await.ok()?;
        let mut found = Vec::new();
        for grant in body.get("value")?.as_array()? {
            let listed = |field: &str| -> Vec<String> {
                grant
                    .get(field)
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_ascii_lowercase)).collect())
                    .unwrap_or_default()
            };
            let (actions, not_actions) = (listed("actions"), listed("notActions"));
            let allows = |action: &str| {
                let hit = |patterns: &[String]| patterns.iter().any(|p| wildcard(p, action));
                hit(&actions) && !hit(&not_actions)
            };
            if allows("microsoft.web/sites/restart/action") && allows("microsoft.web/sites/stop/action") {
                found.push("restart");
            }
            if allows("*") {
                found.push("all");
            }
        }
        Some(found)
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Sleeps `pause` (at most [`MAX_PAUSE`]) if that still ends before the deadline.
    async fn sleep_within_deadline(&self, pause: Duration) -> bool {
        let pause = pause.min(MAX_PAUSE);
        if Instant::now() + pause >= self.deadline {
            return false;
        }
        tokio::time::sleep(pause).await;
        true
    }

    fn timed_out(&self, action: &str) -> StepFailure {
        StepFailure::retryable(format!(
            "Resource Manager did not finish ({action} {}) within {}",
            self.what(),
            crate::domain::Span(self.cfg.timeout.as_duration())
        ))
    }
}

/// The references of a `KeyVaultReferenceResource` or of a collection of them.
fn references(body: &Value) -> Vec<Reference> {
    let one = |v: &Value| {
        let props = v.get("properties")?;
        Some(Reference {
            name: v
                .get("name")
                .and_then(Value::as_str)
                .or_else(|| v.get("id").and_then(Value::as_str).and_then(|id| id.rsplit('/').next()))
                .unwrap_or("?")
                .to_owned(),
            // ARM's own examples leave it out; an unreported status is never taken as resolved.
            status: props.get("status").and_then(Value::as_str).unwrap_or(NOT_REPORTED).to_owned(),
            details: props.get("details").and_then(Value::as_str).map(str::to_owned),
        })
    };
    match body.get("value").and_then(Value::as_array) {
        Some(items) => items.iter().filter_map(one).collect(),
        None => one(body).into_iter().collect(),
    }
}

/// A reference status in words, with what to do.
fn describe_status(r: &Reference) -> String {
    let hint = match r.status.as_str() {
        "SecretNotFound" => {
            "the secret is not in the vault the reference names: does the Key Vault step write that vault and secret?"
        }
        "SecretVersionNotFound" => "the reference pins a version that does not exist: use a versionless SecretUri",
        "VaultNotFound" => "the vault the reference names does not exist or cannot be reached",
        "AccessToKeyVaultDenied" => {
            "the app's managed identity may not read the vault: grant it \"Key Vault Secrets User\""
        }
        "UnauthorizedClient" => "the app's identity is not allowed to read the vault",
        "InvalidSyntax" => "the app setting is not a valid @Microsoft.KeyVault(...) reference",
        "MIVaultURLsNotSupported" => "the reference's form is not supported with this identity",
        "FetchTimedOut" => "App Service timed out reading the vault",
        "Initialized" => "App Service has not resolved it yet",
        NOT_REPORTED => "Resource Manager did not say whether App Service resolved it",
        _ => "App Service could not resolve it",
    };
    let details =
        r.details.as_ref().map(|d| format!(" ({})", crate::adapters::steps::http::first_line(d))).unwrap_or_default();
    format!("the Key Vault reference of {} is {}: {hint}{details}", r.name, r.status)
}

/// `*`-patterns of ARM actions, as role definitions write them (both sides lower case already).
fn wildcard(pattern: &str, action: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == action,
        Some((head, rest)) => {
            action.starts_with(head)
                && (head.len()..=action.len()).any(|i| action.is_char_boundary(i) && wildcard(rest, &action[i..]))
        }
    }
}

/// The error code of a refusal (`AuthorizationFailed`), and its `Retry-After`.
async fn error_code(response: reqwest::Response) -> (Option<String>, Option<Duration>) {
    let after = retry_after(response.headers());
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (body.pointer("/error/code").and_then(Value::as_str).map(str::to_owned), after)
}

/// `Retry-After` in seconds or as an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get("retry-after")?.to_str().ok()?;
    if let Ok(secs) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(std::time::SystemTime::now()).unwrap_or_default())
}

/// 1 s, 2 s, 4 s, … when ARM names no pause.
fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm_action_patterns_match_as_role_definitions_do() {
        assert!(wildcard("*", "microsoft.web/sites/restart/action"));
        assert!(wildcard("microsoft.web/sites/*", "microsoft.web/sites/restart/action"));
        assert!(wildcard("microsoft.web/*/action", "microsoft.web/sites/restart/action"));
        assert!(!wildcard("microsoft.web/sites/read", "microsoft.web/sites/restart/action"));
        assert!(!wildcard("microsoft.storage/*", "microsoft.web/sites/restart/action"));
    }
}
