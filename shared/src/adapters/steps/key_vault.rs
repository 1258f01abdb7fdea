//! The `azure_key_vault` runner: writes the new secret as a new version of a Key Vault secret,
//! in the primary vault and then the secondary, with the official `azure_security_keyvault_secrets`
//! client (its 401 challenge, its retries of 429 and 5xx honouring `Retry-After`).
//!
//! Each version carries `exp` = the new credential's end date, the step's content type, the
//! operator's tags and the rotator's own ([`KEY_VAULT_OWN_TAGS`]: managed, key id, application,
//! execution). Before writing, the secret's versions are listed: one tagged with this execution
//! means an earlier delivery of this step already wrote it (a crash before the step was recorded,
//! a redelivered message), and no second version is written. The value itself is never read back.
//!
//! A refusal (401, 403) is permanent and names the vault, the identity and the right it lacks.

use std::collections::HashMap;
use std::sync::Arc;

use azure_security_keyvault_secrets::models::{SecretAttributes, SetSecretParameters};
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
use futures::TryStreamExt;

use super::azure::{AzureIdentity, answered, unanswered_is_transient};
use super::{Azure, http};
use crate::domain::steps::{AzureKeyVaultConfig, KEY_VAULT_OWN_TAGS, VaultTarget};
use crate::ports::step_runner::{Probe, ProbeContext, ProbeOutcome, StepContext, StepFailure};

/// The rights a writer needs, in the words of the portal.
const RIGHTS: &str = "the \"Key Vault Secrets Officer\" role on the vault (or, for a vault on access policies, \
                      an access policy with secret Set and List permissions)";

/// Key Vault's own domains: only on these does the client check that the 401 challenge names the
/// vault's domain. A vault reached under another name (a private gateway, the simulation) is
/// configured by the operator, and the outbound address policy has already judged it.
const VAULT_DOMAINS: &[&str] = &[
    ".vault.azure.net",
    ".vault.azure.cn",
    ".vault.usgovcloudapi.net",
    ".vault.microsoftazure.de",
    ".managedhsm.azure.net",
];

pub(super) async fn run(azure: &Azure, cfg: &AzureKeyVaultConfig, ctx: &StepContext<'_>) -> Result<(), StepFailure> {
    let mut holding: Vec<String> = Vec::new();
    for vault in cfg.vaults() {
        if let Err(f) = write_to(azure, cfg, ctx, &vault).await {
            // A vault written before this one keeps its version, and its readers may take it.
            return Err(match holding.as_slice() {
                [] => f,
                names => StepFailure {
                    message: format!("{}; vault {} holds the new version already", f.message, names.join(", ")),
                    ..f.left_in_place()
                },
            });
        }
        holding.push(vault.vault_name().to_owned());
    }
    Ok(())
}

/// This execution's version of the secret in one vault, written unless it is there already.
async fn write_to(
    azure: &Azure,
    cfg: &AzureKeyVaultConfig,
    ctx: &StepContext<'_>,
    vault: &VaultTarget<'_>,
) -> Result<(), StepFailure> {
    let identity = azure.identities.for_step(vault.identity, ctx.credential)?;
    let client = azure.secret_client(vault.vault_url, identity)?;
    let execution = ctx.execution.to_string();
    if let Some(version) = version_of(&client, vault, identity, &execution).await? {
        tracing::info!(
            vault = vault.vault_name(),
            secret = vault.secret_name,
            version,
            "this execution already wrote its version of the secret; not writing another"
        );
        return Ok(());
    }
    let mut tags: HashMap<String, String> = cfg.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let own = ["true".to_owned(), ctx.new_key_id.to_string(), ctx.client_id.to_string(), execution.clone()];
    tags.extend(KEY_VAULT_OWN_TAGS.iter().map(|t| (*t).to_owned()).zip(own));
    let parameters = SetSecretParameters {
        value: Some(ctx.secret.expose().to_owned()),
        content_type: Some(cfg.content_type.clone()),
        secret_attributes: Some(SecretAttributes {
            enabled: Some(true),
            expires: ctx.new_secret_end,
            ..Default::default()
        }),
        tags: Some(tags),
    };
    let body =
        parameters.try_into().map_err(|_| StepFailure::permanent("the Key Vault request could not be encoded"))?;
    let response = client
        .set_secret(vault.secret_name, body, None)
        .await
        .map_err(|e| failure(&e, vault, identity, "write a version of"))?;
    // The answer holds the value: keep only its identifier.
    let id = response.into_model().ok().and_then(|s| s.id).unwrap_or_default();
    tracing::info!(
        vault = vault.vault_name(),
        secret = vault.secret_name,
        version = id.rsplit('/').next().unwrap_or_default(),
        "wrote a new version of the secret"
    );
    Ok(())
}

