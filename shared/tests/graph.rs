//! The Graph adapter against the simulated tenant: paging, delta, faults and retries, passwords,
//! sign-in checks, OData quoting, and that no secret or token escapes into errors or logs.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use entra_rotator::Error;
use entra_rotator::adapters::graph::{GraphClient, RetryPolicy, TokenSource, odata_string_literal};
use entra_rotator::config::Config;
use entra_rotator::domain::ids::{AppObjectId, ClientId, KeyId, TenantId};
use entra_rotator::domain::secret::{SecretBytes, SecretValue};
use entra_rotator::ports::directory::{Cursor, Directory, DirectoryApplication, Page, Removal};
use entra_sim::{Fault, FaultKind, Match, NewApp, RequestRecord, Sim, SimOptions};
use time::OffsetDateTime;

/// Tiny waits so fault tests run fast; a budget generous enough for a slow machine.
fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 6,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(40),
        budget: Duration::from_secs(30),
    }
}

async fn sim(options: SimOptions) -> Sim {
    Sim::start(options).await.expect("the simulated tenant starts")
}

fn management(sim: &Sim) -> TokenSource {
    TokenSource::ClientSecret {
        client_id: ClientId::parse(&sim.management_client_id()).expect("the sim's client id is a GUID"),
        secret: SecretValue::new(sim.management_secret()),
    }
}

fn client_with(sim: &Sim, source: TokenSource, retry: RetryPolicy) -> GraphClient {
    GraphClient::new(
        sim.graph_base_url(),
        sim.authority_host(),
        TenantId::parse(&sim.tenant_id()).expect("the sim's tenant id is a GUID"),
        source,
        Some(sim.ca_pem().as_bytes()),
        retry,
    )
    .expect("the client builds")
}

fn client(sim: &Sim) -> GraphClient {
    client_with(sim, management(sim), fast_retry())
}

fn graph_requests(sim: &Sim) -> Vec<RequestRecord> {
    sim.requests().into_iter().filter(RequestRecord::is_graph).collect()
}

fn requests_to(sim: &Sim, method: &str, path_suffix: &str) -> Vec<RequestRecord> {
    graph_requests(sim).into_iter().filter(|r| r.method == method && r.path.ends_with(path_suffix)).collect()
}

fn statuses(records: &[RequestRecord]) -> Vec<u16> {
    records.iter().map(|r| r.status).collect()
}

fn app_id(uuid: uuid::Uuid) -> AppObjectId {
    AppObjectId::from_uuid(uuid)
}

fn in_a_year(sim: &Sim) -> OffsetDateTime {
    sim.now() + time::Duration::days(365)
}

