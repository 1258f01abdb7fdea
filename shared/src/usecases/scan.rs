//! expiry-scan: derives each credential's lifecycle state, alerts once per credential, end date and
//! threshold crossed, alerts once per problem (a failed rotation, one that needs attention, a dead
//! letter waiting), and asks for the rotation of credentials whose policy rotates them
//! automatically — once per credential and end date, however often it runs.
//!
//! Alerts leave through an outbox: the log is written at once, every other sink gets one
//! `AlertRequested` message per alert on the queue, so a sink that is down is retried and
//! dead-lettered by the queue and never holds back the rotations the scan requests.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use crate::Result;
use crate::domain::execution::{Execution, ExecutionStatus, Trigger};
use crate::domain::ids::{CredentialId, IntegrationId};
use crate::domain::inventory::{Credential, CredentialKind};
use crate::domain::lifecycle::{AlertThreshold, LifecycleFacts, LifecycleState, crossed_threshold, lifecycle_state};
use crate::domain::policy::PolicySet;
use crate::messages::{Envelope, Message, queues};
use crate::ports::alerts::{Alert, AlertSink, Problem};
use crate::ports::{AlertKey, Clock, Queue, QueueName, Store};
use crate::usecases::app::App;

/// Credentials read per store page.
const PAGE: usize = 1000;

/// Dead letters looked at per queue and scan.
const DEAD_LETTERS: usize = 100;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScanReport {
    /// Credentials looked at: what had come due and those of open executions, or all of them in
    /// a full pass.
    pub credentials: usize,
    /// Every credential was read (the stored moments were not current), not only what was due.
    pub full_pass: bool,
    /// Expiry alerts raised: written to the log and queued for every other sink.
    pub alerts_sent: usize,
    /// Problem alerts raised (rotation failed, needs attention, dead letter waiting).
    pub problems_alerted: usize,
    pub rotations_requested: usize,
}

pub struct Scanner<'a> {
    pub store: &'a dyn Store,
    pub queue: &'a dyn Queue,
    pub clock: &'a dyn Clock,
    pub policies: &'a PolicySet,
    pub sinks: &'a [Arc<dyn AlertSink>],
    /// Integrations disabled in the configuration: no alerts, no rotations.
    pub disabled: &'a BTreeSet<IntegrationId>,
}

/// What one scan carries from page to page.
struct Pass<'p> {
    integration: Option<&'p IntegrationId>,
    open: &'p HashMap<CredentialId, Vec<Execution>>,
    names: &'p mut HashMap<IntegrationId, HashMap<uuid::Uuid, String>>,
    now: OffsetDateTime,
    report: &'p mut ScanReport,
}

/// Bumped whenever what [`next_moment`] computes changes, so stored moments are computed anew.
const MOMENTS_VERSION: u32 = 1;

/// The next instant after `now` at which the scan's decision about `c` can change while no
/// execution touches it: the next alert threshold it crosses, the day its policy makes it due for
/// rotation, its end. `None` when nothing lies ahead (removed, no end date, every moment passed:
/// what was due then was alerted or requested once, and stays so).
pub fn next_moment(c: &Credential, policies: &PolicySet, now: OffsetDateTime) -> Option<OffsetDateTime> {
    if c.removed_at.is_some() {
        return None;
    }
    let end = c.end?;
    let days = |d: u32| time::Duration::days(i64::from(d));
    let mut moments: Vec<OffsetDateTime> =
        policies.thresholds_for(&c.client_id).iter().map(|d| end - days(*d)).collect();
    moments.push(end);
    if let Some(policy) = policies.for_client(&c.client_id)
        && policy.auto_rotate
        && c.kind == CredentialKind::Password
        && c.app.is_some()
    {
        moments.push(end - days(policy.days_before_expiry));
    }
    moments.into_iter().filter(|m| *m > now).min()
}

/// What the stored moments depend on besides each credential: the policies (which client has
/// which, their thresholds, automatic rotation and its lead), the disabled integrations, and how
/// moments are computed. A stable hash (FNV-1a) of their text.
pub fn moments_fingerprint(policies: &PolicySet, disabled: &BTreeSet<IntegrationId>) -> String {
    let mut text = format!("moments v{MOMENTS_VERSION}\n{}", policies.moments_inputs());
    for i in disabled {
        text.push_str(&format!("disabled {i}\n"));
    }
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{hash:016x}")
}

