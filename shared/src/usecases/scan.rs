//! expiry-scan: derives each credential's lifecycle state, alerts once per credential, end date and
//! threshold crossed, and asks for the rotation of credentials whose policy rotates them
//! automatically — once per credential and end date, however often it runs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::Result;
use crate::domain::execution::{Execution, Trigger};
use crate::domain::ids::{CredentialId, IntegrationId};
use crate::domain::inventory::{Credential, CredentialKind};
use crate::domain::lifecycle::{LifecycleFacts, LifecycleState, crossed_threshold, lifecycle_state};
use crate::domain::policy::PolicySet;
use crate::messages::Message;
use crate::ports::alerts::{Alert, AlertSink};
use crate::ports::{AlertKey, Clock, Queue, Store};

/// Credentials read per store page.
const PAGE: usize = 1000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScanReport {
    pub credentials: usize,
    pub alerts_sent: usize,
    pub rotations_requested: usize,
}

pub struct Scanner<'a> {
    pub store: &'a dyn Store,
    pub queue: &'a dyn Queue,
    pub clock: &'a dyn Clock,
    pub policies: &'a PolicySet,
    pub sinks: &'a [Arc<dyn AlertSink>],
}

/// The once-only key of an automatic rotation request.
pub fn rotation_request_key(credential: &CredentialId, end: time::OffsetDateTime) -> String {
    format!("rotate-requested:{credential}:{}", end.unix_timestamp())
}

impl Scanner<'_> {
    #[tracing::instrument(skip_all, fields(integration = ?integration.map(|i| i.to_string())))]
    pub async fn scan(&self, integration: Option<&IntegrationId>) -> Result<ScanReport> {
        let now = self.clock.now();
        let mut open: HashMap<CredentialId, Vec<Execution>> = HashMap::new();
        for e in self.store.list_open_executions().await? {
            open.entry(e.credential.clone()).or_default().push(e);
        }
        let mut names: HashMap<IntegrationId, HashMap<uuid::Uuid, String>> = HashMap::new();
        let mut report = ScanReport::default();
        let mut after: Option<CredentialId> = None;
        loop {
            let page = self.store.credentials_page(after.as_ref(), PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            let page: Vec<Credential> =
                page.into_iter().filter(|c| integration.is_none_or(|i| &c.id.integration == i)).collect();
            report.credentials += page.len();

            let mut alerts = Vec::new();
            let mut rotations = Vec::new();
            for c in &page {
                let thresholds = self.policies.thresholds_for(&c.client_id);
                let within = thresholds.iter().copied().max().unwrap_or(30);
                let execs = open.get(&c.id).map(Vec::as_slice).unwrap_or(&[]);
                let state = lifecycle_state(&LifecycleFacts::of(c, execs, within), now);
                // Superseded, rotating or removed credentials are taken care of: no alert.
                let watched =
                    matches!(state, LifecycleState::Active | LifecycleState::ExpiringSoon | LifecycleState::Expired);
                if let (true, Some(end)) = (watched, c.end) {
                    if let Some(threshold) = crossed_threshold(end, now, thresholds) {
                        alerts.push((AlertKey { credential: c.id.clone(), end, threshold }, c));
                    }
                    let policy = self.policies.for_client(&c.client_id);
                    // Only an application's own client secrets are rotated; a service principal's
                    // passwords are watched.
                    if let (Some(policy), Some(app)) = (policy, c.app)
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
                let mut to_send = Vec::new();
                let mut to_record = Vec::new();
                for ((key, c), done) in alerts.into_iter().zip(recorded) {
                    if done {
                        continue;
                    }
                    let app_names = match names.get(&c.id.integration) {
                        Some(n) => n,
                        None => {
                            let apps = self.store.list_applications(&c.id.integration).await?;
                            names.entry(c.id.integration.clone()).or_insert_with(|| {
                                apps.into_iter().map(|a| (a.object_id.as_uuid(), a.display_name)).collect()
                            })
                        }
                    };
                    to_send.push(Alert {
                        credential: c.id.clone(),
                        application: c.app.and_then(|a| app_names.get(&a.as_uuid()).cloned()),
                        client_id: c.client_id,
                        kind: c.kind,
                        credential_name: c.display_name.clone(),
                        threshold: key.threshold,
                        end: key.end,
                        days_left: (key.end - now).whole_days(),
                    });
                    to_record.push(key);
                }
                if !to_send.is_empty() {
                    // Sent before recorded: a crash in between sends it again rather than never.
                    for sink in self.sinks {
                        sink.send(&to_send).await?;
                    }
                    self.store.record_alerts(&to_record, now).await?;
                    report.alerts_sent += to_send.len();
                }
            }

            if !rotations.is_empty() {
                let keys: Vec<String> = rotations.iter().map(|(k, ..)| k.clone()).collect();
                let marked = self.store.marked(&keys).await?;
                let mut sent = Vec::new();
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
                    let envelope = message.envelope(key.clone());
                    self.queue.send(&envelope.message.queue(), envelope.to_outgoing(Duration::ZERO)?).await?;
                    sent.push(key);
                }
                if !sent.is_empty() {
                    self.store.mark(&sent, now).await?;
                    report.rotations_requested += sent.len();
                }
            }
        }
        tracing::info!(
            credentials = report.credentials,
            alerts = report.alerts_sent,
            rotations = report.rotations_requested,
            "expiry scan done"
        );
        Ok(report)
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
    use crate::domain::ids::{ClientId, PolicyId};
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
        async fn scan(&self) -> ScanReport {
            let sinks: Vec<Arc<dyn AlertSink>> = vec![self.sink.clone()];
            Scanner {
                store: &self.store,
                queue: &self.queue,
                clock: &self.clock,
                policies: &self.policies,
                sinks: &sinks,
            }
            .scan(None)
            .await
            .unwrap()
        }
        fn thresholds_sent(&self) -> Vec<AlertThreshold> {
            self.sink.0.lock().unwrap().iter().map(|a| a.threshold).collect()
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

    #[tokio::test]
    async fn a_failing_sink_leaves_the_alert_unrecorded_so_the_next_scan_sends_it() {
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
        let w = World::new(false);
        w.store.put_credential(&Credential::test_password(START + TimeDuration::days(10))).await.unwrap();
        let sinks: Vec<Arc<dyn AlertSink>> = vec![Arc::new(Down)];
        let failing =
            Scanner { store: &w.store, queue: &w.queue, clock: &w.clock, policies: &w.policies, sinks: &sinks };
        assert!(failing.scan(None).await.is_err());
        assert_eq!(w.scan().await.alerts_sent, 1);
        let _ = ClientId::parse("00000000-0000-0000-0000-000000000000");
    }
}
