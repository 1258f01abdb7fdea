//! Wiring from configuration: the adapters every entrypoint builds the same way.

use std::collections::HashMap;
use std::sync::Arc;

use crate::Result;
use crate::adapters::alerts::LogSink;
use crate::adapters::alerts::webhook::{self, WebhookAlertSink};
use crate::adapters::aws_identity::AwsSigning;
use crate::adapters::graph::{GraphClient, RetryPolicy, TokenSource, graph_scope};
use crate::adapters::steps::{AzureSignIn, OwnSecret, Rollout};
use crate::adapters::stored_secret::StoredSecret;
use crate::config::{Config, IntegrationConfig};
use crate::domain::ids::IntegrationId;
use crate::inbound::scheduler::Timer;
use crate::messages::Message;
use crate::ports::alerts::AlertSink;
use crate::ports::directory::Directory;
use crate::ports::key_ring::KeyRing;
use crate::ports::{Clock, Queue, Store};
use crate::usecases::app::{App, Directories};

/// A Graph client for every enabled integration.
pub fn directories(config: &Config) -> Result<Directories> {
    directories_with_aws(config, None)
}

/// As [`directories`], federated integrations asking STS as `aws` (the deployment's own AWS
/// identity) when given.
pub fn directories_with_aws(config: &Config, aws: Option<&AwsSigning>) -> Result<Directories> {
    directories_sharing(config, aws, &stored_secrets(config, aws))
}

/// Where each integration with a stored secret keeps it, one reader per place, so the Graph
/// client and the `rotator_own_secret` step of one process share it: the step's write is what the
/// next token request reads, at once.
pub fn stored_secrets(config: &Config, aws: Option<&AwsSigning>) -> StoredSecrets {
    config
        .integrations
        .iter()
        .filter_map(|i| i.secret_place().map(|place| (i.id.clone(), Arc::new(StoredSecret::new(place, aws)))))
        .collect()
}

/// The stored secrets' places, by integration.
pub type StoredSecrets = HashMap<IntegrationId, Arc<StoredSecret>>;

/// The token source of `i`: its stored secret from `stored` when it has one.
fn token_source(i: &IntegrationConfig, aws: Option<&AwsSigning>, stored: &StoredSecrets) -> Result<TokenSource> {
    Ok(match stored.get(&i.id) {
        Some(place) => TokenSource::StoredClientSecret { client_id: i.client_id, stored: place.clone() },
        None => TokenSource::from_credentials(i.client_id, &i.credentials)?.with_aws_identity(aws),
    })
}

fn directories_sharing(config: &Config, aws: Option<&AwsSigning>, stored: &StoredSecrets) -> Result<Directories> {
    let mut out: Directories = HashMap::new();
    for i in config.integrations.iter().filter(|i| i.enabled) {
        let client: Arc<dyn Directory> = Arc::new(GraphClient::from_integration_with_source(
            i,
            token_source(i, aws, stored)?,
            RetryPolicy::default(),
            Arc::new(config.outbound.clone()),
        )?);
        out.insert(i.id.clone(), client);
    }
    Ok(out)
}

/// The log, and every configured webhook, over one client that trusts what the steps trust (the
/// configured `ca_certificate` and each integration's), so a sink behind a private CA works.
pub fn alert_sinks(config: &Config) -> Result<Vec<Arc<dyn AlertSink>>> {
    let mut sinks: Vec<Arc<dyn AlertSink>> = vec![Arc::new(LogSink)];
    if !config.webhooks.is_empty() {
        let policy = Arc::new(config.outbound.clone());
        let client = webhook::client(with_extra_roots(reqwest::Client::builder(), config)?, policy.clone())
            .map_err(|e| crate::Error::Config(format!("cannot build the webhook client: {e}")))?;
        for w in &config.webhooks {
            sinks.push(Arc::new(WebhookAlertSink::new(w, client.clone(), policy.clone())));
        }
    }
    Ok(sinks)
}

/// The step runners over one HTTP client: the system's roots, the configured `ca_certificate`, and
/// each integration's (so one simulated tenant serves the demo's targets too); no redirects, and
/// the `[outbound]` policy on every address.
pub fn rollout(config: &Config) -> Result<Rollout> {
    rollout_with_aws(config, None)
}

/// As [`rollout`], with `aws` (the deployment's own AWS identity) for EKS tokens and federated
/// sign-ins, instead of aws-config's default chain.
pub fn rollout_with_aws(config: &Config, aws: Option<&AwsSigning>) -> Result<Rollout> {
    rollout_sharing(config, aws, &stored_secrets(config, aws))
}

