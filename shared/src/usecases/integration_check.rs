//! `rotator integrations check`: before an integration is trusted, ask Entra what the background
//! jobs will need of it — a token got the way they get it, a listing of applications, one
//! application's credentials, and whether the identity may add a password to the applications its
//! policies rotate (`Application.ReadWrite.All`, or `Application.ReadWrite.OwnedBy` as an owner).
//! Each answer is ok, warning or failed, and says what to grant. Nothing is written.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::Result;
use crate::domain::ids::{ClientId, IntegrationId};
use crate::domain::inventory::CredentialKind;
use crate::domain::policy::PolicySet;
use crate::ports::directory::{Directory, DirectoryAccess, GraphPermission};
use crate::ports::store::Store;
use crate::usecases::app::App;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    Warning,
    Failed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warning => "warning",
            Self::Failed => "failed",
        }
    }
}

/// One question asked of Entra, and its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probe {
    pub check: &'static str,
    pub verdict: Verdict,
    pub detail: String,
    /// What to grant or change, when the verdict is not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn probe(check: &'static str, verdict: Verdict, detail: impl Into<String>, fix: Option<String>) -> Probe {
    Probe { check, verdict, detail: detail.into(), fix }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IntegrationCheck {
    pub integration: IntegrationId,
    pub sign_in: &'static str,
    pub verdict: Verdict,
    pub probes: Vec<Probe>,
}

const TOKEN: &str = "sign-in";
const LIST: &str = "list applications";
const READ: &str = "read credentials";
const WRITE: &str = "add passwords";

/// How many application names a probe lists before it says "and N more".
const NAMES_SHOWN: usize = 5;

fn admin_consent(permission: &str) -> String {
    format!(
        "grant the integration's app the Microsoft Graph application permission {permission} and grant admin \
         consent (Entra admin center > App registrations > API permissions)"
    )
}

/// Checks every enabled integration of `s`, in name order.
pub async fn check_all(s: &App) -> Vec<IntegrationCheck> {
    let mut names: Vec<&IntegrationId> = s.directories.keys().filter(|i| !s.disabled.contains(*i)).collect();
    names.sort();
    let mut all = Vec::new();
    for name in names {
        if let Some(directory) = s.directories.get(name) {
            all.push(check_integration(name, directory.as_ref(), Some(s.store.as_ref()), &s.policies).await);
        }
    }
    all
}

/// Checks one integration through its `directory`. `store` is the inventory the rotated
/// applications are read from (none: ownership is not compared).
pub async fn check_integration(
    integration: &IntegrationId,
    directory: &dyn Directory,
    store: Option<&dyn Store>,
    policies: &PolicySet,
) -> IntegrationCheck {
    let mut probes = Vec::new();
    let identity = directory.identity().map(|c| format!(" as {c}")).unwrap_or_default();
    match directory.sign_in().await {
        Ok(()) => probes.push(probe(
            TOKEN,
            Verdict::Ok,
            format!("got a Graph token by {}{identity}", directory.sign_in_method()),
            None,
        )),
        Err(e) => {
            probes.push(probe(TOKEN, Verdict::Failed, e.chain(), None));
            return finish(integration, directory, probes);
        }
    }
    match directory.first_application().await {
        Ok(first) => {
            probes.push(probe(LIST, Verdict::Ok, "lists the tenant's applications", None));
            probes.push(read_probe(directory, first).await);
        }
        Err(e) => {
            let fix = denied(&e).then(|| admin_consent("Application.Read.All"));
            probes.push(probe(LIST, Verdict::Failed, e.chain(), fix));
        }
    }
    probes.push(write_probe(integration, directory, store, policies).await);
    finish(integration, directory, probes)
}

fn finish(integration: &IntegrationId, directory: &dyn Directory, probes: Vec<Probe>) -> IntegrationCheck {
    let verdict = probes.iter().map(|p| p.verdict).max().unwrap_or(Verdict::Ok);
    IntegrationCheck { integration: integration.clone(), sign_in: directory.sign_in_method(), verdict, probes }
}

fn denied(e: &crate::Error) -> bool {
    matches!(e, crate::Error::Directory { status: 403, .. })
}