/// Every page of a listing, following links until none is left.
async fn all_pages(
    client: &GraphClient,
    mut cursor: Cursor,
) -> entra_rotator::Result<(Vec<DirectoryApplication>, Vec<Page<DirectoryApplication>>)> {
    let mut items = Vec::new();
    let mut pages = Vec::new();
    loop {
        let page = client.applications(cursor).await?;
        items.extend(page.items.clone());
        let next = page.next_link.clone();
        pages.push(page);
        match next {
            Some(link) => cursor = Cursor::Link(link),
            None => return Ok((items, pages)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Listing

#[tokio::test]
async fn a_full_listing_of_2500_apps_takes_three_requests_of_999_and_returns_every_app_once() {
    let sim = sim(SimOptions { apps: 2500, seed: 7, ..Default::default() }).await;
    let client = client(&sim);

    let (apps, pages) = all_pages(&client, Cursor::Full).await.unwrap();

    let lists = requests_to(&sim, "GET", "/v1.0/applications");
    assert_eq!(lists.len(), 3, "{lists:#?}");
    let first = lists[0].query.as_deref().unwrap_or_default();
    assert!(first.contains("$top=999"), "{first}");
    assert!(
        first.contains("$select=id,appId,displayName,signInAudience,passwordCredentials,keyCredentials"),
        "{first}"
    );
    assert_eq!(pages.iter().map(|p| p.items.len()).collect::<Vec<_>>(), vec![999, 999, 502]);
    let ids: HashSet<_> = apps.iter().map(|a| a.id).collect();
    assert_eq!(apps.len(), 2500);
    assert_eq!(ids.len(), 2500, "no app is listed twice");
    let truth = sim.truth(sim.now());
    assert_eq!(ids.len(), truth.applications);
    let passwords: usize = apps.iter().map(|a| a.password_credentials.as_ref().map_or(0, Vec::len)).sum();
    let truth_app_passwords: usize = sim.tenant().apps().iter().map(|a| a.passwords).sum();
    assert_eq!(passwords, truth_app_passwords);
    assert!(apps.iter().all(|a| a.client_id.is_some() && !a.removed));
}

#[tokio::test]
async fn next_links_are_followed_verbatim() {
    let sim = sim(SimOptions { apps: 9, page_size: 4, ..Default::default() }).await;
    let client = client(&sim);

    let (_, pages) = all_pages(&client, Cursor::Full).await.unwrap();

    let links: Vec<String> = pages.iter().filter_map(|p| p.next_link.clone()).collect();
    assert_eq!(links.len(), 2);
    let origin = sim.base_url().origin().ascii_serialization();
    let lists = requests_to(&sim, "GET", "/v1.0/applications");
    for (link, record) in links.iter().zip(&lists[1..]) {
        let sent = format!("{}?{}", record.path, record.query.as_deref().unwrap_or_default());
        assert_eq!(link.strip_prefix(&origin), Some(sent.as_str()), "the link is requested exactly as given");
    }
}

#[tokio::test]
async fn service_principals_are_listed_with_their_own_passwords() {
    let sim = sim(SimOptions { apps: 60, ..Default::default() }).await;
    let client = client(&sim);

    let page = client.service_principals(Cursor::Full).await.unwrap();

    assert_eq!(page.items.len(), sim.truth(sim.now()).service_principals);
    let record = &requests_to(&sim, "GET", "/v1.0/servicePrincipals")[0];
    assert!(record.query.as_deref().unwrap_or_default().contains("servicePrincipalType"));
    assert!(page.items.iter().all(|sp| sp.password_credentials.is_some() && sp.key_credentials.is_some()));
}

#[tokio::test]
async fn a_certificate_is_listed_twice_sign_and_verify_with_one_thumbprint() {
    let sim = sim(SimOptions { apps: 200, seed: 3, ..Default::default() }).await;
    let client = client(&sim);

    let (apps, _) = all_pages(&client, Cursor::Full).await.unwrap();

    let paired = apps.iter().find_map(|a| {
        let keys = a.key_credentials.as_ref()?;
        let sign = keys.iter().find(|k| k.usage.as_deref() == Some("Sign"))?;
        keys.iter().find(|k| k.usage.as_deref() == Some("Verify") && k.thumbprint == sign.thumbprint)
    });
    assert!(paired.is_some(), "both listings of a certificate are kept for the sync to dedupe");
    let thumbprints: HashSet<_> =
        apps.iter().flat_map(|a| a.key_credentials.iter().flatten()).filter_map(|k| k.thumbprint.clone()).collect();
    assert_eq!(thumbprints.len(), sim.truth(sim.now()).certificates);
}

#[tokio::test]
async fn one_application_is_read_by_id_and_a_missing_one_is_none() {
    let sim = sim(SimOptions { apps: 5, ..Default::default() }).await;
    let client = client(&sim);
    let known = sim.tenant().apps()[0].clone();

    let app = client.application(app_id(known.object_id)).await.unwrap().expect("it exists");
    assert_eq!(app.display_name.as_deref(), Some(known.display_name.as_str()));
    assert_eq!(app.password_credentials.map(|p| p.len()), Some(known.passwords));

    let missing = client.application(app_id(uuid::Uuid::new_v4())).await.unwrap();
    assert!(missing.is_none());
}

// ---------------------------------------------------------------------------------------------
// Delta

#[tokio::test]
async fn a_delta_round_ends_in_a_delta_link_that_then_reports_only_the_changes() {
    let sim = sim(SimOptions { apps: 30, page_size: 12, ..Default::default() }).await;
    let client = client(&sim);

    let (first_round, pages) = all_pages(&client, Cursor::DeltaStart).await.unwrap();
    assert_eq!(first_round.len(), 30);
    let delta_link = pages.last().and_then(|p| p.delta_link.clone()).expect("the last page carries a delta link");
    assert!(pages[..pages.len() - 1].iter().all(|p| p.delta_link.is_none() && p.next_link.is_some()));
    let first = requests_to(&sim, "GET", "/v1.0/applications/delta")[0].clone();
    assert!(first.query.unwrap_or_default().starts_with("$select="));

    let ids = sim.tenant().app_object_ids();
    let renamed = sim.tenant().touch_app(ids[3]).unwrap();
    sim.tenant().remove_app(ids[5]).unwrap();
    let added = sim.tenant().add_app(NewApp::named("added after the round"));

    let (changes, pages) = all_pages(&client, Cursor::Link(delta_link)).await.unwrap();

    assert_eq!(changes.len(), 3, "{changes:#?}");
    let by_id = |id: uuid::Uuid| changes.iter().find(|a| a.id == app_id(id)).expect("reported");
    assert_eq!(by_id(ids[3]).display_name.as_deref(), Some(renamed.as_str()));
    assert!(by_id(ids[5]).removed);
    assert_eq!(by_id(added.object_id).display_name.as_deref(), Some("added after the round"));
    assert!(pages.last().unwrap().delta_link.is_some(), "a new delta link for the next sync");
}

#[tokio::test]
async fn delta_latest_gives_a_delta_link_without_enumerating() {
    let sim = sim(SimOptions { apps: 40, ..Default::default() }).await;
    let client = client(&sim);

    let page = client.applications(Cursor::DeltaLatest).await.unwrap();
    assert!(page.items.is_empty());
    let link = page.delta_link.expect("a delta link");
    let query = requests_to(&sim, "GET", "/v1.0/applications/delta")[0].query.clone().unwrap_or_default();
    assert!(query.contains("$deltatoken=latest"), "{query}");

    let added = sim.tenant().add_app(NewApp::named("new since latest"));
    let page = client.applications(Cursor::Link(link)).await.unwrap();
    assert_eq!(page.items.iter().map(|a| a.id).collect::<Vec<_>>(), vec![app_id(added.object_id)]);
}

#[tokio::test]
async fn an_expired_delta_link_is_reported_as_delta_expired() {
    let sim = sim(SimOptions { apps: 3, ..Default::default() }).await;
    let client = client(&sim);
    let link = client.applications(Cursor::DeltaLatest).await.unwrap().delta_link.unwrap();

    sim.advance_clock(Duration::from_secs(8 * 24 * 3600));
    let result = client.applications(Cursor::Link(link)).await;

    assert!(matches!(result, Err(Error::DeltaExpired)), "{result:?}");
    let delta_requests = requests_to(&sim, "GET", "/v1.0/applications/delta");
    assert_eq!(statuses(&delta_requests), vec![200, 400], "not retried");
}

#[tokio::test]
async fn a_link_to_another_host_is_refused_before_any_token_leaves() {
    let sim = sim(SimOptions { apps: 1, ..Default::default() }).await;
    let client = client(&sim);

    let result =
        client.applications(Cursor::Link("https://attacker.example/v1.0/applications?$skiptoken=x".into())).await;

    assert!(matches!(&result, Err(Error::Invalid { .. })), "{result:?}");
    assert!(sim.requests().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Faults and retries

#[tokio::test]
async fn a_429_with_retry_after_is_honoured_before_trying_again() {
    let sim = sim(SimOptions { apps: 3, ..Default::default() }).await;
    let client = client(&sim);
    client.application(app_id(uuid::Uuid::new_v4())).await.unwrap(); // signs in first
    sim.clear_requests();
    sim.faults().push(Fault::new(
        Match::path("/v1.0/applications").method("GET"),
        FaultKind::TooManyRequests { retry_after: Some(Duration::from_secs(1)) },
    ));

    let started = Instant::now();
    let page = client.applications(Cursor::Full).await.unwrap();
    let elapsed = started.elapsed();

    assert_eq!(page.items.len(), 3);
    assert_eq!(statuses(&graph_requests(&sim)), vec![429, 200]);
    // Backoff alone would wait at most 40 ms here; only Retry-After explains a full second.
    assert!(elapsed >= Duration::from_secs(1), "waited {elapsed:?}");
    assert!(elapsed < Duration::from_secs(15), "waited {elapsed:?}");
}

#[tokio::test]
async fn a_429_without_retry_after_is_retried_with_backoff() {
    let sim = sim(SimOptions { apps: 3, ..Default::default() }).await;
    let client = client(&sim);
    sim.faults().push(
        Fault::new(Match::path("/v1.0/applications").method("GET"), FaultKind::TooManyRequests { retry_after: None })
            .times(2),
    );

    let page = client.applications(Cursor::Full).await.unwrap();

    assert_eq!(page.items.len(), 3);
    assert_eq!(statuses(&graph_requests(&sim)), vec![429, 429, 200]);
}

#[tokio::test]
async fn a_409_concurrency_violation_on_add_password_is_handed_back_with_a_wait_and_creates_nothing() {
    let sim = sim(SimOptions { apps: 0, ..Default::default() }).await;
    let client = client(&sim);
    let app = sim.tenant().add_app(NewApp::named("payroll"));
    sim.faults().push(Fault::new(Match::path("addPassword"), FaultKind::Concurrency));

    let error = client.add_password(app_id(app.object_id), "rotator:abc", in_a_year(&sim)).await.err().unwrap();

    assert!(
        matches!(&error, Error::Directory { status: 409, transient: true, retry_after: Some(w), .. } if !w.is_zero()),
        "{error:?}"
    );
    assert_eq!(statuses(&requests_to(&sim, "POST", "/addPassword")), vec![409], "not waited out here");
    assert!(sim.tenant().app_passwords(app.object_id).unwrap().is_empty());
    // A concurrency refusal pauses nothing: the next write goes at once.
    client.add_password(app_id(app.object_id), "rotator:abc", in_a_year(&sim)).await.unwrap();
    assert_eq!(sim.tenant().app_passwords(app.object_id).unwrap().len(), 1);
}

#[tokio::test]
async fn a_429_on_add_password_is_handed_back_with_its_retry_after_and_pauses_the_next_writes() {
    let sim = sim(SimOptions { apps: 0, ..Default::default() }).await;
    let client = client(&sim);
    let app = sim.tenant().add_app(NewApp::named("payroll"));
    let other = sim.tenant().add_app(NewApp::named("billing"));
    sim.faults().push(Fault::new(
        Match::path("addPassword"),
        FaultKind::TooManyRequests { retry_after: Some(Duration::from_secs(30)) },
    ));

    let error = client.add_password(app_id(app.object_id), "rotator:abc", in_a_year(&sim)).await.err().unwrap();
    let Error::Directory { status: 429, transient: true, retry_after: Some(wait), .. } = &error else {
        panic!("a throttled write with its wait: {error:?}");
    };
    assert!((Duration::from_secs(30)..=Duration::from_secs(45)).contains(wait), "Retry-After and jitter: {wait:?}");
    // While Graph's wait lasts, another write of this integration is not even sent.
    let paused = client.add_password(app_id(other.object_id), "rotator:def", in_a_year(&sim)).await.err().unwrap();
    assert!(
        matches!(&paused, Error::Directory { status: 429, retry_after: Some(w), .. } if !w.is_zero()),
        "{paused:?}"
    );
    assert_eq!(statuses(&requests_to(&sim, "POST", "/addPassword")), vec![429]);
    assert!(sim.tenant().app_passwords(app.object_id).unwrap().is_empty());
    // Reads are not paused.
    assert!(client.application(app_id(app.object_id)).await.unwrap().is_some());
}

#[tokio::test]
async fn a_400_naming_concurrent_requests_is_retried_too() {
    let sim = sim(SimOptions { apps: 0, ..Default::default() }).await;
    let client = client(&sim);
    let app = sim.tenant().add_app(NewApp::named("payroll"));
    let old = sim.tenant().add_password_to(app.object_id, in_a_year(&sim)).unwrap();
    sim.faults().push(Fault::new(Match::path("removePassword"), FaultKind::ConcurrencyAs400));

    let removal = client.remove_password(app_id(app.object_id), KeyId::from_uuid(old.key_id)).await.unwrap();

    assert_eq!(removal, Removal::Removed);
    assert_eq!(statuses(&requests_to(&sim, "POST", "/removePassword")), vec![400, 204]);
}

#[tokio::test]
async fn a_503_on_a_read_is_retried() {
    let sim = sim(SimOptions { apps: 4, ..Default::default() }).await;
    let client = client(&sim);
    sim.faults().push(Fault::new(Match::path("/v1.0/applications").method("GET"), FaultKind::ServerError(503)));

    let page = client.applications(Cursor::Full).await.unwrap();

    assert_eq!(page.items.len(), 4);
    assert_eq!(statuses(&graph_requests(&sim)), vec![503, 200]);
}

#[tokio::test]
async fn a_5xx_on_add_password_is_not_retried_and_is_reported_transient() {
    let sim = sim(SimOptions { apps: 0, ..Default::default() }).await;
    let client = client(&sim);
    let app = sim.tenant().add_app(NewApp::named("payroll"));
    sim.faults().push(Fault::new(Match::path("addPassword"), FaultKind::ServerError(503)));

    let error = client.add_password(app_id(app.object_id), "rotator:abc", in_a_year(&sim)).await.err().unwrap();

    assert_eq!(requests_to(&sim, "POST", "/addPassword").len(), 1, "addPassword is not sent twice");
    assert!(error.is_transient());
    assert!(matches!(&error, Error::Directory { status: 503, .. }), "{error:?}");
    assert!(error.to_string().contains("orphan sweep"), "{error}");
}

#[tokio::test]
async fn a_timeout_on_add_password_is_not_retried() {
    let sim = sim(SimOptions { apps: 0, ..Default::default() }).await;
    let client = client(&sim).with_request_timeout(Duration::from_millis(300));
    let app = sim.tenant().add_app(NewApp::named("payroll"));
    sim.faults().push(Fault::new(Match::path("addPassword"), FaultKind::Slow(Duration::from_secs(2))));

    let error = client.add_password(app_id(app.object_id), "rotator:abc", in_a_year(&sim)).await.err().unwrap();

    assert!(error.is_transient(), "{error:?}");
    assert!(matches!(&error, Error::Directory { status: 0, code, .. } if code == "Timeout"), "{error:?}");
    assert!(error.to_string().contains("orphan sweep"), "{error}");
    // The fault slows one request only: had the call been sent again, the second try would have
    // succeeded, so the error itself shows there was no second try. (The abandoned request may or
    // may not complete on the sim's side, hence "at most one" below.)
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(requests_to(&sim, "POST", "/addPassword").len() <= 1);
    assert!(sim.tenant().app_passwords(app.object_id).unwrap().len() <= 1);
}

#[tokio::test]
async fn a_403_is_not_retried_and_names_the_permission_needed() {
    let sim = sim(SimOptions { apps: 2, ..Default::default() }).await;
    let client = client(&sim);
    let app = sim.tenant().add_app(NewApp::named("payroll"));
    sim.faults().push(Fault::new(Match::path("/v1.0/applications").method("GET"), FaultKind::Forbidden));
    sim.faults().push(Fault::new(Match::path("addPassword"), FaultKind::Forbidden));

    let read = client.applications(Cursor::Full).await.err().unwrap();
    let write = client.add_password(app_id(app.object_id), "rotator:abc", in_a_year(&sim)).await.err().unwrap();

    assert_eq!(statuses(&graph_requests(&sim)), vec![403, 403], "each sent once");
    for error in [&read, &write] {
        assert!(!error.is_transient());
        assert!(matches!(error, Error::Directory { status: 403, code, .. } if code == "Authorization_RequestDenied"));
    }
    assert!(read.to_string().contains("Application.Read.All"), "{read}");
    assert!(write.to_string().contains("Application.ReadWrite.All"), "{write}");
}

#[tokio::test]
async fn retries_stop_at_max_attempts_with_a_transient_error() {
    let sim = sim(SimOptions { apps: 2, ..Default::default() }).await;
    let retry = RetryPolicy { max_attempts: 3, ..fast_retry() };
    let client = client_with(&sim, management(&sim), retry);
    sim.faults().push(
        Fault::new(Match::path("/v1.0/applications").method("GET"), FaultKind::TooManyRequests { retry_after: None })
            .times(10),
    );

    let error = client.applications(Cursor::Full).await.err().unwrap();

    assert_eq!(graph_requests(&sim).len(), 3);
    assert!(error.is_transient());
    assert!(error.to_string().contains("gave up after 3 tries"), "{error}");
}

#[tokio::test]
async fn a_retry_after_longer_than_the_budget_is_not_waited_for() {
    let sim = sim(SimOptions { apps: 2, ..Default::default() }).await;
    let retry = RetryPolicy { budget: Duration::from_secs(2), ..fast_retry() };
    let client = client_with(&sim, management(&sim), retry);
    sim.faults().push(Fault::new(
        Match::path("/v1.0/applications").method("GET"),
        FaultKind::TooManyRequests { retry_after: Some(Duration::from_secs(60)) },
    ));

    let started = Instant::now();
    let error = client.applications(Cursor::Full).await.err().unwrap();

    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        matches!(error, Error::Directory { retry_after: Some(d), transient: true, .. } if d == Duration::from_secs(60))
    );
}

// ---------------------------------------------------------------------------------------------
// Passwords and sign-in

#[tokio::test]
async fn add_password_returns_the_secret_once_and_it_signs_in_after_replication() {
    let sim = sim(SimOptions { apps: 0, replication_delay: Duration::from_secs(60), ..Default::default() }).await;
    let client = client(&sim);
    let app = sim.tenant().add_app(NewApp::named("payroll"));
    let end = in_a_year(&sim);

    let added = client.add_password(app_id(app.object_id), "rotator:123 payroll", end).await.unwrap();

    assert_eq!(added.secret.expose().len(), 40);
    assert_eq!(added.hint.as_deref(), Some(&added.secret.expose()[..3]));
    assert_eq!(added.display_name.as_deref(), Some("rotator:123 payroll"));
    assert_eq!(added.end.map(|e| e.unix_timestamp()), Some(end.unix_timestamp()));
    let listed = client.application(app_id(app.object_id)).await.unwrap().unwrap();
    let listed = listed.password_credentials.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key_id, added.key_id);

    let client_id = ClientId::from_uuid(app.app_id);
    assert!(!client.secret_signs_in(client_id, &added.secret).await.unwrap(), "not replicated yet");
    sim.advance_clock(Duration::from_secs(61));
    assert!(client.secret_signs_in(client_id, &added.secret).await.unwrap());
}

#[tokio::test]
async fn a_wrong_secret_does_not_sign_in_and_an_unknown_app_neither() {
    let sim = sim(SimOptions { apps: 0, ..Default::default() }).await;
    let client = client(&sim);
    let app = sim.tenant().add_app(NewApp::named("payroll"));

    let wrong = client.secret_signs_in(ClientId::from_uuid(app.app_id), &SecretValue::new("nope")).await.unwrap();
    let unknown =
        client.secret_signs_in(ClientId::from_uuid(uuid::Uuid::new_v4()), &SecretValue::new("nope")).await.unwrap();

    assert!(!wrong);
    assert!(!unknown);
}

#[tokio::test]
async fn a_token_endpoint_failure_during_a_sign_in_check_is_transient_not_false() {
    let sim = sim(SimOptions { apps: 0, ..Default::default() }).await;
    let client = client(&sim);
    let app = sim.tenant().add_app(NewApp::named("payroll"));
    let added = client.add_password(app_id(app.object_id), "rotator:1", in_a_year(&sim)).await.unwrap();
    sim.faults().push(Fault::new(Match::path("/oauth2/").method("POST"), FaultKind::ServerError(503)));

    let error = client.secret_signs_in(ClientId::from_uuid(app.app_id), &added.secret).await.err().unwrap();

    assert!(error.is_transient(), "{error:?}");
    assert!(matches!(&error, Error::Directory { status: 503, .. }), "{error:?}");
    assert!(client.secret_signs_in(ClientId::from_uuid(app.app_id), &added.secret).await.unwrap());
}

#[tokio::test]
async fn remove_password_twice_is_removed_then_already_gone() {
    let sim = sim(SimOptions { apps: 0, ..Default::default() }).await;
    let client = client(&sim);
    let app = sim.tenant().add_app(NewApp::named("payroll"));
    let added = client.add_password(app_id(app.object_id), "rotator:1", in_a_year(&sim)).await.unwrap();

    let first = client.remove_password(app_id(app.object_id), added.key_id).await.unwrap();
    let second = client.remove_password(app_id(app.object_id), added.key_id).await.unwrap();

    assert_eq!((first, second), (Removal::Removed, Removal::AlreadyGone));
    assert!(sim.tenant().app_passwords(app.object_id).unwrap().is_empty());
    assert_eq!(statuses(&requests_to(&sim, "POST", "/removePassword")), vec![204, 404], "the 404 is not retried");
}

#[tokio::test]
async fn a_third_password_on_a_personal_account_app_is_refused_with_a_reason() {
    let sim = sim(SimOptions { apps: 0, ..Default::default() }).await;
    let client = client(&sim);
    let app = sim.tenant().add_app(NewApp::named("consumer").sign_in_audience("AzureADandPersonalMicrosoftAccount"));
    let object = app_id(app.object_id);
    client.add_password(object, "one", in_a_year(&sim)).await.unwrap();
    client.add_password(object, "two", in_a_year(&sim)).await.unwrap();

    let error = client.add_password(object, "three", in_a_year(&sim)).await.err().unwrap();

    assert!(!error.is_transient());
    assert!(matches!(&error, Error::Directory { status: 400, code, .. } if code == "TooManyAppPasswords"));
    assert!(error.to_string().contains("two when it accepts personal Microsoft accounts"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// OData string literals

#[tokio::test]
async fn hostile_display_names_reach_graph_as_one_literal_and_match_only_themselves() {
    let hostile = [
        "O'Brien",
        "x' or displayName eq 'y",
        "'",
        "''",
        "%27",
        "Zoë 名前 🚀",
        "a&$top=1",
        "line one\nline two",
        "a+b c#frag",
    ];
    let sim = sim(SimOptions { apps: 0, ..Default::default() }).await;
    let client = client(&sim);
    for decoy in ["x", "y", "O", "Brien", "a", "line one", "%", "a b c"] {
        sim.tenant().add_app(NewApp::named(decoy));
    }
    for name in hostile {
        sim.tenant().add_app(NewApp::named(name));
    }

    for name in hostile {
        sim.clear_requests();
        let found = client.applications_named(name).await.unwrap();

        let names: Vec<_> = found.iter().map(|a| a.display_name.clone().unwrap_or_default()).collect();
        assert_eq!(names, vec![name.to_owned()], "looking up {name:?}");
        let records = graph_requests(&sim);
        assert_eq!(records.len(), 1);
        let query = records[0].query.clone().unwrap_or_default();
        let filter = query.split('&').find_map(|p| p.strip_prefix("$filter=")).expect("one $filter parameter");
        let decoded = percent_encoding::percent_decode_str(filter).decode_utf8().unwrap();
        assert_eq!(decoded, format!("displayName eq '{}'", name.replace('\'', "''")), "the server reads one literal");
        assert_eq!(query.matches("$top=").count(), 1, "no parameter smuggled in: {query}");
    }
}

#[test]
fn odata_literals_are_quoted_doubled_and_percent_encoded() {
    assert_eq!(odata_string_literal("O'Brien"), "%27O%27%27Brien%27");
    assert_eq!(odata_string_literal("''"), "%27%27%27%27%27%27");
    assert_eq!(odata_string_literal("%27"), "%27%2527%27");
    assert_eq!(odata_string_literal("a&$top=1"), "%27a%26%24top%3D1%27");
    assert_eq!(odata_string_literal("x\ny"), "%27x%0Ay%27");
}

// ---------------------------------------------------------------------------------------------
// Construction, trust and sign-in methods

#[tokio::test]
async fn a_client_built_from_the_configuration_trusts_its_ca_file() {
    let sim = sim(SimOptions { apps: 5, ..Default::default() }).await;
    let text = format!(
        "[integrations.sim]\ntenant_id = \"{}\"\nclient_id = \"{}\"\nauth = \"client_secret\"\n\
         authority_host = \"{}\"\ngraph_base_url = \"{}\"\nca_certificate = \"{}\"\n\
         [outbound]\nallow = [\"127.0.0.1\"]\n",
        sim.tenant_id(),
        sim.management_client_id(),
        sim.authority_host(),
        sim.graph_base_url(),
        sim.ca_path().display(),
    );
    let env = BTreeMap::from([("ROTATOR_SIM_CLIENT_SECRET".to_owned(), sim.management_secret())]);
    let config = Config::parse(&text, std::path::Path::new("/tmp/rotator.toml"), &env).unwrap();

    let client =
        GraphClient::from_integration(&config.integrations[0], fast_retry(), Arc::new(config.outbound.clone()))
            .unwrap();
    let page = client.applications(Cursor::Full).await.unwrap();

    assert_eq!(page.items.len(), 5);
    let shown = format!("{client:?}");
    assert!(!shown.contains(&sim.management_secret()), "{shown}");
}

#[tokio::test]
async fn without_the_ca_the_tls_failure_is_a_configuration_error() {
    let sim = sim(SimOptions { apps: 1, ..Default::default() }).await;
    let client = GraphClient::new(
        sim.graph_base_url(),
        sim.authority_host(),
        TenantId::parse(&sim.tenant_id()).unwrap(),
        management(&sim),
        None,
        fast_retry(),
    )
    .unwrap();

    let error = client.applications(Cursor::Full).await.err().unwrap();

    assert!(matches!(&error, Error::Config(_)), "{error:?}");
    assert!(error.to_string().contains("ca_certificate"), "{error}");
    assert!(graph_requests(&sim).is_empty());
    let token_requests = sim.requests().into_iter().filter(RequestRecord::is_token).count();
    assert_eq!(token_requests, 0, "the handshake failed before any request");
}

#[tokio::test]
async fn a_client_certificate_signs_in_with_a_signed_assertion() {
    let sim = sim(SimOptions { apps: 2, ..Default::default() }).await;
    // A certificate whose public half the tenant holds: the assertion's x5t, signature and
    // audience are checked as Entra checks them.
    let pem = sim.issue_client_certificate(&sim.management_client_id(), "entra-rotator").unwrap();
    let source = TokenSource::ClientCertificate {
        client_id: ClientId::parse(&sim.management_client_id()).unwrap(),
        pem: SecretBytes::new(pem.into_bytes()),
    };
    let client = client_with(&sim, source, fast_retry());

    let page = client.applications(Cursor::Full).await.unwrap();

    assert_eq!(page.items.len(), 2);
    let token_requests: Vec<_> = sim.requests().into_iter().filter(RequestRecord::is_token).collect();
    assert_eq!(statuses(&token_requests), vec![200]);
}

#[tokio::test]
async fn a_client_certificate_the_tenant_does_not_hold_or_a_key_that_is_not_its_own_is_refused() {
    let sim = sim(SimOptions { apps: 1, ..Default::default() }).await;
    let registered = sim.issue_client_certificate(&sim.management_client_id(), "entra-rotator").unwrap();
    let client_id = ClientId::parse(&sim.management_client_id()).unwrap();
    let refused = |pem: String| {
        let client = client_with(
            &sim,
            TokenSource::ClientCertificate { client_id, pem: SecretBytes::new(pem.into_bytes()) },
            fast_retry(),
        );
        async move {
            let Err(error) = client.applications(Cursor::Full).await else { panic!("signed in") };
            assert!(!error.is_transient(), "{error:?}");
            error.to_string()
        }
    };
    // Another certificate (its thumbprint is not registered).
    let unknown = refused(test_certificate_pem()).await;
    assert!(unknown.contains("AADSTS700027"), "{unknown}");
    // The registered certificate, signed with another key.
    // Each PEM is the certificate, then its key: split after the certificate's end line.
    let split = |pem: &str| {
        let at = pem.find("-----END CERTIFICATE-----\n").unwrap() + "-----END CERTIFICATE-----\n".len();
        (pem[..at].to_owned(), pem[at..].to_owned())
    };
    let (cert, _) = split(&registered);
    let (_, other_key) = split(&test_certificate_pem());
    let forged = refused(format!("{cert}{other_key}")).await;
    assert!(forged.contains("AADSTS7000274"), "{forged}");
}

#[tokio::test]
async fn a_wrong_management_secret_is_a_permanent_error_that_names_the_method() {
    let sim = sim(SimOptions { apps: 1, ..Default::default() }).await;
    let source = TokenSource::ClientSecret {
        client_id: ClientId::parse(&sim.management_client_id()).unwrap(),
        secret: SecretValue::new("not-the-secret"),
    };
    let client = client_with(&sim, source, fast_retry());

    let error = client.applications(Cursor::Full).await.err().unwrap();

    assert!(!error.is_transient(), "{error:?}");
    assert!(error.to_string().contains("client secret"), "{error}");
    assert!(error.to_string().contains("AADSTS7000215"), "{error}");
    assert!(graph_requests(&sim).is_empty());
}

/// An RSA key (PKCS#8) and a stand-in certificate block. The sim checks the assertion's claims but
/// not its signature, and the adapter only hashes the certificate for `x5t`.
fn test_certificate_pem() -> String {
    use aws_lc_rs::encoding::AsDer;
    use base64::Engine;
    let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("an RSA key");
    let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&key).expect("PKCS#8");
    let b64 = |der: &[u8]| {
        let text = base64::engine::general_purpose::STANDARD.encode(der);
        text.as_bytes().chunks(64).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join("\n")
    };
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        b64(b"stand-in certificate der"),
        b64(pkcs8.as_ref())
    )
}

// ---------------------------------------------------------------------------------------------
// Secrets stay in their lane

/// A tracing writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The longest run of base64url characters: access tokens and secrets are long ones; ids, paths and
/// words are short (or hyphenated GUIDs, 36 characters).
fn longest_token_like_run(text: &str) -> usize {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '~' || c == '.'))
        .map(str::len)
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn no_secret_or_token_appears_in_errors_or_logs() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let management_secret = "mgmt-Secret-Value-do-not-log-9f8e7d6c5b4a3210fedcba9876543210";
    let sim = sim(SimOptions {
        apps: 3,
        management_secret: management_secret.to_owned(),
        replication_delay: Duration::from_secs(30),
        ..Default::default()
    })
    .await;
    let client = client(&sim);
    let app = sim.tenant().add_app(NewApp::named("payroll"));
    let object = app_id(app.object_id);
    let client_id = ClientId::from_uuid(app.app_id);

    let mut errors: Vec<Error> = Vec::new();
    let added = client.add_password(object, "rotator:1", in_a_year(&sim)).await.unwrap();
    assert!(!client.secret_signs_in(client_id, &added.secret).await.unwrap());
    sim.advance_clock(Duration::from_secs(31));
    assert!(client.secret_signs_in(client_id, &added.secret).await.unwrap());
    for kind in [FaultKind::ServerError(503), FaultKind::Forbidden, FaultKind::Concurrency] {
        sim.faults().push(Fault::new(Match::path("addPassword"), kind).times(10));
        errors.extend(client.add_password(object, "rotator:2", in_a_year(&sim)).await.err());
        sim.faults().clear();
    }
    sim.faults().push(
        Fault::new(Match::path("/v1.0/applications").method("GET"), FaultKind::TooManyRequests { retry_after: None })
            .times(10),
    );
    errors.extend(client.applications(Cursor::Full).await.err());
    sim.faults().clear();
    let wrong = TokenSource::ClientSecret {
        client_id: ClientId::parse(&sim.management_client_id()).unwrap(),
        secret: SecretValue::new(management_secret.replace("do-not", "wrong")),
    };
    errors.extend(client_with(&sim, wrong, fast_retry()).applications(Cursor::Full).await.err());
    assert_eq!(errors.len(), 5, "{errors:?}");

    drop(_guard);
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("trying again"), "the retries were logged");
    let texts: Vec<String> = errors.iter().flat_map(|e| [e.to_string(), format!("{e:?}"), e.chain()]).collect();
    for (what, text) in std::iter::once(("logs", &logs)).chain(texts.iter().map(|t| ("error", t))) {
        assert!(!text.contains(added.secret.expose()), "the new secret leaked into {what}");
        assert!(!text.contains(management_secret), "the management secret leaked into {what}");
        assert!(!text.contains(&management_secret.replace("do-not", "wrong")), "a wrong secret leaked into {what}");
        assert!(!text.to_ascii_lowercase().contains("bearer "), "a bearer token leaked into {what}");
        assert!(!text.contains("secretText"), "addPassword's answer leaked into {what}");
    }
    for text in &texts {
        assert!(longest_token_like_run(text) < 60, "something token-like in an error: {text}");
    }
    let suspicious: Vec<&str> = logs.lines().filter(|l| longest_token_like_run(l) >= 60).collect();
    assert!(suspicious.is_empty(), "token-like text in the logs: {suspicious:#?}");
}

/// The rotator's run-step role, as STS knows it, and the federated credential that trusts it.
const FEDERATED_ROLE: &str = "arn:aws:iam::123456789012:role/entra-rotator-sync";

fn federated(sim: &Sim, audience: &str) -> TokenSource {
    sim.federation().add_aws_role("ASIAFEDERATEDSYNC", "federated/secret", Some("session-token"), FEDERATED_ROLE);
    federated_signing_as(sim, audience, "ASIAFEDERATEDSYNC", "federated/secret")
}

/// AWS federation signing STS requests with these keys (which STS may or may not know).
fn federated_signing_as(sim: &Sim, audience: &str, key_id: &str, secret: &str) -> TokenSource {
    TokenSource::AwsFederation {
        client_id: ClientId::parse(&sim.management_client_id()).expect("ok"),
        audience: audience.to_owned(),
        region: Some("eu-west-1".to_owned()),
        sts_endpoint: Some(sim.federation().sts_endpoint()),
        aws: Some(entra_rotator::adapters::aws_identity::AwsSigning::from_keys(
            key_id,
            secret,
            Some("session-token"),
            None,
        )),
        extra_ca_pem: None,
    }
}

#[tokio::test]
async fn an_sts_refusal_is_a_permanent_sign_in_failure_naming_sts_and_the_code_in_words() {
    let sim = sim(SimOptions { apps: 1, ..Default::default() }).await;
    let audience = entra_sim::ENTRA_TOKEN_EXCHANGE_AUDIENCE;
    let management = uuid::Uuid::parse_str(&sim.management_client_id()).expect("ok");
    let federation = sim.federation();
    federation.add_federated_credential(management, &federation.aws_issuer(), FEDERATED_ROLE, audience);
    federation.add_aws_role("ASIAFEDERATEDSYNC", "federated/secret", Some("session-token"), FEDERATED_ROLE);
    let denied = "User: arn:aws:sts::123456789012:assumed-role/entra-rotator-sync/sync is not authorized to \
                  perform: sts:GetWebIdentityToken";
    let cases = [
        // The simulated STS's own refusals: a key it does not know, a signature it cannot verify.
        (
            "InvalidClientTokenId",
            "does not recognise the rotator's AWS access key",
            "ASIANOBODYKNOWS",
            "federated/secret",
            None,
        ),
        (
            "SignatureDoesNotMatch",
            "could not verify the request's signature",
            "ASIAFEDERATEDSYNC",
            "wrong/secret",
            None,
        ),
        // A role whose policy does not allow the call.
        (
            "AccessDenied",
            "not allowed sts:GetWebIdentityToken",
            "ASIAFEDERATEDSYNC",
            "federated/secret",
            Some(FaultKind::sts_error(403, "AccessDenied", denied)),
        ),
    ];
    for (code, words, key_id, secret, fault) in cases {
        if let Some(fault) = fault {
            sim.faults().push(Fault::new(Match::path("/aws/sts/"), fault));
        }
        let Err(error) = client_with(&sim, federated_signing_as(&sim, audience, key_id, secret), fast_retry())
            .applications(Cursor::Full)
            .await
        else {
            panic!("signed in despite STS's {code}")
        };
        sim.faults().clear();

        assert!(!error.is_transient(), "{code} is not worth retrying: {error:?}");
        assert!(matches!(&error, Error::Directory { service: "AWS STS", code: c, .. } if c == code), "{error:?}");
        let text = error.to_string();
        assert!(text.contains(words), "{code} is explained in words: {text}");
        assert!(!text.contains(secret), "the secret access key leaked: {text}");
        assert!(!text.contains("session-token"), "the session token leaked: {text}");
    }
    assert_eq!(federation.tokens_issued(), 0);
}

#[tokio::test]
async fn sts_throttling_or_failing_is_a_transient_sign_in_failure() {
    let sim = sim(SimOptions { apps: 1, ..Default::default() }).await;
    let audience = entra_sim::ENTRA_TOKEN_EXCHANGE_AUDIENCE;
    let cases = [
        (FaultKind::sts_error(400, "Throttling", "Rate exceeded"), "Throttling", "throttling"),
        (
            FaultKind::sts_error(503, "ServiceUnavailable", "Service is unable to handle request."),
            "ServiceUnavailable",
            "STS failed to answer",
        ),
    ];
    for (fault, code, words) in cases {
        // More than the SDK's own retries, so the failure reaches the rotator.
        sim.faults().push(Fault::new(Match::path("/aws/sts/"), fault).times(10));
        let Err(error) = client_with(&sim, federated(&sim, audience), fast_retry()).applications(Cursor::Full).await
        else {
            panic!("signed in despite STS's {code}")
        };
        sim.faults().clear();

        assert!(error.is_transient(), "{code} is worth retrying later: {error:?}");
        assert!(matches!(&error, Error::Directory { service: "AWS STS", code: c, .. } if c == code), "{error:?}");
        assert!(error.to_string().contains(words), "{error}");
    }
}

#[tokio::test]
async fn aws_federation_signs_in_with_an_sts_web_identity_token_and_no_stored_secret() {
    let sim = sim(SimOptions { apps: 2, ..Default::default() }).await;
    let management = uuid::Uuid::parse_str(&sim.management_client_id()).expect("ok");
    let federation = sim.federation();
    federation.add_federated_credential(
        management,
        &federation.aws_issuer(),
        FEDERATED_ROLE,
        entra_sim::ENTRA_TOKEN_EXCHANGE_AUDIENCE,
    );
    let client = client_with(&sim, federated(&sim, entra_sim::ENTRA_TOKEN_EXCHANGE_AUDIENCE), fast_retry());

    let page = client.applications(Cursor::Full).await.expect("ok");

    assert_eq!(page.items.len(), 2);
    assert_eq!(federation.tokens_issued(), 1, "one web identity token for one access token");
}

#[tokio::test]
async fn aws_federation_is_refused_for_a_wrong_audience_subject_or_an_expired_assertion() {
    let sim = sim(SimOptions { apps: 1, ..Default::default() }).await;
    let management = uuid::Uuid::parse_str(&sim.management_client_id()).expect("ok");
    let federation = sim.federation();
    let issuer = federation.aws_issuer();

    // The credential trusts another role: the subject does not match.
    federation.add_federated_credential(
        management,
        &issuer,
        "arn:aws:iam::123456789012:role/other",
        "api://AzureADTokenExchange",
    );
    let Err(error) = client_with(&sim, federated(&sim, entra_sim::ENTRA_TOKEN_EXCHANGE_AUDIENCE), fast_retry())
        .applications(Cursor::Full)
        .await
    else {
        panic!("expected a refusal")
    };
    assert!(!error.is_transient(), "{error:?}");
    assert!(error.to_string().contains("AADSTS700213"), "{error}");

    // The right role, but a token for another audience.
    federation.add_federated_credential(management, &issuer, FEDERATED_ROLE, "api://AzureADTokenExchange");
    let Err(error) =
        client_with(&sim, federated(&sim, "api://SomethingElse"), fast_retry()).applications(Cursor::Full).await
    else {
        panic!("expected a refusal")
    };
    assert!(error.to_string().contains("AADSTS700212"), "{error}");

    // An expired assertion, and one signed by someone else, presented directly to the token endpoint.
    let now = entra_rotator::ports::Clock::now(&entra_rotator::adapters::system_clock::SystemClock).unix_timestamp();
    let expired = federation.sign_token(&serde_json::json!({
        "iss": issuer, "sub": FEDERATED_ROLE, "aud": "api://AzureADTokenExchange", "iat": now - 3600, "exp": now - 1800,
    }));
    let forged = {
        let good = federation.sign_token(&serde_json::json!({
            "iss": issuer, "sub": FEDERATED_ROLE, "aud": "api://AzureADTokenExchange", "iat": now, "exp": now + 300,
        }));
        let (signed, _) = good.rsplit_once('.').expect("ok");
        format!("{signed}.{}", "A".repeat(342))
    };
    let http = reqwest::Client::builder()
        .tls_certs_merge(reqwest::Certificate::from_pem_bundle(sim.ca_pem().as_bytes()).expect("ok"))
        .build()
        .expect("ok");
    for (assertion, code) in [(expired, "AADSTS700024"), (forged, "AADSTS50013")] {
        let answer: serde_json::Value = http
            .post(format!("{}{}/oauth2/v2.0/token", sim.authority_host(), sim.tenant_id()))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", sim.management_client_id().as_str()),
                ("scope", "https://graph.microsoft.com/.default"),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", assertion.as_str()),
            ])
            .send()
            .await
            .expect("ok")
            .json()
            .await
            .expect("ok");
        assert!(answer["error_description"].as_str().unwrap_or_default().starts_with(code), "{answer}");
    }
}

