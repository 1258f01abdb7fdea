//! The Store contract: what every store adapter keeps, conditional writes above all.

use std::sync::Arc;

use time::OffsetDateTime;
use time::macros::datetime;
use uuid::Uuid;

use crate::domain::execution::{Cleanup, Execution, ExecutionStatus, StepOutcome, StepRecord, Trigger};
use crate::domain::ids::{
    AgentId, AppObjectId, ClientId, CredentialId, ExecutionId, IntegrationId, KeyId, OwnerKind, PolicyId,
    ServicePrincipalId,
};
use crate::domain::inventory::{Application, Credential, CredentialKind, ServicePrincipal};
use crate::domain::lifecycle::AlertThreshold;
use crate::domain::policy::{PolicySet, RotationPolicy};
use crate::messages::{Envelope, Message};
use crate::ports::alerts::{Alert, AlertSink};
use crate::ports::key_ring::SealedValue;
use crate::ports::{
    AgentRecord, AlertKey, AuditEvent, AuditQuery, Claim, Clock, DueCredential, Owner, OwnerSnapshot, Queue, QueueName,
    SealedRecord, Store, SyncState,
};
use crate::testing::fakes::ManualClock;
use crate::usecases::scan::{ScanReport, Scanner};

/// The time the contract's records are made at.
pub const NOW: OffsetDateTime = datetime!(2026-11-22 12:00 UTC);

/// Test builders, for adapters' own tests too.
pub fn integration(name: &str) -> IntegrationId {
    IntegrationId::parse(name).expect("valid")
}

/// An application of integration `i` with fresh ids.
pub fn app(i: &str) -> Application {
    Application {
        integration: integration(i),
        object_id: AppObjectId::from_uuid(Uuid::new_v4()),
        client_id: ClientId::from_uuid(Uuid::new_v4()),
        display_name: "Payroll API".into(),
        sign_in_audience: "AzureADMyOrg".into(),
    }
}

/// A client secret of `app` ending `days_left` days after [`NOW`].
pub fn password(app: &Application, days_left: i64) -> Credential {
    Credential {
        id: CredentialId::for_application(app.integration.clone(), app.object_id, KeyId::from_uuid(Uuid::new_v4())),
        kind: CredentialKind::Password,
        app: Some(app.object_id),
        client_id: app.client_id,
        display_name: Some("prod".into()),
        hint: Some("Abc".into()),
        start: Some(NOW - time::Duration::days(100)),
        end: Some(NOW + time::Duration::days(days_left)),
        thumbprint: None,
        removed_at: None,
    }
}

/// A manual execution rotating `cred`, created at [`NOW`].
pub fn execution(cred: &Credential) -> Execution {
    Execution::new(
        cred.id.clone(),
        cred.app.expect("app credential"),
        PolicyId::parse("default").expect("valid"),
        Trigger::Manual { by: "alice".into(), reason: Some("test".into()) },
        vec![],
        NOW,
    )
}

fn sealed(record_id: &str, execution: Option<ExecutionId>) -> SealedRecord {
    SealedRecord {
        record_id: record_id.into(),
        purpose: "new_client_secret".into(),
        execution,
        sealed: SealedValue {
            v: 1,
            key_id: "k1".into(),
            nonce: vec![0; 12],
            ciphertext: vec![1, 2, 3],
            encrypted_data_key: None,
        },
        created_at: NOW,
    }
}

pub async fn applications_are_upserted_and_listed_per_integration(s: Arc<dyn Store>) {
    let mut a = app("contoso");
    s.put_application(&a).await.unwrap();
    a.display_name = "Payroll API v2".into();
    s.put_application(&a).await.unwrap();
    s.put_application(&app("fabrikam")).await.unwrap();
    let listed = s.list_applications(&integration("contoso")).await.unwrap();
    assert_eq!(listed, vec![a.clone()]);
    assert_eq!(s.get_application(&a.integration, &a.object_id).await.unwrap(), Some(a));
}

pub async fn credentials_are_listed_soonest_expiry_first(s: Arc<dyn Store>) {
    let a = app("contoso");
    s.put_application(&a).await.unwrap();
    let later = password(&a, 90);
    let sooner = password(&a, 5);
    let mut no_end = password(&a, 1);
    no_end.end = None;
    for c in [&later, &no_end, &sooner] {
        s.put_credential(c).await.unwrap();
    }
    let other = app("fabrikam");
    s.put_credential(&password(&other, 1)).await.unwrap();
    let ids: Vec<_> = s.list_credentials(Some(&a.integration)).await.unwrap().into_iter().map(|c| c.id).collect();
    assert_eq!(ids, vec![sooner.id.clone(), later.id.clone(), no_end.id.clone()]);
    assert_eq!(s.list_credentials(None).await.unwrap().len(), 4);
    assert_eq!(s.get_credential(&sooner.id).await.unwrap(), Some(sooner));
}

