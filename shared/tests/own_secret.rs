//! The stored-secret fallback rotating itself on one machine (issue 15, item 4): the secret kept
//! in `client_secret_file`, the world of `tests/flows/own_secret.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use entra_rotator::domain::execution::{Cleanup, ExecutionStatus};
use entra_rotator::domain::ids::ClientId;
use entra_rotator::ports::Store;
use entra_rotator::usecases::intervention::cancel;
use entra_sim::FaultKind;
use uuid::Uuid;

#[path = "../../tests/flows/own_secret.rs"]
#[allow(dead_code)]
mod own;
use own::{LogBuffer, OwnWorld};

const SECRET_FILE: &str = "secrets/entra-client-secret";

fn write_private(path: &Path, text: &str) {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).unwrap().write_all(text.as_bytes()).unwrap();
}

/// The world with its secret in a private file beside the configuration, as read by
/// `client_secret_file`.
async fn world() -> (OwnWorld, PathBuf) {
    let w = OwnWorld::new(
        async |dir: &Path, secret: &str| {
            std::fs::create_dir(dir.join("secrets")).unwrap();
            write_private(&dir.join(SECRET_FILE), &format!("{secret}\n"));
            format!("client_secret_file = \"{SECRET_FILE}\"")
        },
        None,
    )
    .await;
    let file = w.dir.path().join(SECRET_FILE);
    (w, file)
}

fn text_of(file: &Path) -> String {
    std::fs::read_to_string(file).unwrap()
}

#[tokio::test]
async fn the_rotator_rotates_its_own_secret_file_signs_in_with_the_new_one_and_removes_the_old_after_grace() {
    let (logs, _guard) = LogBuffer::capture();
    let (w, file) = world().await;
    assert_eq!(
        w.own_sign_ins_since(0).last(),
        Some(&Some(w.old_key)),
        "the first sync signed in with the file's secret"
    );

    let e = w.request().await;
    let done = w.run(&e).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:?}");
    let new_key = done.new_key_id.unwrap().as_uuid();

    // (a) the file holds the new secret, privately, in the form it was read in.
    let stored = text_of(&file);
    let new_secret = stored.strip_suffix('\n').unwrap().to_owned();
    assert_ne!(new_secret, w.old_secret);
    assert!(new_secret.len() > 10);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let mut both = vec![w.old_key, new_key];
    both.sort();
    assert_eq!(w.tenant_keys(), both, "both secrets stay valid through the grace period");

    // (b) the next Graph token is asked with the new secret, with no restart.
    assert_eq!(w.sign_ins_of_a_sync().await, vec![Some(new_key)], "one token, asked with the new secret");

    // A redelivered step whose value is already in place changes nothing (and still verifies).
    let modified = std::fs::metadata(&file).unwrap().modified().unwrap();
    w.run_step_again(&done, &new_secret, None).await.unwrap();
    assert_eq!(std::fs::metadata(&file).unwrap().modified().unwrap(), modified);
    // Run for another application, the step refuses: it stores only the integration's own secret.
    let other = ClientId::parse(&Uuid::new_v4().to_string()).unwrap();
    let refused = w.run_step_again(&done, &new_secret, Some(other)).await.unwrap_err();
    assert!(!refused.retryable && refused.message.contains("own secret"), "{refused:?}");
    assert_eq!(text_of(&file), stored);

    // (c) after the grace period the old secret is removed, and signing in still works.
    w.cleanup().await;
    assert_eq!(w.tenant_keys().len(), 2, "not before the grace period ends");
    w.pass_grace();
    w.cleanup().await;
    let after = w.store.get_execution(&e.id).await.unwrap().unwrap();
    assert!(matches!(after.cleanup, Cleanup::Done { .. }), "{:?}", after.cleanup);
    assert_eq!(w.tenant_keys(), vec![new_key]);
    assert!(w.sign_ins_of_a_sync().await.iter().all(|k| *k == Some(new_key)));

    // (d) the new secret is in the file and nowhere else: no log line, store item or message.
    w.assert_secrets_nowhere(&logs, &after, &new_secret).await;
}