#[tokio::test]
async fn workload_identity_signs_in_with_the_federated_token_its_file_holds_and_only_for_its_subject() {
    let sim = sim(SimOptions { apps: 1, ..Default::default() }).await;
    let management = uuid::Uuid::parse_str(&sim.management_client_id()).expect("a GUID");
    let federation = sim.federation();
    let issuer = federation.aws_issuer();
    let subject = "system:serviceaccount:entra-rotator:entra-rotator";
    federation.add_federated_credential(management, &issuer, subject, "api://AzureADTokenExchange");
    let now = entra_rotator::ports::Clock::now(&entra_rotator::adapters::system_clock::SystemClock).unix_timestamp();
    let token = |sub: &str| {
        federation.sign_token(&serde_json::json!({
            "iss": issuer, "sub": sub, "aud": "api://AzureADTokenExchange", "iat": now, "exp": now + 3600,
        }))
    };
    // The projected service account token, as AKS workload identity (or a CI job) writes it.
    let dir = tempfile::tempdir().expect("a folder");
    let file = dir.path().join("azure-identity-token");
    std::fs::write(&file, token("system:serviceaccount:other:intruder")).expect("written");
    let source = || TokenSource::WorkloadIdentity {
        client_id: ClientId::parse(&sim.management_client_id()).expect("a GUID"),
        token_file: file.clone(),
    };
    let Err(error) = client_with(&sim, source(), fast_retry()).applications(Cursor::Full).await else {
        panic!("a token about another subject signed in")
    };
    assert!(error.to_string().contains("AADSTS700213"), "{error}");

    std::fs::write(&file, token(subject)).expect("written");
    let page = client_with(&sim, source(), fast_retry()).applications(Cursor::Full).await.expect("signed in");
    assert_eq!(page.items.len(), 1);
}