async fn read_probe(directory: &dyn Directory, first: Option<crate::ports::directory::DirectoryApplication>) -> Probe {
    let Some(first) = first else {
        return probe(READ, Verdict::Warning, "the tenant has no application to read yet", None);
    };
    let name = first.display_name.clone().unwrap_or_else(|| first.id.to_string());
    match directory.application(first.id).await {
        Ok(Some(app)) => {
            let secrets = app.password_credentials.map_or(0, |p| p.len());
            let certificates = app.key_credentials.map_or(0, |k| k.len());
            probe(READ, Verdict::Ok, format!("reads {name}: {secrets} secret(s), {certificates} certificate(s)"), None)
        }
        Ok(None) => probe(READ, Verdict::Warning, format!("{name} was listed but is gone now"), None),
        Err(e) => {
            let fix = denied(&e).then(|| admin_consent("Application.Read.All"));
            probe(READ, Verdict::Failed, e.chain(), fix)
        }
    }
}

/// The applications of `integration` whose client secrets a policy rotates, as the last sync saw
/// them: client id → display name.
async fn rotated_applications(
    store: &dyn Store,
    policies: &PolicySet,
    integration: &IntegrationId,
) -> Result<BTreeMap<ClientId, String>> {
    let with_secrets: BTreeSet<ClientId> = store
        .list_credentials(Some(integration))
        .await?
        .into_iter()
        .filter(|c| c.kind == CredentialKind::Password && c.app.is_some() && c.removed_at.is_none())
        .filter(|c| policies.for_client(&c.client_id).is_some())
        .map(|c| c.client_id)
        .collect();
    Ok(store
        .list_applications(integration)
        .await?
        .into_iter()
        .filter(|a| with_secrets.contains(&a.client_id))
        .map(|a| (a.client_id, a.display_name))
        .collect())
}

