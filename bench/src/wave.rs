//! The rotation benchmark: a wave of due rotations on the embedded runtime, as `rotator serve`
//! runs it (SQLite store and queue in files, the key file, the chain's workers with their default
//! concurrency), against a simulated tenant with a realistic round trip on every call and Graph's
//! write limits on.
//!
//! - **The wave**: `n` applications with one secret each, all due; one expiry scan starts them all;
//!   each rotation adds a secret and runs a two-step rollout (a health check and a signed webhook
//!   at the sim's targets). Figures: total time against the lower bound the sim's latency and
//!   limits allow, the requests and writes, the 429s received, the most writers one application
//!   ever had, how many calls were in flight on average, and peak memory.
//! - **The same wave under a tight write budget** (a quarter of the wave per window), so that
//!   Graph's `Retry-After` paces it: total time against the budget's own lower bound, and how many
//!   writes were answered 429 for each one admitted.
//! - **Per-step overhead**: rotations one at a time (one worker loop, batches of one), each
//!   message's handling time less its calls' round trips, which the sim counts per message: what a
//!   step costs beyond the remote call, and the same under the wave's load.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use entra_rotator::adapters::sealing::key_file::LocalKeyRing;
use entra_rotator::adapters::sqlite::LocalData;
use entra_rotator::adapters::system_clock::SystemClock;
use entra_rotator::config::Config;
use entra_rotator::domain::execution::ExecutionStatus;
use entra_rotator::domain::ids::IntegrationId;
use entra_rotator::inbound::batch::{EnvelopeHandler, MessageHandler};
use entra_rotator::inbound::handlers::{RotateHandler, ScanHandler, StepHandler};
use entra_rotator::inbound::runtime::{EmbeddedRuntime, Worker, WorkerOptions};
use entra_rotator::messages::{Envelope, Message, queues};
use entra_rotator::ports::{Clock, Queue, QueueName, ReceivedMessage, Store};
use entra_rotator::usecases::sync::{SyncMode, Syncer};
use entra_rotator::wiring;
use entra_sim::{GraphLimits, NewApp, Sim, SimOptions, WriteBudget};
use tokio_util::sync::CancellationToken;

use crate::{current_kib, mib, peak_kib, reset_peak};

/// The round trip the sim puts on every call.
pub const LATENCY: Duration = Duration::from_millis(30);

/// What one wave measured.
pub struct WaveFigures {
    pub rotations: usize,
    pub completed: usize,
    pub total: Duration,
    pub requests: usize,
    pub writes: u64,
    pub throttled_writes: u64,
    pub responses_429: usize,
    pub max_concurrent_writers: u32,
    pub latency_bound: Duration,
    pub budget_bound: Duration,
    pub memory_before_kib: Option<u64>,
    pub memory_peak_kib: Option<u64>,
    /// Messages handled per queue, and the time spent in their handlers.
    pub handled: BTreeMap<&'static str, (usize, Duration)>,
}

impl WaveFigures {
    pub fn lower_bound(&self) -> Duration {
        self.latency_bound.max(self.budget_bound)
    }

    /// Calls in flight on average: the round trips served, over the wave's time.
    pub fn calls_in_flight(&self) -> f64 {
        self.requests as f64 * LATENCY.as_secs_f64() / self.total.as_secs_f64().max(1e-9)
    }

    /// The time in the rotate and step handlers beyond the round trips (all of which they make),
    /// per message handled.
    pub fn overhead_per_message(&self) -> Duration {
        let (messages, busy) = self
            .handled
            .iter()
            .filter(|(queue, _)| **queue != queues::SCAN)
            .fold((0, Duration::ZERO), |(n, t), (_, (m, d))| (n + m, t + *d));
        busy.saturating_sub(LATENCY * self.requests as u32) / messages.max(1) as u32
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "rotations": self.rotations, "completed": self.completed,
            "seconds": self.total.as_secs_f64(), "lower_bound_seconds": self.lower_bound().as_secs_f64(),
            "ratio_to_lower_bound": crate::ratio_of(self.total, self.lower_bound()),
            "requests": self.requests, "writes": self.writes, "throttled_writes": self.throttled_writes,
            "responses_429": self.responses_429, "max_concurrent_writers": self.max_concurrent_writers,
            "calls_in_flight": self.calls_in_flight(),
            "overhead_per_message_ms": self.overhead_per_message().as_secs_f64() * 1000.0,
            "memory_growth_kib": self.memory_peak_kib.zip(self.memory_before_kib).map(|(p, b)| p.saturating_sub(b)),
        })
    }
}