pub async fn removing_an_application_takes_its_credentials_and_rotation_entries_with_it(s: Arc<dyn Store>) {
    let gone = app("contoso");
    let kept = app("contoso");
    let (c1, c2, c3) = (password(&gone, 10), password(&gone, 20), password(&kept, 10));
    for a in [&gone, &kept] {
        s.put_application(a).await.unwrap();
    }
    for c in [&c1, &c2, &c3] {
        s.put_credential(c).await.unwrap();
    }
    let running = execution(&c1);
    assert_eq!(s.create_execution(&running).await.unwrap(), Claim::Created);
    s.put_sealed(&sealed("gone-secret", Some(running.id))).await.unwrap();
    let alert = AlertKey { credential: c1.id.clone(), end: c1.end.unwrap(), threshold: AlertThreshold::DaysBefore(30) };
    assert!(s.record_alert(&alert, NOW).await.unwrap());
    let kept_exec = execution(&c3);
    s.create_execution(&kept_exec).await.unwrap();

    s.remove_application(&gone.integration, &gone.object_id).await.unwrap();

    assert_eq!(s.get_application(&gone.integration, &gone.object_id).await.unwrap(), None);
    assert_eq!(s.get_credential(&c1.id).await.unwrap(), None);
    assert_eq!(s.get_credential(&c2.id).await.unwrap(), None);
    assert!(s.get_credential(&c3.id).await.unwrap().is_some(), "another app's credential stays");
    let cancelled = s.get_execution(&running.id).await.unwrap().expect("history stays");
    assert_eq!(cancelled.status, ExecutionStatus::Cancelled);
    assert_eq!(s.get_sealed("gone-secret").await.unwrap(), None, "its sealed secret goes");
    assert!(s.record_alert(&alert, NOW).await.unwrap(), "its alert records went too");
    assert_eq!(s.get_execution(&kept_exec.id).await.unwrap().unwrap().status, ExecutionStatus::Pending);
}

pub async fn one_active_execution_per_credential(s: Arc<dyn Store>) {
    let a = app("contoso");
    let c = password(&a, 10);
    s.put_credential(&c).await.unwrap();
    let first = execution(&c);
    assert_eq!(s.create_execution(&first).await.unwrap(), Claim::Created);
    let second = execution(&c);
    match s.create_execution(&second).await.unwrap() {
        Claim::AlreadyActive(holder) => assert_eq!(holder.id, first.id),
        Claim::Created => panic!("two active executions for one credential"),
    }
    assert_eq!(s.get_execution(&second.id).await.unwrap(), None);
    // Once the first is terminal the credential can be claimed again.
    let mut done = first.clone();
    done.status = ExecutionStatus::Completed;
    s.update_execution(&done).await.unwrap();
    assert_eq!(s.create_execution(&second).await.unwrap(), Claim::Created);
}

/// A failed execution that holds a new secret keeps its claim (a redrive or a cancel settles it);
/// one that failed before it made a secret frees the credential at once.
pub async fn failed_execution_keeps_its_claim(s: Arc<dyn Store>) {
    let c = password(&app("contoso"), 10);
    let mut first = execution(&c);
    s.create_execution(&first).await.unwrap();
    first.new_key_id = Some(KeyId::from_uuid(Uuid::new_v4()));
    first.status = ExecutionStatus::Failed;
    first.version = s.update_execution(&first).await.unwrap();
    assert!(matches!(s.create_execution(&execution(&c)).await.unwrap(), Claim::AlreadyActive(_)));

    let other = password(&app("contoso"), 11);
    let mut early = execution(&other);
    s.create_execution(&early).await.unwrap();
    early.status = ExecutionStatus::Failed;
    early.version = s.update_execution(&early).await.unwrap();
    assert_eq!(s.create_execution(&execution(&other)).await.unwrap(), Claim::Created, "nothing to settle");
    // Redriven, it takes the credential back only while nobody else holds it.
    early.status = ExecutionStatus::Pending;
    assert!(matches!(s.update_execution(&early).await, Err(crate::Error::Conflict { .. })));
}

pub async fn execution_updates_are_conditional_on_the_version(s: Arc<dyn Store>) {
    let c = password(&app("contoso"), 10);
    let e = execution(&c);
    s.create_execution(&e).await.unwrap();
    let mut mine = s.get_execution(&e.id).await.unwrap().unwrap();
    let mut theirs = mine.clone();
    mine.status = ExecutionStatus::Running;
    let v = s.update_execution(&mine).await.unwrap();
    assert_eq!(v, e.version + 1);
    theirs.status = ExecutionStatus::Cancelled;
    assert!(matches!(s.update_execution(&theirs).await, Err(crate::Error::Conflict { .. })));
    let stored = s.get_execution(&e.id).await.unwrap().unwrap();
    assert_eq!(stored.status, ExecutionStatus::Running);
    assert_eq!(stored.version, v);
}

pub async fn creating_the_same_execution_twice_is_a_conflict(s: Arc<dyn Store>) {
    let c = password(&app("contoso"), 10);
    let mut e = execution(&c);
    e.status = ExecutionStatus::Completed; // terminal, so no claim is involved
    s.create_execution(&e).await.unwrap();
    assert!(matches!(s.create_execution(&e).await, Err(crate::Error::Conflict { .. })));
}

pub async fn executions_are_listed_newest_first_and_open_ones_found(s: Arc<dyn Store>) {
    let c = password(&app("contoso"), 10);
    let mut old = execution(&c);
    old.created_at = NOW - time::Duration::days(200);
    old.status = ExecutionStatus::Completed;
    old.cleanup = Cleanup::Done { at: NOW - time::Duration::days(150) };
    let mut graced = execution(&c);
    graced.created_at = NOW - time::Duration::days(10);
    graced.status = ExecutionStatus::Completed;
    graced.grace_until = Some(NOW + time::Duration::days(20));
    let current = execution(&c);
    for e in [&old, &graced, &current] {
        s.create_execution(e).await.unwrap();
    }
    let ids: Vec<_> = s.list_executions(&c.id).await.unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![current.id, graced.id, old.id]);
    let mut open: Vec<_> = s.list_open_executions().await.unwrap().into_iter().map(|e| e.id).collect();
    open.sort();
    let mut want = vec![graced.id, current.id];
    want.sort();
    assert_eq!(open, want, "running, or finalized with cleanup still to do");
}