fn some_names(names: &[&String]) -> String {
    let shown: Vec<&str> = names.iter().take(NAMES_SHOWN).map(|n| n.as_str()).collect();
    match names.len().saturating_sub(NAMES_SHOWN) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

async fn write_probe(
    integration: &IntegrationId,
    directory: &dyn Directory,
    store: Option<&dyn Store>,
    policies: &PolicySet,
) -> Probe {
    let access = match directory.access(true).await {
        Ok(access) => access,
        Err(e) => {
            return probe(
                WRITE,
                Verdict::Warning,
                format!("could not read the identity's permissions: {}", e.chain()),
                None,
            );
        }
    };
    let (principal, permissions, owned) = match access {
        DirectoryAccess::Unknown(why) => return probe(WRITE, Verdict::Warning, why, None),
        DirectoryAccess::Known { principal, permissions, owned } => (principal, permissions, owned),
    };
    let held: Vec<&str> = permissions.iter().map(|p| p.name()).collect();
    if let Some(p) = permissions.iter().find(|p| p.writes_every_application()) {
        return probe(WRITE, Verdict::Ok, format!("{} may add a password to every application", p.name()), None);
    }
    let owned_by = permissions.contains(&GraphPermission::ApplicationReadWriteOwnedBy);
    if !owned_by {
        let holds =
            if held.is_empty() { "no Microsoft Graph application permission".to_owned() } else { held.join(", ") };
        return probe(
            WRITE,
            Verdict::Failed,
            format!("the identity holds {holds}: it may not add passwords, so every rotation would be refused"),
            Some(format!(
                "{}; or grant Application.ReadWrite.OwnedBy and add the identity's service principal ({principal}) as \
                 an owner of each application it rotates",
                admin_consent("Application.ReadWrite.All")
            )),
        );
    }
    let owned = owned.unwrap_or_default();
    let Some(store) = store else {
        return probe(
            WRITE,
            Verdict::Warning,
            format!(
                "Application.ReadWrite.OwnedBy, owner of {} application(s); there is no inventory yet to compare \
                 with what the policies rotate (run `rotator sync`, then check again)",
                owned.len()
            ),
            None,
        );
    };
    let rotated = match rotated_applications(store, policies, integration).await {
        Ok(rotated) => rotated,
        Err(e) => return probe(WRITE, Verdict::Warning, format!("could not read the inventory: {}", e.chain()), None),
    };
    if rotated.is_empty() {
        return probe(
            WRITE,
            Verdict::Warning,
            format!(
                "Application.ReadWrite.OwnedBy, owner of {} application(s); no synced application with a client secret \
                 is rotated by a policy yet, so ownership cannot be compared (run `rotator sync`, then check again)",
                owned.len()
            ),
            None,
        );
    }
    let not_owned: Vec<(&ClientId, &String)> = rotated.iter().filter(|(c, _)| !owned.contains(c)).collect();
    if not_owned.is_empty() {
        return probe(
            WRITE,
            Verdict::Ok,
            format!(
                "Application.ReadWrite.OwnedBy, and an owner of all {} application(s) its policies rotate",
                rotated.len()
            ),
            None,
        );
    }
    let mut names: Vec<&String> = not_owned.iter().map(|(_, n)| *n).collect();
    names.sort();
    let first = not_owned[0].0;
    let verdict = if not_owned.len() == rotated.len() { Verdict::Failed } else { Verdict::Warning };
    probe(
        WRITE,
        verdict,
        format!(
            "Application.ReadWrite.OwnedBy, but not an owner of {} of the {} application(s) its policies rotate: {}; \
             their rotations would be refused",
            not_owned.len(),
            rotated.len(),
            some_names(&names)
        ),
        Some(format!(
            "add the identity's service principal as an owner of each (az ad app owner add --id {first} \
             --owner-object-id {principal}), or grant Application.ReadWrite.All"
        )),
    )
}

/// Preflight's question for one rotation: may the integration add a password to this application?
/// `None` when it cannot be told (preflight then leaves it for review; Graph refuses at rotation time).
pub async fn may_rotate(directory: &dyn Directory, client_id: ClientId) -> (Option<bool>, String) {
    let access = match directory.access(false).await {
        Ok(a) => a,
        Err(e) => return (None, format!("could not read the identity's permissions: {}", e.chain())),
    };
    let mut answer = access.may_add_password(client_id);
    let access = if answer == Some(false) {
        // A remembered "no" may be stale (an owner just added): ask again before refusing.
        match directory.access(true).await {
            Ok(fresh) => {
                answer = fresh.may_add_password(client_id);
                fresh
            }
            Err(e) => return (None, format!("could not read the identity's permissions: {}", e.chain())),
        }
    } else {
        access
    };
    let reason = match (&access, answer) {
        (DirectoryAccess::Unknown(why), _) => why.clone(),
        (DirectoryAccess::Known { permissions, .. }, Some(true)) => {
            match permissions.iter().find(|p| p.writes_every_application()) {
                Some(p) => format!("{} may add a password to every application", p.name()),
                None => "Application.ReadWrite.OwnedBy, and an owner of this application".to_owned(),
            }
        }
        (DirectoryAccess::Known { principal, permissions, .. }, _) => {
            if permissions.contains(&GraphPermission::ApplicationReadWriteOwnedBy) {
                format!(
                    "the integration holds Application.ReadWrite.OwnedBy but is not an owner of this application: add \
                     its service principal ({principal}) as an owner, or grant Application.ReadWrite.All"
                )
            } else {
                "the integration may not add passwords: grant it Application.ReadWrite.All (or \
                 Application.ReadWrite.OwnedBy as an owner of the application), with admin consent"
                    .to_owned()
            }
        }
    };
    (answer, reason)
}

/// Runs [`check_all`] and logs each integration's answer once: what `rotator serve` and the Lambda
/// functions do at start, so a missing permission shows in the log before the first rotation.
pub async fn log_checks(s: &App) {
    for check in check_all(s).await {
        for p in &check.probes {
            let fix = p.fix.as_deref().unwrap_or("");
            match p.verdict {
                Verdict::Ok => {
                    tracing::info!(integration = %check.integration, check = p.check, detail = %p.detail, "integration check")
                }
                Verdict::Warning => {
                    tracing::warn!(integration = %check.integration, check = p.check, detail = %p.detail, fix, "integration check")
                }
                Verdict::Failed => {
                    tracing::error!(integration = %check.integration, check = p.check, detail = %p.detail, fix, "integration check failed")
                }
            }
        }
    }
}