/// Per message: its queue, what it was, how long its handler took and how many calls it made.
#[derive(Debug, Clone)]
pub struct Handled {
    pub queue: &'static str,
    pub what: String,
    pub took: Duration,
    pub calls: usize,
}

/// A handler that times each message, and in `serial` runs counts the calls it made (the sim's
/// request count before and after: nothing else runs then).
struct Timed<H> {
    inner: H,
    queue: &'static str,
    sim: Arc<Sim>,
    log: Arc<Mutex<Vec<Handled>>>,
}

#[async_trait]
impl<H: MessageHandler> MessageHandler for Timed<H> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn handle(&self, envelope: Envelope, received: &ReceivedMessage) -> entra_rotator::Result<()> {
        let what = match &envelope.message {
            Message::StepRequested { step, .. } => format!("step {step}"),
            Message::RotateRequested { .. } => "rotate".to_owned(),
            _ => "scan".to_owned(),
        };
        let calls_before = self.sim.request_count();
        let started = Instant::now();
        let outcome = self.inner.handle(envelope, received).await;
        let took = started.elapsed();
        let calls = self.sim.request_count().saturating_sub(calls_before);
        if let Ok(mut log) = self.log.lock() {
            log.push(Handled { queue: self.queue, what, took, calls });
        }
        outcome
    }
}

/// How a wave is run.
pub struct WaveOptions {
    pub rotations: usize,
    pub limits: GraphLimits,
    pub workers: WorkerOptions,
    /// Start the rotations one at a time, each when the one before has completed (for the
    /// per-message figures); otherwise all at once, by one expiry scan.
    pub one_at_a_time: bool,
}

