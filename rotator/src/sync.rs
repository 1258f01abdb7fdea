//! `rotator sync`: read integrations from Microsoft Graph into the local inventory now, then run
//! the expiry scan, showing progress on a terminal.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use entra_rotator::adapters::sqlite::LocalData;
use entra_rotator::adapters::system_clock::SystemClock;
use entra_rotator::domain::ids::OwnerKind;
use entra_rotator::ports::Clock;
use entra_rotator::usecases::scan::Scanner;
use entra_rotator::usecases::sync::{SyncKind, SyncMode, SyncProgress, Syncer};
use entra_rotator::wiring;
use indicatif::ProgressBar;
use serde_json::json;

use crate::commands::load_config;
use crate::output::{Output, spinner, table};

pub async fn run(config_path: &Path, only: Option<&str>, full: bool, out: Output) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let data = LocalData::open(&config.database_path(), clock.clone())
        .with_context(|| format!("opening {}", config.database_path().display()))?;
    let directories = wiring::directories(&config)?;
    let mut names: Vec<_> = directories.keys().cloned().collect();
    names.sort();
    if let Some(only) = only {
        names.retain(|n| n.as_str() == only);
        if names.is_empty() {
            bail!("no enabled integration named {only:?} in {}", config_path.display());
        }
    }
    if names.is_empty() {
        bail!("no enabled integrations in {}", config_path.display());
    }
    let mode = if full { SyncMode::Full } else { SyncMode::Auto };
    let mut reports = Vec::new();
    for name in &names {
        // Hidden off a terminal, where the sync has always been silent until its table.
        let bar = if out.shows_progress() { spinner("{spinner} {prefix}: {msg}") } else { ProgressBar::hidden() };
        bar.set_prefix(format!("syncing {name}"));
        bar.set_message("reading Microsoft Graph");
        let progress = |p: SyncProgress| {
            let what = match p.owner {
                OwnerKind::Application => "applications",
                OwnerKind::ServicePrincipal => "service principals",
            };
            let kind = match p.kind {
                SyncKind::Full => "full",
                SyncKind::Delta => "delta",
            };
            bar.set_message(format!("{kind} sync: {} {what}, {} pages", p.objects, p.pages));
        };
        let directory = directories.get(name).context("integration vanished")?;
        let report =
            Syncer { directory: directory.as_ref(), store: &data.store, clock: clock.as_ref(), progress: &progress }
                .sync(name, mode)
                .await
                .with_context(|| format!("syncing {name}"))?;
        // The last count stays on screen, one line per integration.
        bar.finish();
        reports.push(report);
    }
    let sinks = wiring::alert_sinks(&config)?;
    let policies = config.policy_set();
    let disabled = config.integrations.iter().filter(|i| !i.enabled).map(|i| i.id.clone()).collect();
    let scan = Scanner {
        store: &data.store,
        queue: &data.queue,
        clock: clock.as_ref(),
        policies: &policies,
        sinks: &sinks,
        disabled: &disabled,
    }
    .scan(None)
    .await
    .context("expiry scan")?;
    if out.json {
        out.print_json(&json!({ "syncs": reports, "scan": scan }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut t =
        table(&["integration", "kind", "applications", "service principals", "removed", "credentials", "pages"]);
    for r in &reports {
        let kind = match (r.kind, r.fell_back_to_full) {
            (SyncKind::Full, true) => "full (delta link expired)",
            (SyncKind::Full, false) => "full",
            (SyncKind::Delta, _) => "delta",
        };
        t.add_row(vec![
            r.integration.to_string(),
            kind.to_string(),
            r.applications_seen.to_string(),
            r.service_principals_seen.to_string(),
            r.owners_removed.to_string(),
            format!("{} written, {} removed", r.counts.credentials_written, r.counts.credentials_removed),
            r.pages.to_string(),
        ]);
    }
    println!("{t}");
    println!(
        "expiry scan: {} credentials, {} alerts sent, {} rotations requested. `rotator status` shows the dashboard.",
        scan.credentials, scan.alerts_sent, scan.rotations_requested
    );
    Ok(ExitCode::SUCCESS)
}