/// The once-only key of an automatic rotation request.
pub fn rotation_request_key(credential: &CredentialId, end: time::OffsetDateTime) -> String {
    format!("rotate-requested:{credential}:{}", end.unix_timestamp())
}

/// How an alert is recorded as raised once it is queued.
enum Once {
    Expiry(AlertKey),
    Marker(String),
}

impl Once {
    fn key(&self) -> String {
        match self {
            Self::Expiry(k) => format!("alert:{}:{}:{}", k.credential, k.end.unix_timestamp(), k.threshold.key()),
            Self::Marker(m) => m.clone(),
        }
    }
}

/// The idempotency key of one alert's message to one sink.
fn outbox_key(sink: &str, once: &Once) -> String {
    format!("{}:to:{sink}", once.key())
}

/// The credential a chain message is about, if it names one.
fn credential_of(message: &Message) -> Option<&CredentialId> {
    match message {
        Message::RotateRequested { credential, .. } | Message::StepRequested { credential, .. } => Some(credential),
        Message::AlertRequested { alert, .. } => Some(&alert.credential),
        Message::SyncRequested { .. } | Message::ScanRequested { .. } | Message::CleanupRequested { .. } => None,
    }
}

/// Delivers an `AlertRequested` message: the alert to the sink it names. A failure fails the
/// message, so the queue retries it and, in the end, dead-letters it with the sink's answer.
pub async fn deliver(sinks: &[Arc<dyn AlertSink>], alert: &Alert, sink: &str) -> Result<()> {
    let Some(target) = sinks.iter().find(|s| s.name() == sink) else {
        return Err(crate::Error::invalid("alert", format!("no alert sink named {sink} is configured")));
    };
    target.send(std::slice::from_ref(alert)).await
}

/// Raises one problem alert about `credential` outside a scan (grace cleanup does), once per the
/// problem's marker, as the scan raises its own. Whether it was new.
pub async fn raise_problem(app: &App, credential: &CredentialId, problem: Problem) -> Result<bool> {
    let marker = problem.marker();
    if app.store.marked(std::slice::from_ref(&marker)).await?.first().copied().unwrap_or(false) {
        return Ok(false);
    }
    let Some(c) = app.store.get_credential(credential).await? else { return Ok(false) };
    let scanner = Scanner {
        store: app.store.as_ref(),
        queue: app.queue.as_ref(),
        clock: app.clock.as_ref(),
        policies: &app.policies,
        sinks: &app.sinks,
        disabled: &app.disabled,
    };
    let now = app.clock.now();
    let threshold = c.end.and_then(|end| crossed_threshold(end, now, app.policies.thresholds_for(&c.client_id)));
    let alert = scanner.alert(&mut HashMap::new(), &c, threshold, Some(problem), now).await?;
    scanner.raise(vec![(alert, Once::Marker(marker))], None, now).await?;
    Ok(true)
}