pub async fn step_records_are_upserted_and_ordered(s: Arc<dyn Store>) {
    let e = ExecutionId::new();
    let rec = |index, outcome| StepRecord {
        execution: e,
        index,
        name: format!("step {index}"),
        kind: "webhook".into(),
        attempts: 1,
        outcome,
        started_at: Some(NOW),
        ended_at: None,
        attempted_at: None,
        error: None,
        left_in_place: false,
    };
    s.put_step_record(&rec(1, StepOutcome::Running)).await.unwrap();
    s.put_step_record(&rec(0, StepOutcome::Succeeded)).await.unwrap();
    s.put_step_record(&rec(1, StepOutcome::Failed)).await.unwrap();
    let got = s.list_step_records(&e).await.unwrap();
    assert_eq!(
        got.iter().map(|r| (r.index, r.outcome)).collect::<Vec<_>>(),
        vec![(0, StepOutcome::Succeeded), (1, StepOutcome::Failed)]
    );
    assert!(s.list_step_records(&ExecutionId::new()).await.unwrap().is_empty());
}

pub async fn an_alert_is_recorded_once_per_credential_expiry_and_threshold(s: Arc<dyn Store>) {
    let c = password(&app("contoso"), 10);
    let key = AlertKey { credential: c.id.clone(), end: c.end.unwrap(), threshold: AlertThreshold::DaysBefore(30) };
    assert!(s.record_alert(&key, NOW).await.unwrap());
    assert!(!s.record_alert(&key, NOW + time::Duration::hours(1)).await.unwrap());
    let seven = AlertKey { threshold: AlertThreshold::DaysBefore(7), ..key.clone() };
    assert!(s.record_alert(&seven, NOW).await.unwrap());
    let renewed = AlertKey { end: c.end.unwrap() + time::Duration::days(180), ..key };
    assert!(s.record_alert(&renewed, NOW).await.unwrap(), "a new expiry date alerts afresh");
}

pub async fn audit_trail_is_newest_first_and_filtered(s: Arc<dyn Store>) {
    let c = password(&app("contoso"), 10);
    let e = ExecutionId::new();
    for (i, action) in ["rotation.started", "secret.created", "rotation.completed"].iter().enumerate() {
        s.append_audit(&AuditEvent {
            at: NOW + time::Duration::seconds(i as i64),
            action: (*action).into(),
            actor: "scheduler".into(),
            execution: Some(e),
            credential: Some(c.id.clone()),
            detail: String::new(),
        })
        .await
        .unwrap();
    }
    s.append_audit(&AuditEvent {
        at: NOW,
        action: "sync.completed".into(),
        actor: "scheduler".into(),
        execution: None,
        credential: None,
        detail: "42 applications".into(),
    })
    .await
    .unwrap();
    let mine = s.list_audit(&AuditQuery { credential: Some(c.id.clone()), ..Default::default() }).await.unwrap();
    assert_eq!(
        mine.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(),
        vec!["rotation.completed", "secret.created", "rotation.started"]
    );
    let by_exec = s.list_audit(&AuditQuery { execution: Some(e), limit: 1, ..Default::default() }).await.unwrap();
    assert_eq!(by_exec.len(), 1);
    assert_eq!(s.list_audit(&AuditQuery::default()).await.unwrap().len(), 4);
}

pub async fn sealed_records_are_stored_read_and_deleted_idempotently(s: Arc<dyn Store>) {
    let r = sealed("exe-1/new-secret", Some(ExecutionId::new()));
    s.put_sealed(&r).await.unwrap();
    assert_eq!(s.get_sealed(&r.record_id).await.unwrap(), Some(r.clone()));
    s.delete_sealed(&r.record_id).await.unwrap();
    s.delete_sealed(&r.record_id).await.unwrap();
    assert_eq!(s.get_sealed(&r.record_id).await.unwrap(), None);
}

pub async fn a_key_is_marked_once_until_it_is_forgotten(s: Arc<dyn Store>) {
    let later = NOW + time::Duration::minutes(5);
    assert!(s.mark_once("nonce:agent-1:abc", NOW, later).await.unwrap(), "the first mark");
    assert!(!s.mark_once("nonce:agent-1:abc", NOW, later).await.unwrap(), "a repeat is refused");
    assert!(s.mark_once("nonce:agent-2:abc", NOW, later).await.unwrap(), "another key is another mark");
    // Of two at once, exactly one is first.
    let (a, b) = tokio::join!(s.mark_once("enroll:x", NOW, later), s.mark_once("enroll:x", NOW, later));
    assert_ne!(a.unwrap(), b.unwrap());
    // A mark whose time to be forgotten has come (the store's clock is at NOW) counts no more.
    let past = NOW - time::Duration::seconds(1);
    assert!(s.mark_once("nonce:old", NOW - time::Duration::minutes(10), past).await.unwrap());
    assert!(s.mark_once("nonce:old", NOW, later).await.unwrap(), "forgotten, so marked again");
    assert!(!s.mark_once("nonce:old", NOW, later).await.unwrap());
}

pub async fn agents_and_sync_state_are_kept(s: Arc<dyn Store>) {
    let agent = AgentRecord {
        id: AgentId::from_uuid(Uuid::new_v4()),
        name: "web-01".into(),
        enrollment: None,
        keys: Some(crate::domain::agent::AgentKeys {
            signing: "c2lnbg".into(),
            sealing: "c2VhbA".into(),
            fingerprint: "0123456789abcdef".into(),
            enrolled_at: NOW,
        }),
        revoked: None,
        hostname: "web01".into(),
        os: "windows".into(),
        version: "0.1.0".into(),
        capabilities: crate::domain::agent::Capabilities { file_formats: vec!["json".into()], iis: true },
        allowed_roots: vec!["C:\\inetpub".into()],
        last_heartbeat: Some(NOW),
    };
    s.put_agent(&agent).await.unwrap();
    let beat = AgentRecord { last_heartbeat: Some(NOW + time::Duration::minutes(1)), ..agent.clone() };
    s.put_agent(&beat).await.unwrap();
    assert_eq!(s.get_agent(&agent.id).await.unwrap(), Some(beat));
    assert_eq!(s.list_agents().await.unwrap().len(), 1);

    let i = integration("contoso");
    assert_eq!(s.get_sync_state(&i).await.unwrap(), None);
    let state = SyncState {
        integration: i.clone(),
        applications_delta_link: Some("https://graph/delta?$deltatoken=abc".into()),
        service_principals_delta_link: None,
        last_full_sync: Some(NOW),
        last_delta_sync: None,
    };
    s.put_sync_state(&state).await.unwrap();
    assert_eq!(s.get_sync_state(&i).await.unwrap(), Some(state));
}