/// Runs one wave in a fresh sim, store and queue; returns its figures and every message handled.
pub async fn run(options: WaveOptions) -> anyhow::Result<(WaveFigures, Vec<Handled>)> {
    let dir = tempfile::tempdir()?;
    let sim = Arc::new(
        Sim::start(SimOptions {
            apps: 0,
            seed: 7,
            // The limits' round trip is the whole of a write's time here.
            write_latency: Duration::ZERO,
            ..Default::default()
        })
        .await?,
    );
    let tenant = sim.tenant();
    let end = sim.now() + time::Duration::days(10);
    for i in 0..options.rotations {
        let app = tenant.add_app(NewApp::named(format!("Wave API {i}")));
        tenant.add_password_to(app.object_id, end)?;
    }
    let config = config(&sim, dir.path())?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let data = LocalData::open(&config.database_path(), clock.clone())?;
    let keys = LocalKeyRing::open_or_create(&config.key_file_path())?;
    let store: Arc<dyn Store> = Arc::new(data.store.clone());
    let queue: Arc<dyn Queue> = Arc::new(data.queue.clone());
    let services = wiring::services(&config, store.clone(), queue.clone(), clock.clone(), Arc::new(keys))?;
    let integration = IntegrationId::parse("wave")?;
    Syncer {
        directory: services.directory(&integration)?.as_ref(),
        store: store.as_ref(),
        clock: clock.as_ref(),
        progress: &|_| {},
    }
    .sync(&integration, SyncMode::Full)
    .await?;
    let credentials = store.list_credentials(Some(&integration)).await?;
    anyhow::ensure!(credentials.len() == options.rotations, "{} credentials synced", credentials.len());

    let log = Arc::new(Mutex::new(Vec::new()));
    let data_queue = queue.clone();
    let timed = |name: &'static str| {
        let (sim, log, app, queue) = (sim.clone(), log.clone(), services.clone(), name);
        let handler: Arc<dyn entra_rotator::inbound::batch::BatchHandler> = match name {
            queues::SCAN => Arc::new(EnvelopeHandler(Timed { inner: ScanHandler(app), queue, sim, log })),
            queues::ROTATE => Arc::new(EnvelopeHandler(Timed { inner: RotateHandler(app), queue, sim, log })),
            _ => Arc::new(EnvelopeHandler(Timed { inner: StepHandler(app), queue, sim, log })),
        };
        Worker::new(data_queue.clone(), QueueName::new(name), handler, options.workers.clone())
    };
    let runtime = EmbeddedRuntime::new()
        .with_worker(timed(queues::SCAN))
        .with_worker(timed(queues::ROTATE))
        .with_worker(timed(queues::STEP));
    let shutdown = CancellationToken::new();

    sim.set_graph_limits(Some(options.limits));
    sim.clear_requests();
    reset_peak();
    let memory_before_kib = current_kib();
    let started = Instant::now();
    let work = tokio::spawn(runtime.run(shutdown.clone()));
    if options.one_at_a_time {
        for c in &credentials {
            let trigger = entra_rotator::domain::execution::Trigger::Manual { by: "bench".into(), reason: None };
            entra_rotator::usecases::rotation::request_rotation(&services, &c.id, trigger, false).await?;
            wait_idle(queue.as_ref(), started, Duration::from_millis(5)).await?;
        }
    } else {
        let scan = Message::ScanRequested { integration: None }.envelope("bench-wave-scan");
        queue.send(&QueueName::new(queues::SCAN), scan.to_outgoing(Duration::ZERO)?).await?;
    }
    wait_idle(queue.as_ref(), started, Duration::from_millis(20)).await?;
    let total = started.elapsed();
    let memory_peak_kib = peak_kib();
    shutdown.cancel();
    work.await.context("the runtime")?;

    let mut completed = 0;
    for c in &credentials {
        let runs = store.list_executions(&c.id).await?;
        completed += usize::from(runs.iter().any(|e| e.status == ExecutionStatus::Completed));
    }
    let records = sim.requests();
    let pace = sim.graph_pace();
    let requests = records.len();
    // One rotation's calls, one after the other, is as fast as the sim can serve a rotation; the
    // write budgets allow at most `writes` per window.
    let latency_bound = LATENCY * (requests / options.rotations.max(1)) as u32;
    let windows = |budget: WriteBudget| {
        budget.window * (pace.writes.div_ceil(u64::from(budget.writes.max(1))).saturating_sub(1)) as u32
    };
    let budget_bound = windows(options.limits.app_tenant_writes).max(windows(options.limits.tenant_writes));
    let handled_log = log.lock().map_err(|_| anyhow::anyhow!("timing log poisoned"))?.clone();
    let mut handled = BTreeMap::new();
    for h in &handled_log {
        let e: &mut (usize, Duration) = handled.entry(h.queue).or_default();
        e.0 += 1;
        e.1 += h.took;
    }
    let figures = WaveFigures {
        rotations: options.rotations,
        completed,
        total,
        requests,
        writes: pace.writes,
        throttled_writes: pace.throttled,
        responses_429: records.iter().filter(|r| r.status == 429).count(),
        max_concurrent_writers: pace.max_concurrent_writers,
        latency_bound,
        budget_bound,
        memory_before_kib,
        memory_peak_kib,
        handled,
    };
    // The workers are gone with the runtime, and their handlers' clones of the sim with them.
    if let Ok(sim) = Arc::try_unwrap(sim) {
        sim.shutdown().await;
    }
    Ok((figures, handled_log))
}

/// Waits until the scan, rotate and step queues hold nothing visible, delayed or in flight.
async fn wait_idle(queue: &dyn Queue, started: Instant, poll: Duration) -> anyhow::Result<()> {
    loop {
        let mut pending = 0;
        for q in [queues::SCAN, queues::ROTATE, queues::STEP] {
            let d = queue.depth(&QueueName::new(q)).await?;
            pending += d.visible + d.delayed + d.in_flight;
        }
        if pending == 0 {
            return Ok(());
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(1800), "the wave did not settle in 30 minutes");
        tokio::time::sleep(poll).await;
    }
}

