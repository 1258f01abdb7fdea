//! The `rotator_own_secret` runner: writes the rotated secret where the integration reads its own
//! (a file, atomically; Secrets Manager, with a request token derived from the execution, step and
//! attempt, so a redelivery is the same version), reads it back from there, and signs in with what
//! it read (a client credentials token request) before the step succeeds. A redelivery that finds
//! the value in place changes nothing. Refuses a rotation of any application but the
//! integration's own.
//!
//! The rotator signs in with what the place holds from its next token request on, so a new secret
//! that was written but not shown to sign in is not left there: the previous one is put back
//! before the step fails (and a cancel may then remove the new one from Entra). When it cannot be
//! put back, the failure says the new secret stays in place, and a cancel keeps it.

use std::sync::Arc;

use azure_core::http::Transport;

use super::Azure;
use crate::adapters::graph::{RetryPolicy, TokenSource, token_credential};
use crate::adapters::stored_secret::{PlaceFailure, StoredSecret, Written};
use crate::domain::ids::{ClientId, TenantId};
use crate::domain::secret::SecretValue;
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

/// Namespace of the Secrets Manager request tokens (uuid v5 of `execution/step/attempt/what`).
const REQUEST_TOKEN_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6f2c_1d7e_93a4_4b0e_8c55_2e61_7a0b_d4f3);

/// The request token of one write of one attempt: every delivery of the attempt writes the same
/// version, and a later attempt (after the previous secret was put back) a new one.
fn request_token(ctx: &StepContext<'_>, what: &str) -> String {
    let name = format!("{}/{}/{}/{what}", ctx.execution, ctx.step_index, ctx.attempt);
    uuid::Uuid::new_v5(&REQUEST_TOKEN_NAMESPACE, name.as_bytes()).hyphenated().to_string()
}

fn place_failure(f: PlaceFailure) -> StepFailure {
    if f.retryable { StepFailure::retryable(f.message) } else { StepFailure::permanent(f.message) }
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
    // What the deployment signs in with now: it goes back if the new one is not shown to work.
    let previous = own.stored.read_fresh().await.ok().filter(|v| v != ctx.secret);
    let written = match own.stored.write(ctx.secret, &request_token(ctx, "write")).await {
        Ok(written) => written,
        Err(f) => return Err(put_back(own, previous, ctx, place_failure(f)).await),
    };
    if let Err(f) = verify(azure, own).await {
        return Err(put_back(own, previous, ctx, f).await);
    }
    tracing::info!(
        integration = %cfg.integration,
        place = %own.stored.describe(),
        replaced = written == Written::Replaced,
        "the rotator's own secret is stored and signs in"
    );
    Ok(())
}

/// The value read back from the place (what a deployment starting now reads) signs in.
async fn verify(azure: &Azure, own: &OwnSecret) -> Result<(), StepFailure> {
    let back = own.stored.read_fresh().await.map_err(place_failure)?;
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
    Ok(())
}

/// After a failure that may have followed the write: when the place holds the new secret, the
/// previous one goes back. When it cannot — its value is not known (a redelivery found the new
/// one already there), or the place refuses — the failure says the new secret stays in place. A
/// place that holds neither (another writer) is left as it is.
async fn put_back(
    own: &OwnSecret,
    previous: Option<SecretValue>,
    ctx: &StepContext<'_>,
    failure: StepFailure,
) -> StepFailure {
    let place = own.stored.describe();
    let now = own.stored.read_fresh().await;
    if now.as_ref().is_ok_and(|v| v != ctx.secret) {
        return failure;
    }
    let Some(previous) = previous else {
        if now.is_err() {
            return failure;
        }
        return StepFailure {
            message: format!(
                "{}; the new secret stays in {place} (what it replaced is not known), and the rotator signs in with it",
                failure.message
            ),
            ..failure.left_in_place()
        };
    };
    match own.stored.write(&previous, &request_token(ctx, "put back")).await {
        Ok(_) => {
            tracing::warn!(place = %place, "the new secret did not pass; the previous secret was put back");
            StepFailure {
                message: format!("{}; the previous secret was put back in {place}", failure.message),
                ..failure
            }
        }
        Err(e) => StepFailure {
            message: format!(
                "{}; putting the previous secret back failed too ({}): the new secret stays in {place}, and the \
                 rotator signs in with it",
                failure.message, e.message
            ),
            ..failure.left_in_place()
        },
    }
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