pub async fn service_principals_are_kept_per_integration(s: Arc<dyn Store>) {
    let sp = ServicePrincipal {
        integration: integration("contoso"),
        object_id: ServicePrincipalId::from_uuid(Uuid::new_v4()),
        client_id: ClientId::from_uuid(Uuid::new_v4()),
        display_name: "Payroll API".into(),
    };
    s.put_service_principal(&sp).await.unwrap();
    s.put_service_principal(&sp).await.unwrap();
    assert_eq!(s.list_service_principals(&sp.integration).await.unwrap(), vec![sp]);
    assert!(s.list_service_principals(&integration("fabrikam")).await.unwrap().is_empty());
}

fn snapshot(app: &Application, passwords: Option<Vec<Credential>>) -> OwnerSnapshot {
    OwnerSnapshot { owner: Owner::Application(app.clone()), passwords, certificates: Some(vec![]) }
}

pub async fn syncing_owners_upserts_them_and_removes_credentials_no_longer_listed(s: Arc<dyn Store>) {
    let i = integration("contoso");
    let a = app("contoso");
    let (keep, drop_, cleaned) = (password(&a, 10), password(&a, 20), password(&a, 30));
    let mut cleaned = cleaned;
    cleaned.removed_at = Some(NOW);
    s.put_credential(&cleaned).await.unwrap();
    let counts = s.sync_owners(&i, &[snapshot(&a, Some(vec![keep.clone(), drop_.clone()]))]).await.unwrap();
    assert_eq!((counts.owners, counts.credentials_written, counts.credentials_removed), (1, 2, 0));
    let running = execution(&drop_);
    s.create_execution(&running).await.unwrap();

    let counts = s.sync_owners(&i, &[snapshot(&a, Some(vec![keep.clone()]))]).await.unwrap();
    assert_eq!(counts.credentials_removed, 1);
    assert!(s.get_credential(&keep.id).await.unwrap().is_some());
    assert_eq!(s.get_credential(&drop_.id).await.unwrap(), None);
    assert_eq!(s.get_execution(&running.id).await.unwrap().unwrap().status, ExecutionStatus::Cancelled);
    assert_eq!(s.get_credential(&cleaned.id).await.unwrap(), Some(cleaned.clone()), "our own Cleaned Up record stays");

    // A delta page that did not mention the credentials leaves them alone.
    let mut renamed = a.clone();
    renamed.display_name = "Payroll API (renamed)".into();
    s.sync_owners(&i, &[snapshot(&renamed, None)]).await.unwrap();
    assert!(s.get_credential(&keep.id).await.unwrap().is_some());
    assert_eq!(s.get_application(&i, &a.object_id).await.unwrap().unwrap().display_name, "Payroll API (renamed)");
}

pub async fn removing_a_service_principal_takes_only_its_own_credentials(s: Arc<dyn Store>) {
    let i = integration("contoso");
    let a = app("contoso");
    let sp = ServicePrincipal {
        integration: i.clone(),
        object_id: ServicePrincipalId::from_uuid(Uuid::new_v4()),
        client_id: a.client_id,
        display_name: a.display_name.clone(),
    };
    let app_secret = password(&a, 10);
    let mut sp_secret = password(&a, 10);
    sp_secret.id = CredentialId::for_service_principal(i.clone(), sp.object_id, KeyId::from_uuid(Uuid::new_v4()));
    sp_secret.app = None;
    s.sync_owners(&i, &[snapshot(&a, Some(vec![app_secret.clone()]))]).await.unwrap();
    s.sync_owners(
        &i,
        &[OwnerSnapshot {
            owner: Owner::ServicePrincipal(sp.clone()),
            passwords: Some(vec![sp_secret.clone()]),
            certificates: None,
        }],
    )
    .await
    .unwrap();
    assert_eq!(s.owner_ids(&i, OwnerKind::ServicePrincipal).await.unwrap(), vec![sp.object_id.as_uuid()]);
    assert_eq!(s.owner_ids(&i, OwnerKind::Application).await.unwrap(), vec![a.object_id.as_uuid()]);
    assert_eq!(s.remove_owner(&i, OwnerKind::ServicePrincipal, sp.object_id.as_uuid()).await.unwrap(), 1);
    assert_eq!(s.get_credential(&sp_secret.id).await.unwrap(), None);
    assert!(s.get_credential(&app_secret.id).await.unwrap().is_some());
    assert!(s.owner_ids(&i, OwnerKind::ServicePrincipal).await.unwrap().is_empty());
}

pub async fn credentials_can_be_read_page_by_page(s: Arc<dyn Store>) {
    let a = app("contoso");
    let mut all = Vec::new();
    for d in 0..7 {
        let c = password(&a, d);
        s.put_credential(&c).await.unwrap();
        all.push(c.id);
    }
    all.sort_by_key(|id| id.to_string());
    let mut seen = Vec::new();
    let mut after: Option<CredentialId> = None;
    loop {
        let page = s.credentials_page(after.as_ref(), 3).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        after = page.last().map(|c| c.id.clone());
        seen.extend(page.into_iter().map(|c| c.id));
    }
    assert_eq!(seen, all);
}