/// A new app registration for the rotator's own identity, holding `roles`, with a secret; and the
/// client id of another application of the tenant, one it may or may not rotate.
fn rotator_identity(sim: &Sim, roles: &[entra_sim::GraphRole]) -> (entra_sim::AppSummary, String, ClientId) {
    let tenant = sim.tenant();
    let identity = tenant.add_app(NewApp::named("entra-rotator-prod").with_service_principal());
    let secret = tenant.add_password_to(identity.object_id, sim.now() + time::Duration::days(180)).expect("added");
    sim.permissions().grant(identity.app_id, roles);
    let target = tenant.apps().into_iter().find(|a| a.object_id != identity.object_id).expect("another app");
    (identity, secret.secret_text, ClientId::parse(&target.app_id.to_string()).expect("a GUID"))
}

/// A Graph client signed in as the rotator's identity, remembering nothing yet.
fn client_as(sim: &Sim, identity: &entra_sim::AppSummary, secret: &str) -> GraphClient {
    let source = TokenSource::ClientSecret {
        client_id: ClientId::parse(&identity.app_id.to_string()).expect("a GUID"),
        secret: SecretValue::new(secret.to_owned()),
    };
    client_with(sim, source, fast_retry())
}

fn target_object(sim: &Sim, client: ClientId) -> uuid::Uuid {
    sim.tenant().apps().into_iter().find(|a| a.app_id.to_string() == client.to_string()).expect("the app").object_id
}