#[tokio::test]
async fn a_secret_file_that_cannot_be_written_is_refused_by_preflight_or_fails_the_step_and_nothing_is_removed() {
    let (w, file) = world().await;
    let folder = file.parent().unwrap().to_path_buf();
    let moved = folder.with_file_name("moved-away");

    // Preflight: the folder is gone, so no secret is created.
    std::fs::rename(&folder, &moved).unwrap();
    let e = w.request().await;
    let refused = w.run(&e).await;
    assert_eq!(refused.status, ExecutionStatus::Failed, "{refused:?}");
    assert!(refused.new_key_id.is_none(), "refused before any secret was created");
    assert!(refused.error.unwrap_or_default().contains("entra-client-secret"));
    assert_eq!(w.tenant_keys(), vec![w.old_key]);

    // The step: the folder goes after preflight passed; the step fails, the old secret stays.
    std::fs::rename(&moved, &folder).unwrap();
    let e = w.request().await;
    let failed = w
        .run_with(&e, async |now| {
            if now.new_key_id.is_some() && folder.exists() {
                // The new secret exists in the tenant: take the folder away before the step runs.
                std::fs::rename(&folder, &moved).unwrap();
            }
        })
        .await;
    assert_eq!(failed.status, ExecutionStatus::Failed, "{failed:?}");
    assert!(failed.new_key_id.is_some(), "this time it failed at the step, after the new secret was created");
    assert!(failed.error.clone().unwrap_or_default().contains("entra-client-secret"), "{:?}", failed.error);
    w.pass_grace();
    w.cleanup().await;
    assert!(w.tenant_keys().contains(&w.old_key), "the old secret is never removed after a failed rollout");
    // The secret the rotator signs in with is still the old one, and it still works.
    std::fs::rename(&moved, &folder).unwrap();
    assert_eq!(text_of(&file).trim_end(), w.old_secret);
    assert!(w.sign_ins_of_a_sync().await.iter().all(|k| *k == Some(w.old_key)));
}

#[tokio::test]
async fn a_new_secret_that_does_not_sign_in_is_taken_out_of_the_file_and_a_cancel_removes_it() {
    let (w, file) = world().await;
    own::a_new_secret_that_does_not_sign_in_is_put_back_and_a_cancel_removes_it(&w, async || text_of(&file)).await;
}

#[tokio::test]
async fn a_new_secret_that_cannot_be_taken_out_of_the_file_stays_and_a_cancel_keeps_it() {
    let (logs, _guard) = LogBuffer::capture();
    let (w, file) = world().await;
    let folder = file.parent().unwrap().to_path_buf();
    let moved = folder.with_file_name("moved-away");
    // The folder goes while the step waits for its sign-in: the new secret is in the file by then,
    // and the previous one cannot be put back.
    let late = FaultKind::Late { by: Duration::from_secs(2), then: Box::new(own::invalid_client()) };
    let (from, to) = (folder.clone(), moved.clone());
    let failed = own::run_refused(&w, late, move || std::fs::rename(from, to).unwrap()).await;
    let error = failed.error.clone().unwrap_or_default();
    assert!(error.contains("entra-client-secret"), "{error}");
    let new_key = failed.new_key_id.unwrap().as_uuid();

    let refused = cancel(&w.services, failed.id, "ops").await.unwrap_err().to_string();
    assert!(refused.contains("left it in place") && refused.contains("confirm"), "{refused}");
    assert!(w.tenant_keys().contains(&new_key) && w.tenant_keys().contains(&w.old_key), "both secrets stay");

    // Back in place, the file holds the new secret, and the rotator signs in with it.
    std::fs::rename(&moved, &folder).unwrap();
    let stored = text_of(&file).trim_end().to_owned();
    assert_ne!(stored, w.old_secret);
    assert_eq!(w.sign_ins_of_a_sync().await, vec![Some(new_key)], "a new token, asked with the new secret");
    let after = w.store.get_execution(&failed.id).await.unwrap().unwrap();
    w.assert_secrets_nowhere(&logs, &after, &stored).await;
}