pub async fn alerts_and_marks_are_recorded_in_batches(s: Arc<dyn Store>) {
    let c = password(&app("contoso"), 10);
    let k30 = AlertKey { credential: c.id.clone(), end: c.end.unwrap(), threshold: AlertThreshold::DaysBefore(30) };
    let k7 = AlertKey { threshold: AlertThreshold::DaysBefore(7), ..k30.clone() };
    assert_eq!(s.alerts_recorded(&[k30.clone(), k7.clone()]).await.unwrap(), vec![false, false]);
    s.record_alerts(std::slice::from_ref(&k30), NOW).await.unwrap();
    s.record_alerts(std::slice::from_ref(&k30), NOW).await.unwrap();
    assert_eq!(s.alerts_recorded(&[k30.clone(), k7]).await.unwrap(), vec![true, false]);
    assert!(!s.record_alert(&k30, NOW).await.unwrap());

    let keys = vec!["rotate:a:1".to_string(), "rotate:b:1".to_string()];
    assert_eq!(s.marked(&keys).await.unwrap(), vec![false, false]);
    s.mark(&keys[..1], NOW).await.unwrap();
    s.mark(&keys[..1], NOW).await.unwrap();
    assert_eq!(s.marked(&keys).await.unwrap(), vec![true, false]);
}

/// A service principal of `app`'s, in `app`'s integration, with a fresh object id.
pub fn service_principal(app: &Application) -> ServicePrincipal {
    ServicePrincipal {
        integration: app.integration.clone(),
        object_id: ServicePrincipalId::from_uuid(Uuid::new_v4()),
        client_id: app.client_id,
        display_name: app.display_name.clone(),
    }
}

/// A password and a certificate of `sp` that share one key id, as a SAML token-signing
/// certificate and its private key's password do (Microsoft documents that shape).
pub fn password_and_certificate_sharing_a_key_id(sp: &ServicePrincipal) -> (Credential, Credential) {
    let key = KeyId::from_uuid(Uuid::new_v4());
    let password_id = CredentialId::for_service_principal(sp.integration.clone(), sp.object_id, key);
    let secret = Credential {
        id: password_id.clone(),
        kind: CredentialKind::Password,
        app: None,
        client_id: sp.client_id,
        display_name: Some("CN=SAML signing".into()),
        hint: None,
        start: Some(NOW - time::Duration::days(30)),
        end: Some(NOW + time::Duration::days(335)),
        thumbprint: None,
        removed_at: None,
    };
    let certificate = Credential {
        id: password_id.with_kind(CredentialKind::Certificate),
        kind: CredentialKind::Certificate,
        thumbprint: Some("q83vEjRWeJq83vEjRWeJq83vEjQ=".into()),
        ..secret.clone()
    };
    (secret, certificate)
}

pub async fn a_password_and_a_certificate_sharing_a_key_id_are_two_credentials(s: Arc<dyn Store>) {
    let i = integration("contoso");
    let sp = service_principal(&app("contoso"));
    let (secret, certificate) = password_and_certificate_sharing_a_key_id(&sp);
    let snapshot = OwnerSnapshot {
        owner: Owner::ServicePrincipal(sp.clone()),
        passwords: Some(vec![secret.clone()]),
        certificates: Some(vec![certificate.clone()]),
    };
    // Twice: the second sync compares against what the first one stored, finds both as they
    // are, and writes nothing.
    for written in [2, 0] {
        let counts = s.sync_owners(&i, std::slice::from_ref(&snapshot)).await.unwrap();
        assert_eq!((counts.credentials_written, counts.credentials_removed), (written, 0));
    }
    let mut listed = s.list_credentials(Some(&i)).await.unwrap();
    listed.sort_by_key(|c| c.kind == CredentialKind::Certificate);
    assert_eq!(listed, vec![secret.clone(), certificate.clone()], "both kinds are kept, each with its own record");
    assert_eq!(s.get_credential(&secret.id).await.unwrap(), Some(secret.clone()));
    assert_eq!(s.get_credential(&certificate.id).await.unwrap(), Some(certificate.clone()));

    // Alerts are per credential: the certificate's does not silence the password's.
    let end = secret.end.unwrap();
    let alert = |c: &Credential| AlertKey { credential: c.id.clone(), end, threshold: AlertThreshold::DaysBefore(30) };
    s.record_alerts(&[alert(&certificate)], NOW).await.unwrap();
    assert_eq!(s.alerts_recorded(&[alert(&secret), alert(&certificate)]).await.unwrap(), vec![false, true]);

    // Removing one leaves the other.
    s.remove_credential(&certificate.id).await.unwrap();
    assert_eq!(s.get_credential(&secret.id).await.unwrap(), Some(secret));
    assert_eq!(s.get_credential(&certificate.id).await.unwrap(), None);
}