/// The configuration `rotator serve` would load: one integration, one auto-rotating policy whose
/// rollout is a health check and a signed webhook at the sim's targets.
fn config(sim: &Sim, dir: &Path) -> anyhow::Result<Config> {
    let base = sim.target_url("/");
    let text = format!(
        "data_dir = \"data\"\n\
         [integrations.wave]\ntenant_id = \"{tenant}\"\nclient_id = \"{client}\"\nauth = \"client_secret\"\n\
         authority_host = \"{authority}\"\ngraph_base_url = \"{graph}\"\nca_certificate = \"{ca}\"\n\
         [outbound]\nallow = [\"127.0.0.1\"]\n\
         [policies.default]\nauto_rotate = true\ngrace_period = \"1d\"\ndelivery = \"manual\"\n\
         [[policies.default.steps]]\ntype = \"http_health_check\"\norder = 10\non_failure = \"abort\"\n\
         config = {{ url = \"{base}apps/payroll/health\", timeout = \"5s\", interval = \"1s\" }}\n\
         [[policies.default.steps]]\ntype = \"webhook\"\norder = 20\non_failure = \"abort\"\n\
         config = {{ url = \"{base}hooks/ops\" }}\n",
        tenant = sim.tenant_id(),
        client = sim.management_client_id(),
        authority = sim.authority_host(),
        graph = sim.graph_base_url(),
        ca = sim.ca_path().display(),
    );
    let env = BTreeMap::from([("ROTATOR_WAVE_CLIENT_SECRET".to_owned(), sim.management_secret())]);
    Ok(Config::parse(&text, &dir.join("rotator.toml"), &env)?)
}

/// Prints one wave's figures.
pub fn print(title: &str, f: &WaveFigures) {
    println!("\n{title}");
    println!(
        "  time                 {:>10.2?}   lower bound {:.2?} ({})   ratio {}   completed {} of {}",
        f.total,
        f.lower_bound(),
        if f.budget_bound > f.latency_bound { "the write budget's windows" } else { "one rotation's calls in a row" },
        crate::ratio(f.total, f.lower_bound()),
        f.completed,
        f.rotations
    );
    println!(
        "  calls                {:>10}   ({:.1} per rotation, {:.1} in flight on average)   writes {}",
        f.requests,
        f.requests as f64 / f.rotations.max(1) as f64,
        f.calls_in_flight(),
        f.writes
    );
    println!(
        "  429s received        {:>10}   ({} writes over a budget; {:.2} per write admitted)   most writers on one application {}",
        f.responses_429,
        f.throttled_writes,
        f.throttled_writes as f64 / f.writes.max(1) as f64,
        f.max_concurrent_writers
    );
    println!(
        "  handler time beyond the calls, per message {:.1?}   memory peak {} over a resident {} (growth {})",
        f.overhead_per_message(),
        mib(f.memory_peak_kib),
        mib(f.memory_before_kib),
        mib(f.memory_peak_kib.zip(f.memory_before_kib).map(|(p, b)| p.saturating_sub(b)))
    );
}

/// Per kind of message of a serial run: how many, mean handling time, mean calls, and the mean
/// time beyond the calls' round trips.
pub fn per_message(log: &[Handled]) -> Vec<(String, usize, Duration, f64, Duration)> {
    let mut by: BTreeMap<String, Vec<&Handled>> = BTreeMap::new();
    for h in log.iter().filter(|h| h.queue != queues::SCAN) {
        by.entry(h.what.clone()).or_default().push(h);
    }
    by.into_iter()
        .map(|(what, hs)| {
            let n = hs.len().max(1) as u32;
            let took: Duration = hs.iter().map(|h| h.took).sum();
            let calls: usize = hs.iter().map(|h| h.calls).sum();
            let beyond: Duration = hs.iter().map(|h| h.took.saturating_sub(LATENCY * h.calls as u32)).sum();
            (what, hs.len(), took / n, calls as f64 / f64::from(n), beyond / n)
        })
        .collect()
}