impl Scanner<'_> {
    /// Looks at what has come due: the credentials the due index lists at `now`, and those of
    /// open executions (whose state can change without a date passing). A full pass over every
    /// credential instead when the stored moments were computed from other policies, thresholds
    /// or disabled integrations than these (or never): then each one's moment is computed anew.
    #[tracing::instrument(skip_all, fields(integration = ?integration.map(|i| i.to_string())))]
    pub async fn scan(&self, integration: Option<&IntegrationId>) -> Result<ScanReport> {
        let fingerprint = moments_fingerprint(self.policies, self.disabled);
        let current = self.store.scan_fingerprint().await?.is_some_and(|f| f == fingerprint);
        self.run(integration, !current, &fingerprint).await
    }

    /// Reads every credential, whatever the due index says: what `scan` falls back to, and the
    /// reference the due index is tested against.
    pub async fn scan_everything(&self, integration: Option<&IntegrationId>) -> Result<ScanReport> {
        let fingerprint = moments_fingerprint(self.policies, self.disabled);
        self.run(integration, true, &fingerprint).await
    }

    async fn run(&self, integration: Option<&IntegrationId>, full: bool, fingerprint: &str) -> Result<ScanReport> {
        let now = self.clock.now();
        let mut open: HashMap<CredentialId, Vec<Execution>> = HashMap::new();
        for e in self.store.list_open_executions().await? {
            open.entry(e.credential.clone()).or_default().push(e);
        }
        let mut names: HashMap<IntegrationId, HashMap<uuid::Uuid, String>> = HashMap::new();
        let mut report = ScanReport { full_pass: full, ..ScanReport::default() };
        let mut pass = Pass { integration, open: &open, names: &mut names, now, report: &mut report };
        if full {
            let mut after: Option<CredentialId> = None;
            loop {
                let page = self.store.credentials_page(after.as_ref(), PAGE).await?;
                let Some(last) = page.last() else { break };
                after = Some(last.id.clone());
                self.decide(&mut pass, page).await?;
            }
            // Only a pass that computed every credential's moment makes the stored ones current.
            if integration.is_none() {
                self.store.put_scan_fingerprint(fingerprint).await?;
            }
        } else {
            // Credentials with open executions first (there are few), then what the index lists.
            let mut held: Vec<&CredentialId> = open.keys().collect();
            held.sort();
            for ids in held.chunks(PAGE) {
                let mut page = Vec::with_capacity(ids.len());
                for id in ids {
                    page.extend(self.store.get_credential(id).await?);
                }
                self.decide(&mut pass, page).await?;
            }
            let mut after = None;
            loop {
                let due = self.store.due_credentials(now, after.as_ref(), PAGE).await?;
                let Some(last) = due.last() else { break };
                after = Some(last.position());
                let page = due.into_iter().map(|d| d.credential).filter(|c| !open.contains_key(&c.id)).collect();
                self.decide(&mut pass, page).await?;
            }
        }
        report.problems_alerted += self.dead_letters(&mut names, now).await?;
        tracing::info!(
            credentials = report.credentials,
            full_pass = report.full_pass,
            alerts = report.alerts_sent,
            problems = report.problems_alerted,
            rotations = report.rotations_requested,
            "expiry scan done"
        );
        Ok(report)
    }

    /// Decides about one page of credentials: alerts, problems, rotation requests; then stores
    /// each one's next moment of interest, once what it called for is queued and recorded (a crash
    /// before leaves it due, so it is looked at again, never skipped).
    async fn decide(&self, pass: &mut Pass<'_>, page: Vec<Credential>) -> Result<()> {
        let (open, now) = (pass.open, pass.now);
        let page: Vec<Credential> =
            page.into_iter().filter(|c| pass.integration.is_none_or(|i| &c.id.integration == i)).collect();
        let mut moments = Vec::with_capacity(page.len());
        // A disabled integration is neither alerted nor rotated; its credentials wait unindexed,
        // since enabling it again changes the fingerprint and so brings a full pass.
        let (disabled, page): (Vec<Credential>, Vec<Credential>) =
            page.into_iter().partition(|c| self.disabled.contains(&c.id.integration));
        moments.extend(disabled.into_iter().filter(|c| !open.contains_key(&c.id)).map(|c| (c, None)));
        pass.report.credentials += page.len();
        let names = &mut *pass.names;
        let report = &mut *pass.report;
        let mut alerts = Vec::new();
        let mut problems = Vec::new();
        let mut rotations = Vec::new();
        for c in &page {
            let thresholds = self.policies.thresholds_for(&c.client_id);
            let within = thresholds.iter().copied().max().unwrap_or(30);
            let execs = open.get(&c.id).map(Vec::as_slice).unwrap_or(&[]);
            let state = lifecycle_state(&LifecycleFacts::of(c, execs, within), now);
            // A failed rotation left the old secret in use: it is watched as if none had run.
            let watched = matches!(
                state,
                LifecycleState::Active
                    | LifecycleState::ExpiringSoon
                    | LifecycleState::Expired
                    | LifecycleState::RotationFailed
            );
            if c.removed_at.is_none() {
                for e in execs.iter().filter(|e| e.credential == c.id) {
                    let problem = match e.status {
                        ExecutionStatus::Failed => Problem::RotationFailed {
                            execution: e.id,
                            reason: e.error.clone().unwrap_or_else(|| "no reason was recorded".into()),
                        },
                        ExecutionStatus::NeedsAttention => Problem::NeedsAttention { execution: e.id },
                        _ => continue,
                    };
                    problems.push((problem, c));
                }
            }
            if let (true, Some(end)) = (watched, c.end) {
                if let Some(threshold) = crossed_threshold(end, now, thresholds) {
                    alerts.push((AlertKey { credential: c.id.clone(), end, threshold }, c));
                }
                let policy = self.policies.for_client(&c.client_id);
                // Only an application's own client secrets are rotated; a service principal's
                // passwords are watched. A failed rotation waits for its operator.
                if let (Some(policy), Some(app)) = (policy, c.app)
                    && state != LifecycleState::RotationFailed
                    && c.kind == CredentialKind::Password
                    && policy.rotation_due(c, now)
                {
                    rotations.push((rotation_request_key(&c.id, end), c, app, policy.days_before_expiry));
                }
            }
        }

        if !alerts.is_empty() {
            let keys: Vec<AlertKey> = alerts.iter().map(|(k, _)| k.clone()).collect();
            let recorded = self.store.alerts_recorded(&keys).await?;
            let mut raised = Vec::new();
            for ((key, c), done) in alerts.into_iter().zip(recorded) {
                if !done {
                    let alert = self.alert(names, c, Some(key.threshold), None, now).await?;
                    raised.push((alert, Once::Expiry(key)));
                }
            }
            report.alerts_sent += self.raise(raised, None, now).await?;
        }

        if !problems.is_empty() {
            let keys: Vec<String> = problems.iter().map(|(p, _)| p.marker()).collect();
            let marked = self.store.marked(&keys).await?;
            let mut raised = Vec::new();
            for ((problem, c), done) in problems.into_iter().zip(marked) {
                if !done {
                    let threshold =
                        c.end.and_then(|end| crossed_threshold(end, now, self.policies.thresholds_for(&c.client_id)));
                    let marker = problem.marker();
                    let alert = self.alert(names, c, threshold, Some(problem), now).await?;
                    raised.push((alert, Once::Marker(marker)));
                }
            }
            report.problems_alerted += self.raise(raised, None, now).await?;
        }

        if !rotations.is_empty() {
            let keys: Vec<String> = rotations.iter().map(|(k, ..)| k.clone()).collect();
            let marked = self.store.marked(&keys).await?;
            let (mut sent, mut outgoing) = (Vec::new(), Vec::new());
            for ((key, c, app, days), done) in rotations.into_iter().zip(marked) {
                if done {
                    continue;
                }
                let message = Message::RotateRequested {
                    credential: c.id.clone(),
                    app,
                    trigger: Trigger::Automatic {
                        reason: format!(
                            "expires {} (rotation {days} days before expiry)",
                            c.end.map(|e| e.date().to_string()).unwrap_or_default()
                        ),
                    },
                    dry_run: false,
                    execution: None,
                };
                // The key is also the queue's deduplication id; sent before marked, so a crash in
                // between asks twice, which the rotate handler's claim absorbs.
                outgoing.push(message.envelope(key.clone()).to_outgoing(Duration::ZERO)?);
                sent.push(key);
            }
            if !sent.is_empty() {
                // The page's rotations in as few sends as the queue allows (SQS: ten a call).
                self.queue.send_batch(&QueueName::new(queues::ROTATE), outgoing).await?;
                self.store.mark(&sent, now).await?;
                report.rotations_requested += sent.len();
            }
        }

        // A credential an open execution touches is looked at every scan anyway, and its state
        // can change (a cancel, a failure) without a date passing: its moment stays as it is.
        moments.extend(
            page.iter().filter(|c| !open.contains_key(&c.id)).map(|c| (c.clone(), next_moment(c, self.policies, now))),
        );
        if !moments.is_empty() {
            self.store.set_next_moments(&moments).await?;
        }
        Ok(())
    }

    /// The alert of `c`, with its application's name.
    async fn alert(
        &self,
        names: &mut HashMap<IntegrationId, HashMap<uuid::Uuid, String>>,
        c: &Credential,
        threshold: Option<AlertThreshold>,
        problem: Option<Problem>,
        now: OffsetDateTime,
    ) -> Result<Alert> {
        if !names.contains_key(&c.id.integration) {
            let apps = self.store.list_applications(&c.id.integration).await?;
            names.insert(
                c.id.integration.clone(),
                apps.into_iter().map(|a| (a.object_id.as_uuid(), a.display_name)).collect(),
            );
        }
        let app_names = names.get(&c.id.integration);
        Ok(Alert {
            credential: c.id.clone(),
            application: c.app.and_then(|a| app_names.and_then(|n| n.get(&a.as_uuid())).cloned()),
            client_id: c.client_id,
            kind: c.kind,
            credential_name: c.display_name.clone(),
            threshold,
            end: c.end,
            days_left: c.end.map(|end| (end - now).whole_days()),
            problem,
        })
    }

    /// Writes the alerts to the in-place sinks (the log) and queues one message per alert for every
    /// other sink (but `skip`), then records them as raised: a crash in between queues them again
    /// under the same idempotency keys, rather than never. Returns how many were raised.
    async fn raise(&self, raised: Vec<(Alert, Once)>, skip: Option<&str>, now: OffsetDateTime) -> Result<usize> {
        if raised.is_empty() {
            return Ok(0);
        }
        let alerts: Vec<Alert> = raised.iter().map(|(a, _)| a.clone()).collect();
        for sink in self.sinks.iter().filter(|s| s.in_place()) {
            if let Err(e) = sink.send(&alerts).await {
                tracing::error!(sink = sink.name(), error = %e.chain(), "alert sink failed");
            }
        }
        for sink in self.sinks.iter().filter(|s| !s.in_place() && Some(s.name()) != skip) {
            // One batch per sink and page: on the embedded queue one transaction, not one each.
            let mut batch = Vec::with_capacity(raised.len());
            for (alert, once) in &raised {
                let message = Message::AlertRequested { alert: Box::new(alert.clone()), sink: sink.name().to_owned() };
                batch.push(message.envelope(outbox_key(sink.name(), once)));
            }
            if let Some(first) = batch.first() {
                let queue = first.message.queue();
                let outgoing = batch.iter().map(|e| e.to_outgoing(Duration::ZERO)).collect::<Result<Vec<_>>>()?;
                self.queue.send_batch(&queue, outgoing).await?;
            }
        }
        let mut expiry = Vec::new();
        let mut markers = Vec::new();
        for (_, once) in raised {
            match once {
                Once::Expiry(k) => expiry.push(k),
                Once::Marker(m) => markers.push(m),
            }
        }
        if !expiry.is_empty() {
            self.store.record_alerts(&expiry, now).await?;
        }
        if !markers.is_empty() {
            self.store.mark(&markers, now).await?;
        }
        Ok(alerts.len())
    }

    /// One alert per new dead letter (the embedded runtime's equivalent of the AWS dead-letter
    /// alarm, and on AWS a per-credential word beside it): always in the log; to the sinks when the
    /// message names a credential still in the inventory, except to a sink whose own alert it is,
    /// so a sink that is down does not feed dead letters back to itself.
    async fn dead_letters(
        &self,
        names: &mut HashMap<IntegrationId, HashMap<uuid::Uuid, String>>,
        now: OffsetDateTime,
    ) -> Result<usize> {
        let mut raised = 0;
        for queue in queues::ALL {
            let dead = self.queue.dead_letters(&QueueName::new(queue), DEAD_LETTERS).await?;
            if dead.is_empty() {
                continue;
            }
            let problems: Vec<Problem> = dead
                .iter()
                .map(|d| Problem::DeadLetter {
                    queue: queue.to_owned(),
                    message: d.id.to_string(),
                    error: d.last_error.clone(),
                })
                .collect();
            let keys: Vec<String> = problems.iter().map(Problem::marker).collect();
            let marked = self.store.marked(&keys).await?;
            for ((d, problem), done) in dead.iter().zip(problems).zip(marked) {
                if done {
                    continue;
                }
                let envelope = Envelope::parse(&d.body).ok();
                let message = envelope.as_ref().map(|e| &e.message);
                let credential = match message.and_then(credential_of) {
                    Some(id) => self.store.get_credential(id).await?,
                    None => None,
                };
                let marker = problem.marker();
                let Some(c) = credential.filter(|c| !self.disabled.contains(&c.id.integration)) else {
                    tracing::error!(
                        queue,
                        message = %d.id,
                        receive_count = d.receive_count,
                        error = d.last_error.as_deref().unwrap_or("none recorded"),
                        "a dead letter is waiting"
                    );
                    self.store.mark(&[marker], now).await?;
                    raised += 1;
                    continue;
                };
                let skip = match message {
                    Some(Message::AlertRequested { sink, .. }) => Some(sink.as_str()),
                    _ => None,
                };
                let threshold =
                    c.end.and_then(|end| crossed_threshold(end, now, self.policies.thresholds_for(&c.client_id)));
                let alert = self.alert(names, &c, threshold, Some(problem), now).await?;
                raised += self.raise(vec![(alert, Once::Marker(marker))], skip, now).await?;
            }
        }
        Ok(raised)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use time::macros::datetime;
    use time::{Duration as TimeDuration, OffsetDateTime};

    use super::*;
    use crate::adapters::sqlite::{SqliteQueue, SqliteStore};
    use crate::domain::execution::ExecutionStatus;
    use crate::domain::ids::PolicyId;
    use crate::domain::lifecycle::AlertThreshold;
    use crate::domain::policy::RotationPolicy;
    use crate::messages::{Envelope, default_queue_specs, queues};
    use crate::ports::QueueName;
    use crate::testing::fakes::ManualClock;
    use crate::testing::fakes::RecordingSink;

    const START: OffsetDateTime = datetime!(2026-11-22 12:00 UTC);

    struct World {
        clock: ManualClock,
        store: SqliteStore,
        queue: SqliteQueue,
        sink: Arc<RecordingSink>,
        policies: PolicySet,
    }

    impl World {
        fn new(auto_rotate: bool) -> Self {
            let clock = ManualClock::new(START);
            let policy =
                RotationPolicy { auto_rotate, ..RotationPolicy::with_defaults(PolicyId::parse("default").unwrap()) };
            Self {
                store: SqliteStore::in_memory(Arc::new(clock.clone())).unwrap(),
                queue: SqliteQueue::in_memory(default_queue_specs(), Arc::new(clock.clone())).unwrap(),
                clock,
                sink: Arc::new(RecordingSink::default()),
                policies: PolicySet::new(vec![(policy, vec![])]),
            }
        }
        /// Scans, then delivers what the scan queued for the sinks, as the scan handler would.
        async fn scan(&self) -> ScanReport {
            let sinks: Vec<Arc<dyn AlertSink>> = vec![self.sink.clone()];
            let report = self.scan_with(&sinks).await.unwrap();
            self.deliver(&sinks).await;
            report
        }
        async fn scan_with(&self, sinks: &[Arc<dyn AlertSink>]) -> Result<ScanReport> {
            let disabled = BTreeSet::new();
            Scanner {
                store: &self.store,
                queue: &self.queue,
                clock: &self.clock,
                policies: &self.policies,
                sinks,
                disabled: &disabled,
            }
            .scan(None)
            .await
        }
        /// Delivers every queued alert once; returns how many deliveries failed (left on the queue).
        async fn deliver(&self, sinks: &[Arc<dyn AlertSink>]) -> usize {
            let q = QueueName::new(queues::SCAN);
            let mut failed = 0;
            for m in self.queue.receive(&q, 10, None).await.unwrap() {
                let Message::AlertRequested { alert, sink } = Envelope::parse(&m.body).unwrap().message else {
                    continue;
                };
                match deliver(sinks, &alert, &sink).await {
                    Ok(()) => self.queue.delete(&q, &m.receipt).await.unwrap(),
                    Err(_) => failed += 1,
                }
            }
            failed
        }
        fn thresholds_sent(&self) -> Vec<AlertThreshold> {
            self.sink.0.lock().unwrap().iter().filter_map(|a| a.threshold).collect()
        }
        async fn rotate_requests(&self) -> Vec<Envelope> {
            let q = QueueName::new(queues::ROTATE);
            let got = self.queue.receive(&q, 10, None).await.unwrap();
            for m in &got {
                self.queue.delete(&q, &m.receipt).await.unwrap();
            }
            got.iter().map(|m| Envelope::parse(&m.body).unwrap()).collect()
        }
    }

    #[tokio::test]
    async fn alerts_are_sent_once_per_threshold_not_once_per_scan() {
        let w = World::new(false);
        let c = Credential::test_password(START + TimeDuration::days(20));
        w.store.put_credential(&c).await.unwrap();
        assert_eq!(w.scan().await.alerts_sent, 1);
        assert_eq!(w.scan().await.alerts_sent, 0);
        assert_eq!(w.thresholds_sent(), vec![AlertThreshold::DaysBefore(30)]);
        w.clock.advance(std::time::Duration::from_secs(14 * 86_400));
        w.scan().await;
        w.scan().await;
        w.clock.advance(std::time::Duration::from_secs(7 * 86_400));
        w.scan().await;
        w.scan().await;
        assert_eq!(
            w.thresholds_sent(),
            vec![AlertThreshold::DaysBefore(30), AlertThreshold::DaysBefore(7), AlertThreshold::Expired]
        );
        let alert = w.sink.0.lock().unwrap()[1].clone();
        assert!(alert.summary().contains("expires in 6 days"), "{}", alert.summary());
    }

    #[tokio::test]
    async fn a_credential_first_seen_close_to_expiry_gets_the_most_severe_alert_only() {
        let w = World::new(false);
        w.store.put_credential(&Credential::test_password(START + TimeDuration::days(3))).await.unwrap();
        w.scan().await;
        w.scan().await;
        assert_eq!(w.thresholds_sent(), vec![AlertThreshold::DaysBefore(7)]);
    }

    #[tokio::test]
    async fn due_rotations_are_requested_once_per_credential_and_end_date() {
        let w = World::new(true);
        let due = Credential::test_password(START + TimeDuration::days(10));
        let not_due = Credential::test_password(START + TimeDuration::days(100));
        w.store.put_credential(&due).await.unwrap();
        w.store.put_credential(&not_due).await.unwrap();
        assert_eq!(w.scan().await.rotations_requested, 1);
        assert_eq!(w.scan().await.rotations_requested, 0);
        let requests = w.rotate_requests().await;
        assert_eq!(requests.len(), 1);
        assert!(matches!(
            &requests[0].message,
            Message::RotateRequested { credential, trigger: Trigger::Automatic { .. }, dry_run: false, .. } if *credential == due.id
        ));
        // A renewed end date (say the secret was extended by hand) is a new reason to rotate.
        let mut renewed = due.clone();
        renewed.end = Some(START + TimeDuration::days(12));
        w.store.put_credential(&renewed).await.unwrap();
        assert_eq!(w.scan().await.rotations_requested, 1);
    }

    #[tokio::test]
    async fn manual_policies_alert_but_never_request_rotation() {
        let w = World::new(false);
        w.store.put_credential(&Credential::test_password(START + TimeDuration::days(10))).await.unwrap();
        let report = w.scan().await;
        assert_eq!((report.alerts_sent, report.rotations_requested), (1, 0));
        assert!(w.rotate_requests().await.is_empty());
    }

    #[tokio::test]
    async fn rotating_and_superseded_credentials_are_not_alerted_or_requested_again() {
        let w = World::new(true);
        let rotating = Credential::test_password(START + TimeDuration::days(10));
        let superseded = Credential::test_password(START + TimeDuration::days(10));
        for c in [&rotating, &superseded] {
            w.store.put_credential(c).await.unwrap();
        }
        let mut e = Execution::new(
            rotating.id.clone(),
            rotating.app.unwrap(),
            PolicyId::parse("default").unwrap(),
            Trigger::Manual { by: "ops".into(), reason: None },
            vec![],
            START,
        );
        e.status = ExecutionStatus::Running;
        w.store.create_execution(&e).await.unwrap();
        let mut done = Execution::new(
            superseded.id.clone(),
            superseded.app.unwrap(),
            PolicyId::parse("default").unwrap(),
            Trigger::Manual { by: "ops".into(), reason: None },
            vec![],
            START,
        );
        done.status = ExecutionStatus::Completed;
        done.grace_until = Some(START + TimeDuration::days(30));
        w.store.create_execution(&done).await.unwrap();
        let report = w.scan().await;
        assert_eq!((report.alerts_sent, report.rotations_requested), (0, 0));
    }

    #[tokio::test]
    async fn service_principal_passwords_are_watched_not_rotated() {
        let w = World::new(true);
        let mut c = Credential::test_password(START + TimeDuration::days(10));
        c.id.owner_kind = crate::domain::ids::OwnerKind::ServicePrincipal;
        c.app = None;
        w.store.put_credential(&c).await.unwrap();
        let report = w.scan().await;
        assert_eq!((report.alerts_sent, report.rotations_requested), (1, 0));
    }

    struct Down;
    #[async_trait::async_trait]
    impl AlertSink for Down {
        fn name(&self) -> &str {
            "down"
        }
        async fn send(&self, _: &[Alert]) -> Result<()> {
            Err(crate::Error::invalid("webhook", "503"))
        }
    }

    #[tokio::test]
    async fn a_down_sink_never_holds_back_the_scan_or_another_sink() {
        let w = World::new(true);
        w.store.put_credential(&Credential::test_password(START + TimeDuration::days(10))).await.unwrap();
        let sinks: Vec<Arc<dyn AlertSink>> = vec![Arc::new(Down), w.sink.clone()];
        let report = w.scan_with(&sinks).await.unwrap();
        assert_eq!((report.alerts_sent, report.rotations_requested), (1, 1), "the due rotation was requested");
        assert_eq!(w.deliver(&sinks).await, 1, "the down sink's alert failed and waits on the queue");
        assert_eq!(w.thresholds_sent(), vec![AlertThreshold::DaysBefore(30)], "the other sink got it");
        assert_eq!(w.scan_with(&sinks).await.unwrap().alerts_sent, 0, "recorded once queued, not raised again");
    }

    #[tokio::test]
    async fn a_failed_rotation_keeps_its_expiry_alerts_and_gets_its_own_once() {
        let w = World::new(true);
        let c = Credential::test_password(START + TimeDuration::days(10));
        w.store.put_credential(&c).await.unwrap();
        let mut e = Execution::new(
            c.id.clone(),
            c.app.unwrap(),
            PolicyId::parse("default").unwrap(),
            Trigger::Manual { by: "ops".into(), reason: None },
            vec![],
            START,
        );
        // Failed with a new secret in Entra: it holds the credential until a redrive or a cancel.
        e.status = ExecutionStatus::Failed;
        e.new_key_id = Some(crate::domain::ids::KeyId::from_uuid(uuid::Uuid::new_v4()));
        e.error = Some("Webhook ops answered 503".into());
        w.store.create_execution(&e).await.unwrap();
        let report = w.scan().await;
        assert_eq!((report.alerts_sent, report.problems_alerted, report.rotations_requested), (1, 1, 0));
        w.scan().await;
        let sent = w.sink.0.lock().unwrap().clone();
        assert_eq!(sent.len(), 2, "{sent:?}");
        let failed = sent.iter().find(|a| a.problem.is_some()).unwrap();
        assert!(matches!(&failed.problem, Some(Problem::RotationFailed { execution, .. }) if *execution == e.id));
        assert!(failed.summary().contains("failed") && failed.summary().contains("503"), "{}", failed.summary());
        assert!(sent.iter().any(|a| a.problem.is_none() && a.threshold == Some(AlertThreshold::DaysBefore(30))));
    }

    #[tokio::test]
    async fn a_rollout_that_needs_attention_is_alerted_once() {
        let w = World::new(false);
        let c = Credential::test_password(START + TimeDuration::days(10));
        w.store.put_credential(&c).await.unwrap();
        let mut e = Execution::new(
            c.id.clone(),
            c.app.unwrap(),
            PolicyId::parse("default").unwrap(),
            Trigger::Manual { by: "ops".into(), reason: None },
            vec![],
            START,
        );
        e.status = ExecutionStatus::NeedsAttention;
        e.needs_attention = true;
        e.grace_until = Some(START + TimeDuration::days(30));
        w.store.create_execution(&e).await.unwrap();
        assert_eq!(w.scan().await.problems_alerted, 1);
        assert_eq!(w.scan().await.problems_alerted, 0);
        let sent = w.sink.0.lock().unwrap().clone();
        assert_eq!(sent.len(), 1, "superseded, so no expiry alert; the problem once: {sent:?}");
        assert!(matches!(&sent[0].problem, Some(Problem::NeedsAttention { execution }) if *execution == e.id));
        assert!(sent[0].summary().contains("needs attention"), "{}", sent[0].summary());
    }

    #[tokio::test]
    async fn a_disabled_integration_is_neither_alerted_nor_rotated() {
        let w = World::new(true);
        let c = Credential::test_password(START + TimeDuration::days(10));
        w.store.put_credential(&c).await.unwrap();
        let disabled: BTreeSet<IntegrationId> = [c.id.integration.clone()].into();
        let sinks: Vec<Arc<dyn AlertSink>> = vec![w.sink.clone()];
        let report = Scanner {
            store: &w.store,
            queue: &w.queue,
            clock: &w.clock,
            policies: &w.policies,
            sinks: &sinks,
            disabled: &disabled,
        }
        .scan(None)
        .await
        .unwrap();
        assert_eq!((report.alerts_sent, report.rotations_requested), (0, 0));
    }
}
