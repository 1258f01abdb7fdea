//! Wiring from configuration: the adapters every entrypoint builds the same way.

use std::collections::HashMap;
use std::sync::Arc;

use crate::Result;
use crate::adapters::graph::{GraphClient, RetryPolicy};
use crate::adapters::webhook_alerts::WebhookAlertSink;
use crate::alerts::{AlertSink, LogSink};
use crate::config::Config;
use crate::directory::Directory;
use crate::handlers::{Directories, Services};
use crate::ports::{Clock, Queue, Store};
use crate::rollout::Rollout;
use crate::seal::KeyRing;

/// A Graph client for every enabled integration.
pub fn directories(config: &Config) -> Result<Directories> {
    let mut out: Directories = HashMap::new();
    for i in config.integrations.iter().filter(|i| i.enabled) {
        let client: Arc<dyn Directory> = Arc::new(GraphClient::from_integration(i, RetryPolicy::default())?);
        out.insert(i.id.clone(), client);
    }
    Ok(out)
}

/// The log, and every configured webhook.
pub fn alert_sinks(config: &Config) -> Result<Vec<Arc<dyn AlertSink>>> {
    let mut sinks: Vec<Arc<dyn AlertSink>> = vec![Arc::new(LogSink)];
    if !config.webhooks.is_empty() {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(15))
            .build()
            .map_err(|e| crate::Error::Config(format!("cannot build the webhook client: {e}")))?;
        for w in &config.webhooks {
            sinks.push(Arc::new(WebhookAlertSink::new(w, client.clone())));
        }
    }
    Ok(sinks)
}

/// The HTTP client of rollout steps: the system's roots, the configured `ca_certificate`, and each
/// integration's (so one simulated tenant serves the demo's targets too).
pub fn rollout(config: &Config) -> Result<Rollout> {
    let mut builder = reqwest::Client::builder().connect_timeout(std::time::Duration::from_secs(10));
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
    let http = builder.build().map_err(|e| crate::Error::Config(format!("cannot build the rollout client: {e}")))?;
    Ok(Rollout::new(http, config.step_secrets.clone()))
}

pub fn services(
    config: &Config,
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
    clock: Arc<dyn Clock>,
    keys: Arc<dyn KeyRing>,
) -> Result<Services> {
    Ok(Services {
        store,
        queue,
        clock,
        directories: Arc::new(directories(config)?),
        policies: Arc::new(config.policy_set()),
        sinks: Arc::new(alert_sinks(config)?),
        keys,
        rollout: Arc::new(rollout(config)?),
        settings: Default::default(),
    })
}
