//! `rotator rotate`, `confirm`, `cancel`, `reveal`: operator commands of the rotation chain on this machine.
//! They record the request in the local database; `rotator serve` does the work.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use entra_rotator::adapters::sealing::key_file::LocalKeyRing;
use entra_rotator::adapters::sqlite::LocalData;
use entra_rotator::adapters::system_clock::SystemClock;
use entra_rotator::domain::execution::{Execution, ExecutionStatus, Trigger};
use entra_rotator::domain::ids::{CredentialId, ExecutionId};
use entra_rotator::ports::{Clock, Queue, Store};
use entra_rotator::usecases::app::App;
use entra_rotator::usecases::intervention;
use entra_rotator::usecases::preflight::CheckOutcome;
use entra_rotator::usecases::rotation::{RotationAccepted, request_rotation};
use entra_rotator::wiring;
use serde_json::json;

use crate::caller::operator;
use crate::commands::load_config;
use crate::output::{Output, spinner, table, when};

pub(crate) fn services(config_path: &Path) -> anyhow::Result<(App, LocalData)> {
    let config = load_config(config_path)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let data = LocalData::open(&config.database_path(), clock.clone())
        .with_context(|| format!("opening {}", config.database_path().display()))?;
    let keys = LocalKeyRing::open_or_create(&config.key_file_path())
        .with_context(|| format!("opening key file {}", config.key_file_path().display()))?;
    let store: Arc<dyn Store> = Arc::new(data.store.clone());
    let queue: Arc<dyn Queue> = Arc::new(data.queue.clone());
    Ok((wiring::services(&config, store, queue, clock, Arc::new(keys))?, data))
}

pub async fn rotate(
    config_path: &Path,
    credential: &str,
    dry_run: bool,
    wait: bool,
    reason: Option<String>,
    out: Output,
) -> anyhow::Result<ExitCode> {
    let credential = CredentialId::parse(credential)?;
    let (s, _data) = services(config_path)?;
    let trigger = Trigger::Manual { by: operator(), reason };
    match request_rotation(&s, &credential, trigger, dry_run).await? {
        RotationAccepted::DryRun { report } => {
            if out.json {
                out.print_json(&report)?;
            } else {
                println!("Dry run for {} (policy {}): nothing was changed.", report.credential, report.policy);
                let mut t = table(&["check", "result", "reason"]);
                for c in &report.checks {
                    let result = match c.outcome {
                        CheckOutcome::Ok => "ok",
                        CheckOutcome::Warning => "warning",
                        CheckOutcome::ManualReview => "manual review",
                        CheckOutcome::Failed => "FAILED",
                    };
                    t.add_row(vec![c.name.clone(), result.to_string(), c.reason.clone()]);
                }
                println!("{t}");
                println!("{}", if report.ok { "Ready to rotate." } else { "Not ready: fix what failed first." });
            }
            Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        RotationAccepted::Started { execution } | RotationAccepted::AlreadyRunning { execution } if wait => {
            let done = wait_for(&s, execution.id, out).await?;
            show(&s, &done, out).await?;
            Ok(if done.status == ExecutionStatus::Completed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        RotationAccepted::Started { execution } => {
            if out.json {
                out.print_json(&json!({ "execution_id": execution.id, "already_running": false }))?;
            } else {
                println!(
                    "Rotation {} queued; `rotator serve` runs it. Follow it with `rotator history {credential}`.",
                    execution.id
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        RotationAccepted::AlreadyRunning { execution } => {
            if out.json {
                out.print_json(&json!({ "execution_id": execution.id, "already_running": true }))?;
            } else {
                println!("Already rotating: execution {} ({}).", execution.id, execution.status.as_str());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn wait_for(s: &App, id: ExecutionId, out: Output) -> anyhow::Result<Execution> {
    // On a terminal a spinner shows the step now running, with the lines of the steps before it
    // above; elsewhere the lines alone, as they always were.
    let bar = out.shows_progress().then(|| spinner("{spinner} {msg} ({elapsed})"));
    let note = |line: String| match &bar {
        Some(bar) => bar.println(line),
        None => eprintln!("{line}"),
    };
    let mut last = String::new();
    let mut idle = 0;
    loop {
        let e = s.store.get_execution(&id).await?.context("the execution vanished")?;
        if e.status.is_terminal() || e.status == ExecutionStatus::Failed {
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            return Ok(e);
        }
        let now = format!("{} step {}", e.status.as_str(), e.current_step);
        if now != last {
            if !out.json {
                let name = e.plan.get(e.current_step as usize).map(|p| p.name.clone()).unwrap_or_default();
                note(format!("  {}: {name}", e.status.as_str()));
                if let Some(bar) = &bar {
                    bar.set_message(format!("{}: {name}", e.status.as_str()));
                }
            }
            last = now;
            idle = 0;
        } else {
            idle += 1;
            if idle == 60 {
                let waiting = if e.status == ExecutionStatus::Pending {
                    "for `rotator serve` to pick it up (is it running with this configuration?)"
                } else {
                    "on this step (retries and replication take time)"
                };
                note(format!("  (no progress for 30 s: still {} {waiting})", e.status.as_str()));
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn show(s: &App, e: &Execution, out: Output) -> anyhow::Result<()> {
    let steps = s.store.list_step_records(&e.id).await?;
    if out.json {
        return out.print_json(&json!({ "execution": e, "steps": steps }));
    }
    println!("{}  {}  {}", e.id, e.status.as_str(), e.summary.clone().or(e.error.clone()).unwrap_or_default());
    let mut t = table(&["#", "step", "outcome", "attempts", "ended", "error"]);
    for r in steps {
        t.add_row(vec![
            r.index.to_string(),
            r.name,
            format!("{:?}", r.outcome).to_lowercase(),
            r.attempts.to_string(),
            when(r.ended_at),
            r.error.unwrap_or_default(),
        ]);
    }
    println!("{t}");
    Ok(())
}

pub async fn confirm(config_path: &Path, execution: &str, out: Output) -> anyhow::Result<ExitCode> {
    let id = ExecutionId::parse(execution)?;
    let (s, _data) = services(config_path)?;
    let e = intervention::confirm_cleanup(&s, id, &operator()).await?;
    if out.json {
        out.print_json(&json!({ "execution": e }))?;
    } else {
        println!(
            "Confirmed: the old secret of {} is removed once its grace period ends ({}).",
            e.id,
            when(e.grace_until)
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn cancel(config_path: &Path, execution: &str, out: Output) -> anyhow::Result<ExitCode> {
    let id = ExecutionId::parse(execution)?;
    let (s, _data) = services(config_path)?;
    let e = intervention::cancel(&s, id, &operator()).await?;
    if out.json {
        out.print_json(&json!({ "execution": e }))?;
    } else {
        println!("Cancelled {}: the old secret stays; {} may be rotated again.", e.id, e.credential);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn reveal(config_path: &Path, execution: &str, out: Output) -> anyhow::Result<ExitCode> {
    let id = ExecutionId::parse(execution)?;
    let (s, _data) = services(config_path)?;
    let secret = intervention::reveal(&s, id, &operator()).await?;
    if out.json {
        out.print_json(&json!({ "execution": id, "secret": secret.expose(), "shown_once": true }))?;
    } else {
        eprintln!(
            "The new secret of {id}, shown this once (the reading is audited). Put it where it is used, then `rotator confirm {id}`:"
        );
        println!("{}", secret.expose());
    }
    Ok(ExitCode::SUCCESS)
}