pub async fn removing_an_integration_takes_its_whole_inventory_and_keeps_its_history(s: Arc<dyn Store>) {
    let (gone_app, kept_app) = (app("retired"), app("contoso"));
    for a in [&gone_app, &kept_app] {
        s.put_application(a).await.unwrap();
    }
    let sp = ServicePrincipal {
        integration: integration("retired"),
        object_id: ServicePrincipalId::from_uuid(Uuid::new_v4()),
        client_id: gone_app.client_id,
        display_name: "Payroll API".into(),
    };
    s.put_service_principal(&sp).await.unwrap();
    let (c1, c2, kept) = (password(&gone_app, 10), password(&gone_app, 20), password(&kept_app, 10));
    // A credential whose owner was never stored goes as well.
    let stray = password(&app("retired"), 5);
    for c in [&c1, &c2, &kept, &stray] {
        s.put_credential(c).await.unwrap();
    }
    let running = execution(&c1);
    s.create_execution(&running).await.unwrap();
    let kept_exec = execution(&kept);
    s.create_execution(&kept_exec).await.unwrap();
    let alert = AlertKey { credential: c2.id.clone(), end: c2.end.unwrap(), threshold: AlertThreshold::DaysBefore(30) };
    assert!(s.record_alert(&alert, NOW).await.unwrap());

    assert_eq!(s.remove_integration(&integration("retired")).await.unwrap(), 3);

    assert!(s.list_credentials(Some(&integration("retired"))).await.unwrap().is_empty());
    assert!(s.list_applications(&integration("retired")).await.unwrap().is_empty());
    assert!(s.list_service_principals(&integration("retired")).await.unwrap().is_empty());
    assert!(s.record_alert(&alert, NOW).await.unwrap(), "its alert records went too");
    let cancelled = s.get_execution(&running.id).await.unwrap().expect("history stays");
    assert_eq!(cancelled.status, ExecutionStatus::Cancelled);
    assert!(s.get_credential(&kept.id).await.unwrap().is_some(), "another integration's inventory stays");
    assert_eq!(s.list_applications(&integration("contoso")).await.unwrap().len(), 1);
    assert_eq!(s.get_execution(&kept_exec.id).await.unwrap().unwrap().status, ExecutionStatus::Pending);
}

// The due index.

/// Every due credential, page by page of `limit`, checking each page is in position order.
async fn all_due(s: &dyn Store, now: OffsetDateTime, limit: usize) -> Vec<DueCredential> {
    let mut out: Vec<DueCredential> = Vec::new();
    let mut after = None;
    loop {
        let page = s.due_credentials(now, after.as_ref(), limit).await.unwrap();
        assert!(page.len() <= limit);
        let Some(last) = page.last() else { break };
        after = Some(last.position());
        out.extend(page);
    }
    out
}

fn due_ids(due: &[DueCredential]) -> Vec<CredentialId> {
    let mut ids: Vec<CredentialId> = due.iter().map(|d| d.credential.id.clone()).collect();
    ids.sort_by_key(ToString::to_string);
    ids
}

pub async fn a_written_credential_is_due_until_its_next_moment_is_set(s: Arc<dyn Store>) {
    let c = password(&app("contoso"), 40);
    s.put_credential(&c).await.unwrap();
    let due = all_due(s.as_ref(), NOW, 10).await;
    assert_eq!(due.len(), 1);
    assert_eq!((&due[0].credential, due[0].due), (&c, OffsetDateTime::UNIX_EPOCH), "due at once, as written");

    let moment = NOW + time::Duration::days(10);
    s.set_next_moments(&[(c.clone(), Some(moment))]).await.unwrap();
    assert!(all_due(s.as_ref(), NOW, 10).await.is_empty());
    assert!(all_due(s.as_ref(), moment - time::Duration::milliseconds(1), 10).await.is_empty());
    let due = all_due(s.as_ref(), moment, 10).await;
    assert_eq!(due_ids(&due), vec![c.id.clone()], "due at its moment exactly");
    assert_eq!(due[0].due, moment);

    s.set_next_moments(&[(c.clone(), None)]).await.unwrap();
    assert!(all_due(s.as_ref(), NOW + time::Duration::days(10_000), 10).await.is_empty(), "never due again");
    assert_eq!(s.get_credential(&c.id).await.unwrap(), Some(c), "the moment is no part of the credential");
}

pub async fn a_credential_written_after_it_was_read_stays_due(s: Arc<dyn Store>) {
    let c = password(&app("contoso"), 40);
    s.put_credential(&c).await.unwrap();
    let seen = all_due(s.as_ref(), NOW, 10).await.remove(0).credential;
    // Renewed by hand while the scan was deciding about the old end date.
    let mut renewed = c.clone();
    renewed.end = Some(NOW + time::Duration::days(3));
    s.put_credential(&renewed).await.unwrap();
    s.set_next_moments(&[(seen, Some(NOW + time::Duration::days(10)))]).await.unwrap();
    let due = all_due(s.as_ref(), NOW, 10).await;
    assert_eq!(due.iter().map(|d| &d.credential).collect::<Vec<_>>(), vec![&renewed], "looked at again, as renewed");

    // A moment for a credential that is gone creates nothing.
    s.remove_credential(&c.id).await.unwrap();
    s.set_next_moments(&[(renewed, Some(NOW))]).await.unwrap();
    assert!(all_due(s.as_ref(), NOW, 10).await.is_empty());
    assert_eq!(s.get_credential(&c.id).await.unwrap(), None);
}

pub async fn a_sync_of_unchanged_credentials_writes_nothing_and_keeps_their_moments(s: Arc<dyn Store>) {
    let i = integration("contoso");
    let a = app("contoso");
    let (c1, c2) = (password(&a, 40), password(&a, 80));
    let counts = s.sync_owners(&i, &[snapshot(&a, Some(vec![c1.clone(), c2.clone()]))]).await.unwrap();
    assert_eq!(counts.credentials_written, 2);
    let moment = NOW + time::Duration::days(10);
    s.set_next_moments(&[(c1.clone(), Some(moment)), (c2.clone(), Some(moment))]).await.unwrap();

    let counts = s.sync_owners(&i, &[snapshot(&a, Some(vec![c1.clone(), c2.clone()]))]).await.unwrap();
    assert_eq!((counts.owners, counts.credentials_written, counts.credentials_removed), (1, 0, 0));
    assert!(all_due(s.as_ref(), NOW, 10).await.is_empty(), "moments kept");

    // An end date that changed in the directory is written, and due at once.
    let mut moved = c2.clone();
    moved.end = Some(NOW + time::Duration::days(5));
    let counts = s.sync_owners(&i, &[snapshot(&a, Some(vec![c1.clone(), moved.clone()]))]).await.unwrap();
    assert_eq!(counts.credentials_written, 1);
    assert_eq!(due_ids(&all_due(s.as_ref(), NOW, 10).await), vec![moved.id.clone()]);
    assert_eq!(s.get_credential(&moved.id).await.unwrap(), Some(moved));
}