#[tokio::test]
async fn preflight_asks_again_when_the_remembered_no_is_stale_after_a_role_is_granted() {
    use entra_rotator::usecases::preflight::{CheckOutcome, write_permission_check};
    use entra_sim::GraphRole;
    let sim = sim(SimOptions { apps: 3, ..Default::default() }).await;
    let (identity, secret, target) = rotator_identity(&sim, &[GraphRole::ApplicationReadAll]);
    let client = client_as(&sim, &identity, &secret);

    // Read-only: the answer "no" is remembered for the next rotations.
    let before = write_permission_check(&client, target).await;
    assert_eq!(before.outcome, CheckOutcome::Failed, "{before:?}");
    assert!(before.reason.contains("Application.ReadWrite.All"), "{before:?}");

    // Granted at once, well within the five minutes the answer is remembered.
    sim.permissions().grant(identity.app_id, &[GraphRole::ApplicationReadAll, GraphRole::ApplicationReadWriteAll]);
    let after = write_permission_check(&client, target).await;

    assert_eq!(after.outcome, CheckOutcome::Ok, "the stale no was asked again: {after:?}");
    assert!(after.reason.contains("Application.ReadWrite.All"), "{after:?}");
    // Two reads for the first check (the remembered no, asked again), one for the second: the
    // remembered answer was used, and asked again at once because it was a no.
    assert_eq!(requests_to(&sim, "GET", "/appRoleAssignments").len(), 3);
    let remembered = client.access(false).await.expect("the permissions");
    assert_eq!(remembered.may_add_password(target), Some(true), "the fresh yes is what is remembered now");
}