/// Each vault: reachable, and the identity may list the secret's versions (what a redelivered
/// step does first). Nothing is written.
pub(super) async fn probe(azure: &Azure, cfg: &AzureKeyVaultConfig, ctx: &ProbeContext<'_>) -> Vec<Probe> {
    let mut probes = Vec::new();
    for vault in cfg.vaults() {
        let target = format!("vault {}", vault.vault_name());
        let answer = match azure.identities.for_step(vault.identity, ctx.credential) {
            Err(f) => (ProbeOutcome::Failed, f.message),
            Ok(identity) => match azure.secret_client(vault.vault_url, identity) {
                Err(f) => (ProbeOutcome::Failed, f.message),
                Ok(client) => match version_of(&client, &vault, identity, "").await {
                    Ok(_) => (
                        ProbeOutcome::Ok,
                        format!(
                            "reachable; {} may list the secret's versions (writing needs Key Vault Secrets \
                             Officer, which a dry run cannot try)",
                            identity.describe()
                        ),
                    ),
                    Err(f) if f.retryable => (ProbeOutcome::Warning, format!("{}; retried at rollout", f.message)),
                    Err(f) => (ProbeOutcome::Failed, f.message),
                },
            },
        };
        probes.push(Probe { target, outcome: answer.0, reason: answer.1 });
    }
    probes
}

/// The version of the secret tagged with `execution`, if one is there. A secret that does not
/// exist yet has no versions.
async fn version_of(
    client: &SecretClient,
    vault: &VaultTarget<'_>,
    identity: &AzureIdentity,
    execution: &str,
) -> Result<Option<String>, StepFailure> {
    let tag = KEY_VAULT_OWN_TAGS[3];
    let mut versions = client
        .list_secret_properties_versions(vault.secret_name, None)
        .map_err(|e| failure(&e, vault, identity, "list the versions of"))?;
    loop {
        match versions.try_next().await {
            Ok(Some(v)) => {
                if !execution.is_empty() && v.tags.as_ref().and_then(|t| t.get(tag)).is_some_and(|t| t == execution) {
                    return Ok(Some(v.id.unwrap_or_default().rsplit('/').next().unwrap_or_default().to_owned()));
                }
            }
            Ok(None) => return Ok(None),
            Err(e) if answered(&e).is_some_and(|(status, _)| status == 404) => return Ok(None),
            Err(e) => return Err(failure(&e, vault, identity, "list the versions of")),
        }
    }
}

/// An SDK error in words: never the request, whose body holds the secret, nor the service's text.
fn failure(e: &azure_core::Error, vault: &VaultTarget<'_>, identity: &AzureIdentity, action: &str) -> StepFailure {
    let what = format!("Key Vault {} refused to {action} secret {}", vault.vault_name(), vault.secret_name);
    match answered(e) {
        Some((401 | 403, code)) => StepFailure::permanent(format!(
            "{what} ({}{}): {} needs {RIGHTS}",
            status_text(answered(e)),
            code.map(|c| format!(" {c}")).unwrap_or_default(),
            identity.describe()
        )),
        Some((404, code)) => StepFailure::permanent(format!(
            "Key Vault {} was not found ({}): check vault_url",
            vault.vault_name(),
            code.unwrap_or("404")
        )),
        Some((409, code)) => StepFailure::permanent(format!(
            "{what} (409 {}): a deleted secret of that name is kept for recovery; recover or purge it",
            code.unwrap_or("Conflict")
        )),
        Some((status, code)) => {
            let retryable = status == 429 || status == 408 || status >= 500;
            let after = if retryable { " after retrying" } else { "" };
            StepFailure {
                message: format!("{what}{after} ({status}{})", code.map(|c| format!(" {c}")).unwrap_or_default()),
                retryable,
                left_in_place: false,
            }
        }
        None if matches!(e.kind(), azure_core::error::ErrorKind::Credential) => StepFailure::retryable(format!(
            "{} could not get a token for Key Vault {}",
            identity.describe(),
            vault.vault_name()
        )),
        None if unanswered_is_transient(e) => {
            StepFailure::retryable(format!("could not reach Key Vault {}", vault.vault_name()))
        }
        None => StepFailure {
            message: format!("{what}: {}", http::first_line(&e.to_string())),
            retryable: true,
            left_in_place: false,
        },
    }
}

fn status_text(answer: Option<(u16, Option<&str>)>) -> String {
    match answer {
        Some((401, _)) => "401 Unauthorized".to_owned(),
        Some((403, _)) => "403 Forbidden".to_owned(),
        Some((s, _)) => s.to_string(),
        None => String::new(),
    }
}

/// A client for one vault and identity. Its authorizer remembers the scope the vault's first 401
/// challenge named, so clients are kept and reused.
pub(super) fn new_client(
    http: &Arc<super::Http>,
    vault_url: &url::Url,
    identity: &AzureIdentity,
) -> Result<SecretClient, StepFailure> {
    let host = vault_url.host_str().unwrap_or_default();
    let options = SecretClientOptions {
        client_options: super::azure::client_options(http),
        verify_challenge_resource: Some(VAULT_DOMAINS.iter().any(|d| host.ends_with(d))),
        ..Default::default()
    };
    SecretClient::new(vault_url.as_str(), identity.credential.clone(), Some(options))
        .map_err(|_| StepFailure::permanent("cannot build the Key Vault client for that vault_url"))
}