pub async fn due_credentials_are_listed_page_by_page_across_integrations(s: Arc<dyn Store>) {
    let mut want = Vec::new();
    let mut moments = Vec::new();
    for (n, name) in ["contoso", "contoso-eu", "fabrikam"].into_iter().enumerate() {
        let a = app(name);
        for d in 0..5_i64 {
            let c = password(&a, d);
            s.put_credential(&c).await.unwrap();
            // Some due before now (by a few hours, or at once), some later, one never.
            let moment = match d {
                0 => None,
                1 | 2 => Some(NOW - time::Duration::hours(d + n as i64)),
                3 => Some(NOW + time::Duration::hours(1)),
                _ => Some(NOW),
            };
            if moment.is_some_and(|m| m <= NOW) {
                want.push(c.id.clone());
            }
            moments.push((c, moment));
        }
    }
    // One written and not looked at: due at once.
    let fresh = password(&app("contoso"), 9);
    s.put_credential(&fresh).await.unwrap();
    want.push(fresh.id.clone());
    s.set_next_moments(&moments).await.unwrap();
    want.sort_by_key(ToString::to_string);
    for limit in [1, 2, 3, 100] {
        let due = all_due(s.as_ref(), NOW, limit).await;
        assert_eq!(due_ids(&due), want, "pages of {limit}: each due credential once");
        assert_eq!(due.len(), want.len());
        assert!(due.iter().all(|d| d.due <= NOW));
    }
}

pub async fn the_scan_fingerprint_is_kept(s: Arc<dyn Store>) {
    assert_eq!(s.scan_fingerprint().await.unwrap(), None);
    s.put_scan_fingerprint("a1").await.unwrap();
    s.put_scan_fingerprint("b2").await.unwrap();
    assert_eq!(s.scan_fingerprint().await.unwrap().as_deref(), Some("b2"));
}

/// An alert sink the scan writes at once, so a test sees what it raised without a queue.
#[derive(Default)]
struct Raised(std::sync::Mutex<Vec<(CredentialId, Option<AlertThreshold>)>>);

#[async_trait::async_trait]
impl AlertSink for Raised {
    fn name(&self) -> &str {
        "raised"
    }
    async fn send(&self, alerts: &[Alert]) -> crate::Result<()> {
        self.0.lock().unwrap().extend(alerts.iter().map(|a| (a.credential.clone(), a.threshold)));
        Ok(())
    }
    fn in_place(&self) -> bool {
        true
    }
}

/// One store and what its scans raised and asked for.
struct Scanned {
    store: Arc<dyn Store>,
    queue: crate::adapters::sqlite::SqliteQueue,
    sink: Arc<Raised>,
    rotations: Vec<CredentialId>,
}

impl Scanned {
    fn new(store: Arc<dyn Store>, clock: &ManualClock) -> Self {
        let queue = crate::adapters::sqlite::SqliteQueue::in_memory(
            crate::messages::default_queue_specs(),
            Arc::new(clock.clone()),
        )
        .unwrap();
        Self { store, queue, sink: Arc::new(Raised::default()), rotations: Vec::new() }
    }

    async fn scan(&mut self, clock: &ManualClock, policies: &PolicySet, everything: bool) -> ScanReport {
        let sinks: Vec<Arc<dyn AlertSink>> = vec![self.sink.clone()];
        let disabled = std::collections::BTreeSet::new();
        let scanner = Scanner {
            store: self.store.as_ref(),
            queue: &self.queue,
            clock,
            policies,
            sinks: &sinks,
            disabled: &disabled,
        };
        let report = if everything { scanner.scan_everything(None).await } else { scanner.scan(None).await }.unwrap();
        let q = QueueName::new(crate::messages::queues::ROTATE);
        loop {
            let got = self.queue.receive(&q, 10, None).await.unwrap();
            if got.is_empty() {
                break;
            }
            for m in got {
                if let Message::RotateRequested { credential, .. } = Envelope::parse(&m.body).unwrap().message {
                    self.rotations.push(credential);
                }
                self.queue.delete(&q, &m.receipt).await.unwrap();
            }
        }
        report
    }

    /// Everything raised and requested so far, in a comparable order.
    fn outcome(&self) -> (Vec<String>, Vec<String>) {
        let mut alerts: Vec<String> = self
            .sink
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|(c, t)| format!("{c} {}", t.map(|t| t.key()).unwrap_or_default()))
            .collect();
        alerts.sort();
        let mut rotations: Vec<String> = self.rotations.iter().map(ToString::to_string).collect();
        rotations.sort();
        (alerts, rotations)
    }
}

fn policies(auto_rotate: bool, thresholds: Vec<u32>) -> PolicySet {
    let policy = RotationPolicy {
        auto_rotate,
        alert_thresholds: thresholds,
        ..RotationPolicy::with_defaults(PolicyId::parse("default").expect("valid"))
    };
    PolicySet::new(vec![(policy, vec![])])
}