fn rollout_sharing(config: &Config, aws: Option<&AwsSigning>, stored: &StoredSecrets) -> Result<Rollout> {
    let builder = reqwest::Client::builder().connect_timeout(std::time::Duration::from_secs(10));
    let builder = with_extra_roots(builder, config)?;
    // The CA files are read now, so a bad one fails at start; the client itself is built when the
    // first step runs, so the functions that run no step never load the TLS roots for it.
    let mut rollout = Rollout::deferred(builder, config.step_secrets.clone(), Arc::new(config.outbound.clone()));
    // Every configured integration's identity, for the Azure steps' `identity` (a disabled
    // integration is not synced, but its identity may still write a vault).
    for i in &config.integrations {
        let sign_in = AzureSignIn {
            tenant: i.tenant,
            authority_host: i.authority_host.clone(),
            source: token_source(i, aws, stored)?,
            resource_manager_url: i.resource_manager_url.clone(),
        };
        rollout = rollout.with_identity(i.id.clone(), sign_in)?;
        // The stored-secret fallback: `rotator_own_secret` writes where this integration reads.
        if let Some(place) = stored.get(&i.id) {
            let own = OwnSecret {
                client_id: i.client_id,
                tenant: i.tenant,
                authority_host: i.authority_host.clone(),
                scope: graph_scope(&i.graph_base_url),
                stored: place.clone(),
            };
            rollout = rollout.with_own_secret(i.id.clone(), own);
        }
    }
    if let Some(aws) = aws {
        rollout = rollout.with_aws_credentials(aws.clone());
    }
    Ok(rollout)
}

/// `builder` trusting, besides the system's roots, the configured `ca_certificate` and each
/// integration's.
fn with_extra_roots(mut builder: reqwest::ClientBuilder, config: &Config) -> Result<reqwest::ClientBuilder> {
    let mut pems = Vec::new();
    pems.extend(config.ca_certificate.iter().cloned());
    pems.extend(config.integrations.iter().filter_map(|i| i.ca_certificate.clone()));
    let mut certs = Vec::new();
    for path in pems {
        let pem = std::fs::read(&path)
            .map_err(|e| crate::Error::Config(format!("cannot read CA certificate {}: {e}", path.display())))?;
        certs.extend(
            reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| crate::Error::Config(format!("CA certificate {}: {e}", path.display())))?,
        );
    }
    if !certs.is_empty() {
        builder = builder.tls_certs_merge(certs);
    }
    Ok(builder)
}

/// The steps of the configuration that this build cannot run, in words (policy, step, type).
/// `config check` refuses them and preflight refuses every rotation whose plan has one; `serve`
/// starts anyway (the other policies work) and says so in its log.
pub fn steps_this_build_cannot_run(config: &Config) -> Vec<String> {
    config
        .policies
        .iter()
        .flat_map(|p| {
            p.policy.steps.iter().filter(|s| !crate::adapters::steps::RUNS.contains(&s.kind())).map(move |s| {
                format!(
                    "policies.{}: step {} ({}): {} steps are not supported by this build yet",
                    p.policy.id,
                    s.order,
                    s.display_name(),
                    s.kind().as_str()
                )
            })
        })
        .collect()
}

pub fn services(
    config: &Config,
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
    clock: Arc<dyn Clock>,
    keys: Arc<dyn KeyRing>,
) -> Result<App> {
    services_with_aws(config, store, queue, clock, keys, None)
}

/// As [`services`], signing as `aws` (the Lambda deployment's own AWS identity, from its SDK
/// configuration) wherever the rotator asks AWS as itself outside the AWS adapters: federated
/// Entra sign-in and EKS tokens.
pub fn services_with_aws(
    config: &Config,
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
    clock: Arc<dyn Clock>,
    keys: Arc<dyn KeyRing>,
    aws: Option<AwsSigning>,
) -> Result<App> {
    for refused in steps_this_build_cannot_run(config) {
        tracing::warn!("{refused}; preflight refuses every rotation of that policy");
    }
    let stored = stored_secrets(config, aws.as_ref());
    Ok(App {
        store,
        queue,
        clock,
        directories: Arc::new(directories_sharing(config, aws.as_ref(), &stored)?),
        disabled: Arc::new(config.integrations.iter().filter(|i| !i.enabled).map(|i| i.id.clone()).collect()),
        policies: Arc::new(config.policy_set()),
        sinks: Arc::new(alert_sinks(config)?),
        keys,
        rollout: Arc::new(rollout_sharing(config, aws.as_ref(), &stored)?),
        settings: Default::default(),
    })
}

/// The timers of the configuration: a sync of each enabled integration every `schedules.sync`, an
/// expiry scan every `schedules.expiry_scan`, grace cleanup every `schedules.grace_cleanup`. On AWS
/// EventBridge schedules invoke the functions, which send the same messages.
pub fn timers(config: &Config) -> Vec<Timer> {
    let mut timers = Vec::new();
    for i in config.integrations.iter().filter(|i| i.enabled) {
        timers.push(Timer {
            name: format!("sync:{}", i.id),
            every: config.schedules.sync.as_duration(),
            message: Message::SyncRequested { integration: i.id.clone(), full: false },
        });
    }
    timers.push(Timer {
        name: "expiry-scan".into(),
        every: config.schedules.expiry_scan.as_duration(),
        message: Message::ScanRequested { integration: None },
    });
    timers.push(Timer {
        name: "grace-cleanup".into(),
        every: config.schedules.grace_cleanup.as_duration(),
        message: Message::CleanupRequested { integration: None },
    });
    timers
}
