//! `make bench`: what a sync, a delta sync and an expiry scan cost, each printed next to a baseline
//! measured in the same run on the same machine (machines here are shared and noisy, so ratios say
//! more than seconds).
//!
//! - full sync of a simulated tenant (20,000 applications by default): time, Graph listing requests
//!   against the minimum (one per page of 999), and peak memory growth; baseline: reading the same
//!   pages without storing anything.
//! - delta sync after 1% of the applications changed: requests and objects read.
//! - expiry scan over 200,000 credentials; baseline: reading them page by page without deciding.
//!   The first scan is a full pass (it indexes each credential's next moment); the second, with
//!   nothing due, reads only the due index; the third comes after time moved on so that about 1%
//!   of the credentials have come due.
//!
//! - a wave of due rotations (500 by default, `--rotations N`) on the embedded runtime against a
//!   sim with a 30 ms round trip on every call and Graph's write limits on; the same wave under a
//!   tight write budget; and each step's cost beyond its remote calls (`wave.rs`).
//!
//! `--only rotations` runs the rotation benchmarks alone, `--only sync` the sync and scan ones. `--json` prints the figures as one JSON
//! object at the end as well.

#![allow(clippy::print_stdout)]

mod wave;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use entra_rotator::adapters::sqlite::{LocalData, SqliteQueue, SqliteStore};
use entra_rotator::adapters::system_clock::SystemClock;
use entra_rotator::config::Config;
use entra_rotator::domain::ids::{AppObjectId, ClientId, CredentialId, IntegrationId, KeyId};
use entra_rotator::domain::inventory::{Application, Credential, CredentialKind};
use entra_rotator::messages::default_queue_specs;
use entra_rotator::ports::alerts::AlertSink;
use entra_rotator::ports::directory::Cursor;
use entra_rotator::ports::{Clock, Owner, OwnerSnapshot, Store};
use entra_rotator::testing::fakes::{ManualClock, RecordingSink};
use entra_rotator::usecases::scan::Scanner;
use entra_rotator::usecases::sync::{SyncMode, Syncer};
use entra_rotator::wiring;
use entra_sim::{Sim, SimOptions};
use uuid::Uuid;

const PAGE: usize = 999;

fn arg(name: &str, default: usize) -> usize {
    let flag = format!("--{name}");
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == &flag).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Peak resident memory since the last reset, in KiB (Linux).
fn peak_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

fn current_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// Resets the peak to the current resident size (Linux 4.0+), so the next peak is this phase's.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn mib(kib: Option<u64>) -> String {
    kib.map(|k| format!("{:.1} MiB", k as f64 / 1024.0)).unwrap_or_else(|| "n/a".into())
}

fn ratio(a: Duration, b: Duration) -> String {
    format!("{:.2}x", ratio_of(a, b))
}

fn ratio_of(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let apps = arg("apps", 20_000);
    let scan_credentials = arg("credentials", 200_000);
    let rotations = arg("rotations", 500);
    let json = std::env::args().any(|a| a == "--json");
    let only = {
        let args: Vec<String> = std::env::args().collect();
        args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).cloned()
    };
    let part = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let mut figures = serde_json::Map::new();

    println!("entra-rotator benchmarks ({} cores)", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    if part("sync") {
        sync_and_scan(apps, scan_credentials, &mut figures).await?;
    }
    if part("rotations") {
        rotation_waves(rotations, &mut figures).await?;
    }
    if json {
        println!("{}", serde_json::Value::Object(figures));
    }
    Ok(())
}