/// The store under test scans by its due index; an embedded store fed the same writes reads every
/// credential at every scan. Whatever happens to the dates, the thresholds and the policy, both
/// raise the same alerts and ask for the same rotations, scan after scan, while the indexed scan
/// looks only at what has come due.
pub async fn the_indexed_scan_finds_exactly_what_a_full_read_finds(s: Arc<dyn Store>) {
    let clock = ManualClock::new(NOW);
    let reference: Arc<dyn Store> =
        Arc::new(crate::adapters::sqlite::SqliteStore::in_memory(Arc::new(clock.clone())).unwrap());
    let mut indexed = Scanned::new(s, &clock);
    let mut full = Scanned::new(reference, &clock);
    let i = integration("contoso");
    let (a, b) = (app("contoso"), app("contoso"));
    let sp = service_principal(&b);
    // End dates from expired to far ahead, a certificate, a service principal's password, one
    // without an end date.
    let mut owned: Vec<Credential> =
        [-3, 0, 1, 6, 7, 8, 20, 29, 31, 45, 61, 95, 200].iter().map(|d| password(&a, *d)).collect();
    let mut cert = password(&b, 25);
    cert.id = cert.id.with_kind(CredentialKind::Certificate);
    cert.kind = CredentialKind::Certificate;
    cert.thumbprint = Some("3q2+7w==".into());
    let mut sp_secret = password(&b, 12);
    sp_secret.id = CredentialId::for_service_principal(i.clone(), sp.object_id, KeyId::from_uuid(Uuid::new_v4()));
    sp_secret.app = None;
    let mut endless = password(&b, 0);
    endless.end = None;
    let write = |owned: &[Credential], b_passwords: Vec<Credential>| {
        vec![
            snapshot(&a, Some(owned.to_vec())),
            OwnerSnapshot {
                owner: Owner::Application(b.clone()),
                passwords: Some(b_passwords),
                certificates: Some(vec![cert.clone()]),
            },
            OwnerSnapshot {
                owner: Owner::ServicePrincipal(sp.clone()),
                passwords: Some(vec![sp_secret.clone()]),
                certificates: Some(vec![]),
            },
        ]
    };
    let total = owned.len() + 3;
    let mut policy = policies(true, vec![30, 7]);
    let mut looked_at = Vec::new();
    for step in 0..16 {
        match step {
            // Renewed by hand: one further out, one brought in close.
            4 => {
                owned[7].end = owned[7].end.map(|e| e + time::Duration::days(90));
                owned[11].end = Some(clock.now() + time::Duration::days(2));
            }
            // The thresholds change, and then automatic rotation is switched off.
            7 => policy = policies(true, vec![60, 30, 14, 1]),
            10 => policy = policies(false, vec![60, 30, 14, 1]),
            // A new credential appears, one goes.
            12 => {
                owned.push(password(&a, 100));
                owned.remove(0);
            }
            _ => {}
        }
        let snapshots = write(&owned, vec![endless.clone()]);
        for store in [&indexed.store, &full.store] {
            store.sync_owners(&i, &snapshots).await.unwrap();
        }
        let report = indexed.scan(&clock, &policy, false).await;
        full.scan(&clock, &policy, true).await;
        assert_eq!(indexed.outcome(), full.outcome(), "step {step} at {}", clock.now());
        looked_at.push((report.full_pass, report.credentials));
        // Again at once: nothing has come due.
        let again = indexed.scan(&clock, &policy, false).await;
        assert_eq!((again.full_pass, again.credentials), (false, 0), "step {step}: a second scan reads nothing");
        clock.advance(std::time::Duration::from_secs(86_400 * [1, 3, 5, 7][step % 4]));
    }
    let (alerts, rotations) = full.outcome();
    assert!(alerts.len() > 20 && !rotations.is_empty(), "the scenario alerts and rotates: {alerts:?} {rotations:?}");
    // A full pass at the first scan and when the policy changed; otherwise only what was due.
    let passes: Vec<usize> = looked_at.iter().enumerate().filter(|(_, (f, _))| *f).map(|(n, _)| n).collect();
    assert_eq!(passes, vec![0, 7, 10]);
    assert!(looked_at.iter().filter(|(f, _)| !f).all(|(_, n)| *n < total), "{looked_at:?}");
}

/// Expands to one `#[tokio::test]` per contract case. `$make` is an async expression giving an
/// `Arc<dyn Store>` that starts empty.
#[macro_export]
macro_rules! store_contract_tests {
    ($make:expr) => {
        $crate::store_contract_tests!(@cases $make;
            applications_are_upserted_and_listed_per_integration,
            credentials_are_listed_soonest_expiry_first,
            removing_an_application_takes_its_credentials_and_rotation_entries_with_it,
            one_active_execution_per_credential,
            failed_execution_keeps_its_claim,
            execution_updates_are_conditional_on_the_version,
            creating_the_same_execution_twice_is_a_conflict,
            executions_are_listed_newest_first_and_open_ones_found,
            step_records_are_upserted_and_ordered,
            an_alert_is_recorded_once_per_credential_expiry_and_threshold,
            audit_trail_is_newest_first_and_filtered,
            sealed_records_are_stored_read_and_deleted_idempotently,
            agents_and_sync_state_are_kept,
            service_principals_are_kept_per_integration,
            syncing_owners_upserts_them_and_removes_credentials_no_longer_listed,
            removing_a_service_principal_takes_only_its_own_credentials,
            credentials_can_be_read_page_by_page,
            alerts_and_marks_are_recorded_in_batches,
            a_key_is_marked_once_until_it_is_forgotten,
            a_password_and_a_certificate_sharing_a_key_id_are_two_credentials,
            removing_an_integration_takes_its_whole_inventory_and_keeps_its_history,
            a_written_credential_is_due_until_its_next_moment_is_set,
            a_credential_written_after_it_was_read_stays_due,
            a_sync_of_unchanged_credentials_writes_nothing_and_keeps_their_moments,
            due_credentials_are_listed_page_by_page_across_integrations,
            the_scan_fingerprint_is_kept,
            the_indexed_scan_finds_exactly_what_a_full_read_finds,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let store = $make.await;
                $crate::testing::contract::store::$case(store).await;
            }
        )*
    };
}