#[tokio::test]
async fn preflight_asks_again_when_the_remembered_no_is_stale_after_an_owner_is_added() {
    use entra_rotator::usecases::preflight::{CheckOutcome, write_permission_check};
    use entra_sim::GraphRole;
    let sim = sim(SimOptions { apps: 3, ..Default::default() }).await;
    let (identity, secret, target) = rotator_identity(&sim, &[GraphRole::ApplicationReadWriteOwnedBy]);
    let client = client_as(&sim, &identity, &secret);

    let before = write_permission_check(&client, target).await;
    assert_eq!(before.outcome, CheckOutcome::Failed, "{before:?}");
    assert!(before.reason.contains("not an owner of this application"), "{before:?}");

    sim.permissions().add_owner(target_object(&sim, target), identity.app_id);
    let after = write_permission_check(&client, target).await;

    assert_eq!(after.outcome, CheckOutcome::Ok, "the stale no was asked again: {after:?}");
    assert!(after.reason.contains("an owner of this application"), "{after:?}");
}

#[tokio::test]
async fn a_throttled_permission_read_is_retried_or_left_for_review_never_a_missing_permission() {
    use entra_rotator::domain::ids::IntegrationId;
    use entra_rotator::domain::policy::PolicySet;
    use entra_rotator::usecases::integration_check::{Verdict, check_integration};
    use entra_rotator::usecases::preflight::{CheckOutcome, write_permission_check};
    use entra_sim::GraphRole;
    let sim = sim(SimOptions { apps: 3, ..Default::default() }).await;
    let (identity, secret, target) = rotator_identity(&sim, &[GraphRole::ApplicationReadWriteOwnedBy]);
    let client = client_as(&sim, &identity, &secret);
    sim.permissions().add_owner(target_object(&sim, target), identity.app_id);
    let throttled = |path: &str, times: u32| {
        sim.faults().push(
            Fault::new(Match::path(path).method("GET"), FaultKind::TooManyRequests { retry_after: None }).times(times),
        );
    };

    // Throttled once on each read: retried, and the answer is the real one.
    throttled("/appRoleAssignments", 1);
    throttled("/ownedObjects", 1);
    let retried = write_permission_check(&client, target).await;
    assert_eq!(retried.outcome, CheckOutcome::Ok, "{retried:?}");
    assert_eq!(sim.faults().pending(), 0, "both faults were met");

    // Throttled past every retry, on either read, with nothing remembered or with a remembered no:
    // left for review, never "failed".
    let other = sim
        .tenant()
        .apps()
        .into_iter()
        .find(|a| a.object_id != identity.object_id && a.app_id.to_string() != target.to_string())
        .expect("a third app");
    let not_owned = ClientId::parse(&other.app_id.to_string()).expect("a GUID");
    for path in ["/appRoleAssignments", "/ownedObjects"] {
        let fresh_client = client_as(&sim, &identity, &secret);
        throttled(path, 50);
        let check = write_permission_check(&fresh_client, target).await;
        sim.faults().clear();
        assert_eq!(check.outcome, CheckOutcome::ManualReview, "{path}: {check:?}");
        assert!(check.reason.contains("could not read the identity's permissions"), "{path}: {check:?}");
        assert!(check.reason.contains("429"), "{path}: {check:?}");

        // The remembered "no" for an application it does not own is asked again, and throttled.
        assert_eq!(write_permission_check(&fresh_client, not_owned).await.outcome, CheckOutcome::Failed);
        throttled(path, 50);
        let check = write_permission_check(&fresh_client, not_owned).await;
        sim.faults().clear();
        assert_eq!(check.outcome, CheckOutcome::ManualReview, "{path}, remembered no: {check:?}");
    }

    // `rotator integrations check` says the same as a warning.
    for path in ["/appRoleAssignments", "/ownedObjects"] {
        throttled(path, 50);
        let integration = IntegrationId::parse("contoso").expect("an id");
        let report = check_integration(&integration, &client, None, &PolicySet::default()).await;
        sim.faults().clear();
        let write = report.probes.iter().find(|p| p.check == "add passwords").expect("the write probe");
        assert_eq!(write.verdict, Verdict::Warning, "{path}: {write:?}");
        assert!(write.detail.contains("could not read the identity's permissions"), "{path}: {write:?}");
    }
}