/// The rotation benchmarks (`wave.rs`): the wave with Graph's documented limits, the same wave
/// under a tight write budget, and the cost of each message beyond its remote calls.
async fn rotation_waves(
    rotations: usize,
    figures: &mut serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<()> {
    use entra_rotator::inbound::runtime::WorkerOptions;
    use entra_sim::{GraphLimits, WriteBudget};

    let documented = GraphLimits::documented().with_latency(wave::LATENCY);
    let (wave, under_load) = wave::run(wave::WaveOptions {
        rotations,
        limits: documented,
        workers: WorkerOptions::default(),
        one_at_a_time: false,
    })
    .await?;
    wave::print(
        &format!(
            "a wave of {rotations} due rotations (one secret on each of {rotations} applications, two rollout steps), \
             {} ms per call, Graph's documented write limits",
            wave::LATENCY.as_millis()
        ),
        &wave,
    );
    // A budget of a quarter of the wave per 5 s window: the wave must wait out three windows.
    let budget = WriteBudget::new((rotations / 4).max(1) as u32, Duration::from_secs(5));
    let (tight, _) = wave::run(wave::WaveOptions {
        rotations,
        limits: documented.with_app_tenant_writes(budget),
        workers: WorkerOptions::default(),
        one_at_a_time: false,
    })
    .await?;
    wave::print(
        &format!(
            "the same wave under a write budget of {} per {:?} (Retry-After paces it)",
            budget.writes, budget.window
        ),
        &tight,
    );
    // One rotation at a time, one message at a time: each message's calls are its own.
    let serial_rotations = (rotations / 10).clamp(1, 50);
    let (serial, log) = wave::run(wave::WaveOptions {
        rotations: serial_rotations,
        limits: documented,
        workers: WorkerOptions { batch_size: 1, concurrency: 1, ..WorkerOptions::default() },
        one_at_a_time: true,
    })
    .await?;
    println!(
        "
per message, {serial_rotations} rotations one at a time ({} ms per call; target beyond the calls ≤ 20 ms)",
        wave::LATENCY.as_millis()
    );
    let mut kinds = serde_json::Map::new();
    for (what, n, took, calls, beyond) in wave::per_message(&log) {
        println!("  {what:<10} {n:>5} handled   {took:>9.1?} each   {calls:.1} calls   beyond the calls {beyond:.1?}");
        kinds.insert(what, serde_json::json!({"handled": n, "ms": took.as_secs_f64() * 1e3, "calls": calls, "beyond_calls_ms": beyond.as_secs_f64() * 1e3}));
    }
    println!(
        "  under the wave's load: {:.1?} per message beyond the calls ({} messages)",
        wave.overhead_per_message(),
        under_load.iter().filter(|h| h.queue != entra_rotator::messages::queues::SCAN).count()
    );
    figures.insert(
        "rotation_wave".into(),
        serde_json::json!({ "documented_limits": wave.json(), "tight_budget": tight.json(), "one_at_a_time": serial.json(), "per_message": kinds }),
    );
    Ok(())
}

/// The sync, delta sync and expiry scan benchmarks.
async fn sync_and_scan(
    apps: usize,
    scan_credentials: usize,
    figures: &mut serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let sim = Sim::start(SimOptions { apps, seed: 42, ..Default::default() }).await?;
    let config_path = dir.path().join("rotator.toml");
    let text = format!(
        "data_dir = \"data\"\n[integrations.bench]\ntenant_id = \"{}\"\nclient_id = \"{}\"\nauth = \"client_secret\"\n\
         authority_host = \"{}\"\ngraph_base_url = \"{}\"\nca_certificate = \"{}\"\n\
         [outbound]\nallow = [\"127.0.0.1\"]\n",
        sim.tenant_id(),
        sim.management_client_id(),
        sim.authority_host(),
        sim.graph_base_url(),
        sim.ca_path().display()
    );
    let env = BTreeMap::from([("ROTATOR_BENCH_CLIENT_SECRET".to_owned(), sim.management_secret())]);
    let config = Config::parse(&text, &config_path, &env)?;
    let integration = IntegrationId::parse("bench")?;
    let directories = wiring::directories(&config)?;
    let directory = directories.get(&integration).context("bench integration")?.clone();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let data = LocalData::open(&config.database_path(), clock.clone())?;

    // Baseline: the same pages, read and parsed, nothing stored.
    let started = Instant::now();
    let mut baseline_pages = 0;
    let mut objects = 0;
    for owner in ["applications", "service principals"] {
        let mut cursor = Cursor::Full;
        loop {
            let (n, next) = if owner == "applications" {
                let p = directory.applications(cursor).await?;
                (p.items.len(), p.next_link)
            } else {
                let p = directory.service_principals(cursor).await?;
                (p.items.len(), p.next_link)
            };
            baseline_pages += 1;
            objects += n;
            match next {
                Some(l) => cursor = Cursor::Link(l),
                None => break,
            }
        }
    }
    let baseline = started.elapsed();

    // Full sync into the embedded store.
    sim.clear_requests();
    reset_peak();
    let before = current_kib();
    let started = Instant::now();
    let report = Syncer { directory: directory.as_ref(), store: &data.store, clock: clock.as_ref(), progress: &|_| {} }
        .sync(&integration, SyncMode::Full)
        .await?;
    let full = started.elapsed();
    let peak = peak_kib();
    let requests = sim.requests();
    let list_requests = requests
        .iter()
        .filter(|r| r.is_graph() && !r.query.as_deref().unwrap_or("").contains("deltatoken=latest"))
        .count();
    let sps = report.service_principals_seen;
    let minimum = apps.div_ceil(PAGE) + sps.div_ceil(PAGE);
    println!("\nfull sync of {apps} applications and {sps} service principals ({objects} objects)");
    println!(
        "  time                 {:>10.2?}   baseline (read pages, store nothing) {:.2?}   ratio {}",
        full,
        baseline,
        ratio(full, baseline)
    );
    println!(
        "  listing requests     {:>10}   minimum (one per page of {PAGE}) {minimum}   baseline read {baseline_pages}",
        list_requests
    );
    println!(
        "  other Graph requests {:>10}   (delta links taken before listing)",
        requests.iter().filter(|r| r.is_graph()).count() - list_requests
    );
    println!(
        "  memory               peak {} over a resident {} before the sync (growth {})",
        mib(peak),
        mib(before),
        mib(peak.zip(before).map(|(p, b)| p.saturating_sub(b)))
    );
    println!("  credentials written  {:>10}", report.counts.credentials_written);
    figures.insert(
        "full_sync".into(),
        serde_json::json!({
            "applications": apps, "service_principals": sps, "seconds": full.as_secs_f64(),
            "baseline_seconds": baseline.as_secs_f64(), "ratio": ratio_of(full, baseline),
            "listing_requests": list_requests, "minimum_requests": minimum,
            "memory_growth_kib": peak.zip(before).map(|(p, b)| p.saturating_sub(b)),
            "credentials_written": report.counts.credentials_written,
        }),
    );

    // The same full sync again, nothing changed in the tenant: read, compared, nothing written.
    let started = Instant::now();
    let again = Syncer { directory: directory.as_ref(), store: &data.store, clock: clock.as_ref(), progress: &|_| {} }
        .sync(&integration, SyncMode::Full)
        .await?;
    let resync = started.elapsed();
    println!(
        "  unchanged again      {:>10.2?}   ratio {}   credentials written {}",
        resync,
        ratio(resync, baseline),
        again.counts.credentials_written
    );
    figures.insert(
        "unchanged_full_sync".into(),
        serde_json::json!({
            "seconds": resync.as_secs_f64(), "ratio": ratio_of(resync, baseline),
            "credentials_written": again.counts.credentials_written,
        }),
    );

    // Delta sync after 1% of the applications changed.
    let changed = (apps / 100).max(1);
    let tenant = sim.tenant();
    for id in tenant.app_object_ids().into_iter().take(changed) {
        tenant.touch_app(id)?;
    }
    sim.clear_requests();
    let started = Instant::now();
    let delta = Syncer { directory: directory.as_ref(), store: &data.store, clock: clock.as_ref(), progress: &|_| {} }
        .sync(&integration, SyncMode::Auto)
        .await?;
    let delta_time = started.elapsed();
    let delta_requests = sim.requests().iter().filter(|r| r.is_graph()).count();
    println!("\ndelta sync after {changed} applications changed (1%)");
    println!(
        "  kind {:?}, objects read {}, Graph requests {} (full sync: {}), time {:.2?} ({} of the full sync)",
        delta.kind,
        delta.applications_seen + delta.service_principals_seen,
        delta_requests,
        list_requests,
        delta_time,
        ratio(delta_time, full)
    );
    figures.insert(
        "delta_sync".into(),
        serde_json::json!({
            "changed": changed, "objects_read": delta.applications_seen + delta.service_principals_seen,
            "requests": delta_requests, "seconds": delta_time.as_secs_f64(), "ratio_to_full": ratio_of(delta_time, full),
        }),
    );

    // Expiry scan over many credentials, in a store of their own.
    let store = SqliteStore::open(&dir.path().join("scan.db"), clock.clone())?;
    let queue = SqliteQueue::open(&dir.path().join("scan.db"), default_queue_specs(), clock.clone())?;
    fill(&store, scan_credentials, clock.now()).await?;
    let started = Instant::now();
    let mut read = 0;
    let mut after: Option<CredentialId> = None;
    loop {
        let page = store.credentials_page(after.as_ref(), 1000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        read += page.len();
    }
    let scan_baseline = started.elapsed();
    let sink: Vec<Arc<dyn AlertSink>> = vec![Arc::new(RecordingSink::default())];
    let policies = config.policy_set();
    // The scans' own clock, so that time can move on between them.
    let scan_clock = ManualClock::new(clock.now());
    let scanner = Scanner {
        store: &store,
        queue: &queue,
        clock: &scan_clock,
        policies: &policies,
        sinks: &sink,
        disabled: &Default::default(),
    };
    let started = Instant::now();
    let scan = scanner.scan(None).await?;
    let scan_time = started.elapsed();
    let started = Instant::now();
    let again = scanner.scan(None).await?;
    let rescan_time = started.elapsed();
    // End dates are spread evenly over 400 days and each has three moments (two thresholds and
    // the end), so 32 hours later about 1% have come due.
    scan_clock.advance(Duration::from_secs(32 * 3600));
    let started = Instant::now();
    let due = scanner.scan(None).await?;
    let due_time = started.elapsed();
    let share = |n: usize| 100.0 * n as f64 / read.max(1) as f64;
    println!("\nexpiry scan over {read} credentials");
    println!(
        "  first scan  {:>10.2?}   baseline (read every page) {:.2?}   ratio {}   alerts {}   (full pass: {})",
        scan_time,
        scan_baseline,
        ratio(scan_time, scan_baseline),
        scan.alerts_sent,
        scan.full_pass
    );
    println!(
        "  second scan {:>10.2?}   ratio {}   alerts {} (each is sent once)   credentials read {} ({:.2}%)",
        rescan_time,
        ratio(rescan_time, scan_baseline),
        again.alerts_sent,
        again.credentials,
        share(again.credentials)
    );
    println!(
        "  32 h later  {:>10.2?}   ratio {}   alerts {}   credentials due and read {} ({:.2}%)",
        due_time,
        ratio(due_time, scan_baseline),
        due.alerts_sent,
        due.credentials,
        share(due.credentials)
    );
    figures.insert(
        "expiry_scan".into(),
        serde_json::json!({
            "credentials": read, "baseline_seconds": scan_baseline.as_secs_f64(),
            "first": {"seconds": scan_time.as_secs_f64(), "ratio": ratio_of(scan_time, scan_baseline), "alerts": scan.alerts_sent, "full_pass": scan.full_pass},
            "nothing_due": {"seconds": rescan_time.as_secs_f64(), "ratio": ratio_of(rescan_time, scan_baseline), "credentials_read": again.credentials},
            "some_due": {"seconds": due_time.as_secs_f64(), "ratio": ratio_of(due_time, scan_baseline), "credentials_read": due.credentials, "due_percent": share(due.credentials), "alerts": due.alerts_sent},
        }),
    );
    sim.shutdown().await;
    Ok(())
}

/// `n` password credentials on `n / 2` applications, end dates spread over a year around now.
async fn fill(store: &SqliteStore, n: usize, now: time::OffsetDateTime) -> anyhow::Result<()> {
    let integration = IntegrationId::parse("scan")?;
    let mut batch = Vec::new();
    for i in 0..n.div_ceil(2) {
        let app = Application {
            integration: integration.clone(),
            object_id: AppObjectId::from_uuid(Uuid::new_v4()),
            client_id: ClientId::from_uuid(Uuid::new_v4()),
            display_name: format!("app {i}"),
            sign_in_audience: "AzureADMyOrg".into(),
        };
        let creds = (0..2)
            .map(|k| Credential {
                id: CredentialId::for_application(integration.clone(), app.object_id, KeyId::from_uuid(Uuid::new_v4())),
                kind: CredentialKind::Password,
                app: Some(app.object_id),
                client_id: app.client_id,
                display_name: Some(format!("secret {k}")),
                hint: Some("abc".into()),
                start: Some(now - time::Duration::days(200)),
                end: Some(now + time::Duration::days(((i * 2 + k) % 400) as i64 - 35)),
                thumbprint: None,
                removed_at: None,
            })
            .collect();
        batch.push(OwnerSnapshot {
            owner: Owner::Application(app),
            passwords: Some(creds),
            certificates: Some(vec![]),
        });
        if batch.len() == 500 {
            store.sync_owners(&integration, &batch).await?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        store.sync_owners(&integration, &batch).await?;
    }
    Ok(())
}
