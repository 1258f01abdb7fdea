//! The `rotator_own_secret` runner: writes the rotated secret where the integration reads its own
//! (a file, atomically; Secrets Manager, with a request token derived from the execution and step,
//! so a redelivery is the same version), reads it back from there, and signs in with what it read
//! (a client credentials token request) before the step succeeds. A redelivery that finds the value
//! in place changes nothing. Refuses a rotation of any application but the integration's own.

use std::sync::Arc;

use azure_core::http::Transport;

use super::Azure;
use crate::adapters::graph::{RetryPolicy, TokenSource, token_credential};
use crate::adapters::stored_secret::{PlaceFailure, StoredSecret, Written};
use crate::domain::ids::{ClientId, TenantId};
use crate::domain::steps::RotatorOwnSecretConfig;
use crate::ports::step_runner::{Probe, ProbeContext, ProbeOutcome, StepContext, StepFailure};

/// Where an integration keeps its own client secret, and how to sign in with it.
pub struct OwnSecret {
    pub client_id: ClientId,
    pub tenant: TenantId,
    pub authority_host: url::Url,
    /// The scope of the verifying token request: the integration's Graph.
    pub scope: String,
    pub stored: Arc<StoredSecret>,
}

/// Namespace of the Secrets Manager request tokens (uuid v5 of `execution/step`).
const REQUEST_TOKEN_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6f2c_1d7e_93a4_4b0e_8c55_2e61_7a0b_d4f3);

fn place_failure(f: PlaceFailure) -> StepFailure {
    StepFailure { message: f.message, retryable: f.retryable }
}

pub(super) async fn run(azure: &Azure, cfg: &RotatorOwnSecretConfig, ctx: &StepContext<'_>) -> Result<(), StepFailure> {
    let own = azure.own_secrets.get(&cfg.integration).ok_or_else(|| not_stored(cfg))?;
    if ctx.client_id != own.client_id {
        return Err(StepFailure::permanent(format!(
            "this rotation is of application {}, but integration {} signs in as {}: the step stores only the \
             integration's own secret",
            ctx.client_id, cfg.integration, own.client_id
        )));
    }
    let token =
        uuid::Uuid::new_v5(&REQUEST_TOKEN_NAMESPACE, format!("{}/{}", ctx.execution, ctx.step_index).as_bytes());
    let written = own.stored.write(ctx.secret, &token.hyphenated().to_string()).await.map_err(place_failure)?;
    let back = own.stored.read_fresh().await.map_err(place_failure)?;
    if back != *ctx.secret {
        return Err(StepFailure::retryable(format!(
            "{} does not hold the new secret after it was written (another writer?)",
            own.stored.describe()
        )));
    }
    let credential = token_credential(
        TokenSource::ClientSecret { client_id: own.client_id, secret: back },
        own.tenant,
        &own.authority_host,
        Transport::new(Arc::new(super::azure::StepsTransport(azure.http.clone()))),
        RetryPolicy::default(),
    )
    .map_err(|e| StepFailure::permanent(format!("cannot sign in with the stored secret: {e}")))?;
    credential.get_token(&[own.scope.as_str()], None).await.map_err(|e| {
        StepFailure::retryable(format!(
            "the secret read back from {} does not sign in as {}: {}",
            own.stored.describe(),
            own.client_id,
            super::azure::answered(&e)
                .map(|(status, code)| format!(
                    "the token endpoint answered {status}{}",
                    code.map(|c| format!(" {c}")).unwrap_or_default()
                ))
                .unwrap_or_else(|| "the token endpoint refused it or could not be reached".to_owned())
        ))
    })?;
    tracing::info!(
        integration = %cfg.integration,
        place = %own.stored.describe(),
        replaced = written == Written::Replaced,
        "the rotator's own secret is stored and signs in"
    );
    Ok(())
}

pub(super) async fn probe(azure: &Azure, cfg: &RotatorOwnSecretConfig, _ctx: &ProbeContext<'_>) -> Vec<Probe> {
    let target = format!("the stored secret of integration {}", cfg.integration);
    let Some(own) = azure.own_secrets.get(&cfg.integration) else {
        return vec![Probe { target, outcome: ProbeOutcome::Failed, reason: not_stored(cfg).message }];
    };
    match own.stored.check_writable().await {
        Ok(()) => vec![Probe {
            target,
            outcome: ProbeOutcome::Ok,
            reason: format!("{} can be written and read back", own.stored.describe()),
        }],
        Err(f) => vec![Probe { target, outcome: ProbeOutcome::Failed, reason: f.message }],
    }
}

fn not_stored(cfg: &RotatorOwnSecretConfig) -> StepFailure {
    StepFailure::permanent(format!(
        "integration {} keeps no stored secret in this deployment: it needs auth = \"client_secret\" with \
         client_secret_file (one machine) or client_secret_arn (AWS)",
        cfg.integration
    ))
}
