//! The operator commands: each loads what it needs, asks the library, and prints.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use entra_rotator::adapters::sqlite::LocalData;
use entra_rotator::adapters::system_clock::SystemClock;
use entra_rotator::config::{Config, Env, ProcessEnv};
use entra_rotator::domain::ids::CredentialId;
use entra_rotator::domain::steps::{Severity, StepDefinition, parse_steps, redact_step_value};
use entra_rotator::messages::queues;
use entra_rotator::ports::{Clock, MessageId, Queue, QueueName, Store};
use entra_rotator::usecases::dashboard::dashboard;
use entra_rotator::usecases::dead_letters;
use serde_json::json;

use crate::output::{Output, table, when};

pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    Ok(Config::load(path, &ProcessEnv)?)
}

/// Opens the local database, or says plainly that there is none yet.
fn open_data(config: &Config) -> anyhow::Result<Option<LocalData>> {
    let path = config.database_path();
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some(LocalData::open(&path, Arc::new(SystemClock)).with_context(|| format!("opening {}", path.display()))?))
}

fn no_data(config: &Config, out: Output) -> anyhow::Result<ExitCode> {
    let path = config.database_path();
    if out.json {
        out.print_json(&json!({ "database": path, "exists": false }))?;
    } else {
        println!("No data yet: {} does not exist. `rotator serve` creates it on first start.", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn config_check(file: &Path, out: Output) -> anyhow::Result<ExitCode> {
    let config = match Config::load(file, &ProcessEnv) {
        Ok(c) => c,
        Err(e) => {
            if out.json {
                out.print_json(&json!({ "valid": false, "error": e.to_string() }))?;
            } else {
                eprintln!("{e}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    // Never claim more than runs: a step type this build cannot run makes the configuration unusable
    // for its policy, so it is refused here as preflight refuses it.
    let refused = entra_rotator::wiring::steps_this_build_cannot_run(&config);
    if !refused.is_empty() {
        if out.json {
            out.print_json(&json!({ "valid": false, "error": refused.join("\n"), "unsupported_steps": refused }))?;
        } else {
            eprintln!("{}: {} step(s) this build cannot run:", file.display(), refused.len());
            for r in &refused {
                eprintln!("  {r}");
            }
        }
        return Ok(ExitCode::FAILURE);
    }
    let integrations: Vec<_> = config
        .integrations
        .iter()
        .map(|i| {
            json!({
                "name": i.id, "tenant_id": i.tenant.to_string(), "client_id": i.client_id.to_string(),
                "enabled": i.enabled, "auth": i.credentials.describe(),
                "authority_host": i.authority_host.as_str(), "graph_base_url": i.graph_base_url.as_str(),
                "resource_manager_url": i.resource_manager_url.as_str(),
            })
        })
        .collect();
    let policies: Vec<_> = config
        .policies
        .iter()
        .map(|p| {
            json!({
                "name": p.policy.id, "auto_rotate": p.policy.auto_rotate,
                "days_before_expiry": p.policy.days_before_expiry,
                "grace_period": p.policy.grace_period, "secret_lifetime": p.policy.secret_lifetime,
                "alert_thresholds": p.policy.alert_thresholds,
                "applications": p.applications.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                // Query values and header values may be tokens: shown redacted.
                "steps": p.policy.steps.iter().map(StepDefinition::redacted).collect::<Vec<_>>(),
                "notes": p.step_notes.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
                "delivery": if p.policy.manual_delivery { "manual" } else { "steps" },
                "warnings": p.policy.delivery_problem().into_iter().collect::<Vec<_>>(),
            })
        })
        .collect();
    let sinks: Vec<_> =
        config.webhooks.iter().map(|w| json!({ "name": w.name, "host": w.host, "format": w.format })).collect();
    if out.json {
        out.print_json(&json!({
            "valid": true, "data_dir": config.data_dir, "listen": config.listen.to_string(),
            "schedules": {
                "sync": config.schedules.sync, "expiry_scan": config.schedules.expiry_scan,
                "grace_cleanup": config.schedules.grace_cleanup,
            },
            "integrations": integrations, "policies": policies, "alert_webhooks": sinks,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}: valid", file.display());
    println!("  data directory  {}", config.data_dir.display());
    println!("  HTTP API        http://{}", config.listen);
    println!(
        "  schedules       sync every {}, expiry scan every {}, grace cleanup every {}",
        config.schedules.sync, config.schedules.expiry_scan, config.schedules.grace_cleanup
    );
    let mut t = table(&["integration", "tenant", "client id", "authentication", "enabled"]);
    for i in &config.integrations {
        t.add_row(vec![
            i.id.to_string(),
            i.tenant.to_string(),
            i.client_id.to_string(),
            i.credentials.describe(),
            i.enabled.to_string(),
        ]);
    }
    println!("\n{t}");
    let mut t = table(&["policy", "auto", "rotate at", "grace", "lifetime", "alerts", "applications", "steps"]);
    for p in &config.policies {
        t.add_row(vec![
            p.policy.id.to_string(),
            if p.policy.auto_rotate { "yes" } else { "no" }.to_string(),
            format!("{}d before expiry", p.policy.days_before_expiry),
            p.policy.grace_period.to_string(),
            p.policy.secret_lifetime.to_string(),
            p.policy.alert_thresholds.iter().map(|d| format!("{d}d")).collect::<Vec<_>>().join(", "),
            if p.applications.is_empty() { "(the rest)".into() } else { p.applications.len().to_string() },
            p.policy.steps.len().to_string(),
        ]);
    }
    println!("\n{t}");
    for p in &config.policies {
        for n in &p.step_notes {
            println!("  policy {}: {n}", p.policy.id);
        }
        if let Some(problem) = p.policy.delivery_problem() {
            println!("  warning: {problem}");
        } else if p.policy.manual_delivery {
            println!(
                "  policy {}: manual delivery: read each new secret once with `rotator reveal`, then `rotator confirm`",
                p.policy.id
            );
        }
    }
    if !config.webhooks.is_empty() {
        println!("\nalert webhooks (besides the log):");
        for w in &config.webhooks {
            println!("  {} → {} ({:?})", w.name, w.host, w.format);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn steps_check(file: &Path, out: Output) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    match parse_steps(&text) {
        Ok(plan) => {
            if out.json {
                let notes: Vec<_> = plan
                    .warnings
                    .iter()
                    .map(|w| json!({ "severity": w.severity, "step": w.step.index, "field": w.field, "message": w.message, "text": w.to_string() }))
                    .collect();
                let steps: Vec<_> = plan.steps.iter().map(StepDefinition::redacted).collect();
                out.print_json(&json!({ "valid": true, "steps": steps, "notes": notes }))?;
                return Ok(ExitCode::SUCCESS);
            }
            println!("{}: valid, {} step(s), in the order they run:", file.display(), plan.steps.len());
            let mut t = table(&["#", "order", "type", "phase", "on failure", "step"]);
            for (i, s) in plan.steps.iter().enumerate() {
                t.add_row(vec![
                    (i + 1).to_string(),
                    s.order.to_string(),
                    s.kind().as_str().to_string(),
                    format!("{:?}", s.kind().phase()).to_lowercase(),
                    format!("{:?}", s.on_failure).to_lowercase(),
                    s.display_name(),
                ]);
            }
            println!("{t}");
            for w in &plan.warnings {
                let tag = match w.severity {
                    Severity::Warning => "warning",
                    Severity::ManualReview => "manual review",
                    Severity::Error => "error",
                };
                println!("{tag}: {w}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            if out.json {
                let issues: Vec<_> = errors
                    .0
                    .iter()
                    .map(|w| json!({ "severity": w.severity, "step": w.step.index, "field": w.field, "message": w.message, "text": w.to_string() }))
                    .collect();
                out.print_json(&json!({ "valid": false, "errors": issues }))?;
            } else {
                eprintln!("{}: {} problem(s):", file.display(), errors.0.len());
                for e in &errors.0 {
                    eprintln!("  {e}");
                }
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `rotator integrations check [NAME]`: each probe's verdict, with what to grant when it is not ok.
pub async fn integrations_check(config_path: &Path, only: Option<&str>, out: Output) -> anyhow::Result<ExitCode> {
    use entra_rotator::usecases::integration_check::{Verdict, check_integration};
    let config = load_config(config_path)?;
    let directories = entra_rotator::wiring::directories(&config)?;
    let mut names: Vec<_> = directories.keys().cloned().collect();
    names.sort();
    if let Some(only) = only {
        names.retain(|n| n.as_str() == only);
        if names.is_empty() {
            let known = config.integrations.iter().find(|i| i.id.as_str() == only);
            match known {
                Some(_) => bail!("integration {only:?} is disabled in {} (enabled = false)", config_path.display()),
                None => bail!("no integration named {only:?} in {}", config_path.display()),
            }
        }
    }
    if names.is_empty() {
        bail!("no enabled integrations in {}", config_path.display());
    }
    // The inventory, when there is one, says which applications the policies rotate.
    let data = open_data(&config)?;
    let store = data.as_ref().map(|d| &d.store as &dyn Store);
    let policies = config.policy_set();
    let mut checks = Vec::new();
    for name in &names {
        let directory = directories.get(name).context("integration vanished")?;
        checks.push(check_integration(name, directory.as_ref(), store, &policies).await);
    }
    let failed = checks.iter().any(|c| c.verdict == Verdict::Failed);
    if out.json {
        out.print_json(&json!({ "ok": !failed, "integrations": checks }))?;
    } else {
        for c in &checks {
            println!("{}: {} (signs in by {})", c.integration, c.verdict.as_str(), c.sign_in);
            let mut t = table(&["check", "result", "detail"]);
            for p in &c.probes {
                let detail = match &p.fix {
                    Some(fix) => format!("{}\nfix: {fix}", p.detail),
                    None => p.detail.clone(),
                };
                t.add_row(vec![p.check.to_string(), p.verdict.as_str().to_string(), detail]);
            }
            println!("{t}");
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

pub async fn status(config_path: &Path, out: Output) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let Some(data) = open_data(&config)? else { return no_data(&config, out) };
    let dash = dashboard(&data.store, SystemClock.now(), config.policy_set().expiring_soon_days(), 10).await?;
    let mut depths = Vec::new();
    for q in queues::ALL {
        depths.push((q, data.queue.depth(&QueueName::new(q)).await?));
    }
    if out.json {
        let queues: serde_json::Map<_, _> =
            depths.iter().map(|(q, d)| ((*q).to_string(), serde_json::to_value(d).unwrap_or_default())).collect();
        out.print_json(&json!({ "dashboard": dash, "queues": queues }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let c = &dash.counts;
    if c.total == 0 {
        println!("The inventory is empty: no credentials have been discovered yet.");
        println!("Discovery (sync from Microsoft Graph) fills it; it arrives with the Entra discovery work.");
    } else {
        println!("{} credentials", c.total);
        let mut t = table(&["state", "count"]);
        for (label, n) in [
            ("Active", c.active),
            ("Expiring Soon", c.expiring_soon),
            ("Rotating", c.rotating),
            ("Rotation Failed", c.rotation_failed),
            ("Grace Period", c.grace_period),
            ("Expired", c.expired),
            ("Cleaned Up", c.cleaned_up),
        ] {
            t.add_row(vec![label.to_string(), n.to_string()]);
        }
        println!("{t}");
        println!(
            "expiring within 7 days: {}   30 days: {}   90 days: {}",
            c.expiring_within_7_days, c.expiring_within_30_days, c.expiring_within_90_days
        );
        if !dash.most_urgent.is_empty() {
            let mut t = table(&["most urgent", "application", "state", "ends", "days left"]);
            for u in &dash.most_urgent {
                t.add_row(vec![
                    u.credential.to_string(),
                    u.application.clone().unwrap_or_else(|| "-".into()),
                    u.state.label().to_string(),
                    when(u.end),
                    u.days_left.map(|d| d.to_string()).unwrap_or_else(|| "-".into()),
                ]);
            }
            println!("{t}");
        }
    }
    let mut t = table(&["queue", "waiting", "in flight", "delayed", "dead letters"]);
    for (q, d) in depths {
        t.add_row(vec![
            q.to_string(),
            d.visible.to_string(),
            d.in_flight.to_string(),
            d.delayed.to_string(),
            d.dead.to_string(),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

pub async fn history(config_path: &Path, credential: &str, limit: usize, out: Output) -> anyhow::Result<ExitCode> {
    let credential = CredentialId::parse(credential)?;
    let config = load_config(config_path)?;
    let Some(data) = open_data(&config)? else { return no_data(&config, out) };
    let mut executions = data.store.list_executions(&credential).await?;
    executions.truncate(limit);
    let mut with_steps = Vec::new();
    for e in executions {
        let steps = data.store.list_step_records(&e.id).await?;
        with_steps.push((e, steps));
    }
    if out.json {
        let mut items = Vec::new();
        for (e, s) in &with_steps {
            // The stored plan holds each step as it runs; what is printed has its tokens redacted.
            let mut execution = serde_json::to_value(e)?;
            for planned in execution.get_mut("plan").and_then(|p| p.as_array_mut()).into_iter().flatten() {
                if let Some(definition) = planned.get_mut("definition") {
                    redact_step_value(definition);
                }
            }
            items.push(json!({ "execution": execution, "steps": s }));
        }
        out.print_json(&json!({ "credential": credential, "executions": items }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if with_steps.is_empty() {
        println!("No rotations recorded for {credential}.");
        return Ok(ExitCode::SUCCESS);
    }
    for (e, steps) in with_steps {
        let trigger = match &e.trigger {
            entra_rotator::domain::execution::Trigger::Automatic { reason } => format!("automatic ({reason})"),
            entra_rotator::domain::execution::Trigger::Manual { by, reason } => {
                format!("manual by {by}{}", reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default())
            }
        };
        println!(
            "{}  {}  started {}  {}{}",
            e.id,
            e.status.as_str(),
            when(Some(e.created_at)),
            trigger,
            e.duration().map(|d| format!("  took {}s", d.whole_seconds())).unwrap_or_default()
        );
        if let Some(s) = &e.summary {
            println!("  {s}");
        }
        let mut t = table(&["#", "step", "outcome", "attempts", "started", "ended", "error"]);
        for s in steps {
            t.add_row(vec![
                s.index.to_string(),
                s.name,
                format!("{:?}", s.outcome).to_lowercase(),
                s.attempts.to_string(),
                when(s.started_at),
                when(s.ended_at),
                s.error.unwrap_or_default(),
            ]);
        }
        println!("{t}\n");
    }
    Ok(ExitCode::SUCCESS)
}

/// The queues the `dlq` commands work on: the AWS deployment's when its environment is set
/// (`ROTATOR_AWS_TABLE`, `ROTATOR_AWS_KMS_KEY`, `ROTATOR_AWS_QUEUE_PREFIX`, and AWS credentials), else
/// this machine's local database. `Err(code)` when there is nothing to look at yet.
async fn dead_letter_queues(config_path: &Path, out: Output) -> anyhow::Result<Result<DeadLetterPlace, ExitCode>> {
    if ProcessEnv.var(entra_rotator_aws::settings::QUEUE_PREFIX_VAR).is_some() {
        let settings = entra_rotator_aws::AwsSettings::from_env(&ProcessEnv)?;
        let sdk = settings.sdk_config().await;
        let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
        let queue = entra_rotator_aws::SqsQueue::new(
            aws_sdk_sqs::Client::new(&sdk),
            dynamo.clone(),
            settings.table.clone(),
            settings.queue_prefix.clone(),
            entra_rotator_aws::settings::queue_specs(),
        );
        let store = entra_rotator_aws::DynamoStore::new(dynamo, settings.table.clone(), Arc::new(SystemClock));
        return Ok(Ok(DeadLetterPlace { queue: Arc::new(queue), store: Arc::new(store) }));
    }
    let config = load_config(config_path)?;
    match open_data(&config)? {
        Some(data) => Ok(Ok(DeadLetterPlace { queue: Arc::new(data.queue), store: Arc::new(data.store) })),
        None => Ok(Err(no_data(&config, out)?)),
    }
}

/// Where the dead letters are, and the store their redrive is audited in.
struct DeadLetterPlace {
    queue: Arc<dyn Queue>,
    store: Arc<dyn Store>,
}

pub async fn dlq_list(config_path: &Path, queue: Option<&str>, out: Output) -> anyhow::Result<ExitCode> {
    dead_letters::queues_named(queue)?;
    let dlq = match dead_letter_queues(config_path, out).await? {
        Ok(place) => place.queue,
        Err(code) => return Ok(code),
    };
    let all = dead_letters::list(dlq.as_ref(), queue).await?;
    if out.json {
        out.print_json(&json!({ "dead_letters": all }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        println!("No dead letters.");
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = table(&["id", "queue", "receives", "dead since", "message", "last error"]);
    for d in &all {
        t.add_row(vec![
            d.id.to_string(),
            d.source_queue.to_string(),
            d.receive_count.to_string(),
            when(Some(d.dead_at)),
            describe_body(&d.body),
            d.last_error.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    println!("{t}");
    println!("`rotator dlq show ID` shows one; `rotator dlq redrive [--queue Q] [ID…]` sends them back.");
    Ok(ExitCode::SUCCESS)
}

/// A one-line summary of a message body: its type and identifiers (bodies never hold secrets).
fn describe_body(body: &str) -> String {
    match entra_rotator::messages::Envelope::parse(body) {
        Ok(env) => {
            let v = serde_json::to_value(&env.message).unwrap_or_default();
            let mut parts = vec![v.get("type").and_then(|t| t.as_str()).unwrap_or("?").to_string()];
            if let Some(obj) = v.as_object() {
                for (k, val) in obj {
                    if k != "type" && !val.is_object() && !val.is_null() {
                        parts.push(format!(
                            "{k}={}",
                            val.as_str().map(str::to_owned).unwrap_or_else(|| val.to_string())
                        ));
                    }
                }
            }
            parts.join(" ")
        }
        Err(_) => "(not a message this build understands)".into(),
    }
}

pub async fn dlq_show(config_path: &Path, id: &str, out: Output) -> anyhow::Result<ExitCode> {
    let dlq = match dead_letter_queues(config_path, out).await? {
        Ok(place) => place.queue,
        Err(code) => return Ok(code),
    };
    let Some(d) = dlq.dead_letter(&MessageId(id.to_owned())).await? else {
        bail!("no dead letter with id {id}");
    };
    if out.json {
        let body: serde_json::Value =
            serde_json::from_str(&d.body).unwrap_or(serde_json::Value::String(d.body.clone()));
        out.print_json(&json!({ "dead_letter": d, "message": body }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("id           {}", d.id);
    println!("queue        {}", d.source_queue);
    println!("group        {}", d.group.as_deref().unwrap_or("-"));
    println!("receives     {}", d.receive_count);
    println!("sent         {}", when(Some(d.sent_at)));
    println!("dead since   {}", when(Some(d.dead_at)));
    println!("last error   {}", d.last_error.as_deref().unwrap_or("-"));
    println!("message      {}", describe_body(&d.body));
    Ok(ExitCode::SUCCESS)
}

pub async fn dlq_redrive(
    config_path: &Path,
    queue: Option<&str>,
    ids: &[String],
    out: Output,
) -> anyhow::Result<ExitCode> {
    let place = match dead_letter_queues(config_path, out).await? {
        Ok(place) => place,
        Err(code) => return Ok(code),
    };
    let request = dead_letters::Redrive {
        queue: queue.map(str::to_owned),
        ids: ids.iter().map(|id| MessageId(id.clone())).collect(),
    };
    let moved = dead_letters::redrive(
        place.queue.as_ref(),
        place.store.as_ref(),
        &SystemClock,
        &request,
        &crate::caller::operator(),
    )
    .await?;
    if out.json {
        out.print_json(&json!({ "redriven": moved }))?;
    } else {
        println!("{moved} message(s) sent back to their queue.");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn keys(config_path: &Path, rotate: bool, out: Output) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let path = config.key_file_path();
    let existed = path.exists();
    if !existed && !rotate {
        if out.json {
            out.print_json(&json!({ "key_file": path, "exists": false }))?;
        } else {
            println!("No key file yet: {} is created on the first `rotator serve`.", path.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut ring = entra_rotator::adapters::sealing::key_file::LocalKeyRing::open_or_create(&path)
        .with_context(|| format!("opening key file {}", path.display()))?;
    let added = match (rotate, existed) {
        (true, true) => Some(ring.add_key()?),
        // Creating the file made its first key.
        (true, false) => Some(ring.active_key_id().to_owned()),
        (false, _) => None,
    };
    if out.json {
        out.print_json(
            &json!({ "key_file": path, "active": ring.active_key_id(), "keys": ring.key_ids(), "added": added }),
        )?;
    } else {
        if let Some(id) = &added {
            println!("Added key {id}; new values are sealed with it, older ones still open with their own key.");
        }
        println!("key file {}", path.display());
        for id in ring.key_ids() {
            println!("  {id}{}", if id == ring.active_key_id() { "  (active)" } else { "" });
        }
    }
    Ok(ExitCode::SUCCESS)
}
