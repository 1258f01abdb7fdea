//! The stored-secret fallback rotating itself on AWS (issue 15, item 4): the secret kept in a
//! Secrets Manager secret (`client_secret_arn`, in the moto server), which `rotator_own_secret`
//! gives a new `AWSCURRENT` version; the wiring the Lambdas use (`services_with_aws`, the
//! deployment's AWS identity and endpoint); the world of `tests/flows/own_secret.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Mutex;

use entra_rotator::adapters::aws_identity::AwsSigning;
use entra_rotator::domain::execution::{Cleanup, ExecutionStatus};
use entra_rotator::ports::Store;
use entra_rotator_aws::testing::{endpoint, sdk_config, unique};

#[path = "../../tests/flows/own_secret.rs"]
#[allow(dead_code)]
mod own;
use own::{LogBuffer, OwnWorld};

/// The world with its secret in Secrets Manager, and the secret's client and ARN.
async fn world() -> (OwnWorld, aws_sdk_secretsmanager::Client, String) {
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk_config().await);
    let arn = Mutex::new(String::new());
    let aws = AwsSigning::from_keys("testing", "testing", None, Some("us-east-1")).with_endpoint_url(endpoint());
    let w = OwnWorld::new(
        async |_: &Path, secret: &str| {
            let created =
                secrets.create_secret().name(unique("entra-client-secret")).secret_string(secret).send().await.unwrap();
            *arn.lock().unwrap() = created.arn().unwrap().to_owned();
            format!("client_secret_arn = \"{}\"", created.arn().unwrap())
        },
        Some(aws),
    )
    .await;
    let arn = arn.into_inner().unwrap();
    (w, secrets, arn)
}

/// The secret's `AWSCURRENT` value.
async fn current(secrets: &aws_sdk_secretsmanager::Client, arn: &str) -> String {
    let got = secrets.get_secret_value().secret_id(arn).send().await.unwrap();
    got.secret_string().unwrap().to_owned()
}

/// The secret's versions and their staging labels.
async fn versions(secrets: &aws_sdk_secretsmanager::Client, arn: &str) -> Vec<(String, Vec<String>)> {
    let listed = secrets.list_secret_version_ids().secret_id(arn).include_deprecated(true).send().await.unwrap();
    listed
        .versions()
        .iter()
        .map(|v| (v.version_id().unwrap_or_default().to_owned(), v.version_stages().to_vec()))
        .collect()
}

#[tokio::test]
async fn the_rotator_rotates_its_own_secrets_manager_secret_signs_in_with_the_new_one_and_removes_the_old_after_grace()
{
    let (logs, _guard) = LogBuffer::capture();
    let (w, secrets, arn) = world().await;
    assert_eq!(
        w.own_sign_ins_since(0).last(),
        Some(&Some(w.old_key)),
        "the first sync signed in with the stored secret"
    );
    assert_eq!(versions(&secrets, &arn).await.len(), 1);

    let e = w.request().await;
    let done = w.run(&e).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:?}");
    let new_key = done.new_key_id.unwrap().as_uuid();

    // (a) Secrets Manager holds the new secret as AWSCURRENT, the old one as AWSPREVIOUS.
    let new_secret = current(&secrets, &arn).await;
    assert_ne!(new_secret, w.old_secret);
    assert!(new_secret.len() > 10);
    let listed = versions(&secrets, &arn).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.iter().any(|(_, stages)| stages.contains(&"AWSPREVIOUS".to_owned())), "{listed:?}");
    let mut both = vec![w.old_key, new_key];
    both.sort();
    assert_eq!(w.tenant_keys(), both, "both secrets stay valid through the grace period");

    // (b) the next Graph token is asked with the new secret, with no restart.
    assert_eq!(w.sign_ins_of_a_sync().await, vec![Some(new_key)], "one token, asked with the new secret");

    // A redelivered step whose value is already in place writes no second version.
    w.run_step_again(&done, &new_secret, None).await.unwrap();
    assert_eq!(versions(&secrets, &arn).await.len(), 2);

    // (c) after the grace period the old secret is removed, and signing in still works.
    w.pass_grace();
    w.cleanup().await;
    let after = w.store.get_execution(&e.id).await.unwrap().unwrap();
    assert!(matches!(after.cleanup, Cleanup::Done { .. }), "{:?}", after.cleanup);
    assert_eq!(w.tenant_keys(), vec![new_key]);
    w.sync().await;

    // (d) the new secret is in Secrets Manager and nowhere else: no log line, store item or message.
    w.assert_secrets_nowhere(&logs, &after, &new_secret).await;
}

#[tokio::test]
async fn a_secret_the_rotator_may_not_write_fails_the_step_and_the_old_secret_stays() {
    let (w, secrets, arn) = world().await;
    let e = w.request().await;
    let mut deleted = false;
    let failed = w
        .run_with(&e, async |now| {
            if now.new_key_id.is_some() && !deleted {
                // After preflight and the new secret: the secret is scheduled for deletion, so
                // PutSecretValue is refused (InvalidRequestException).
                secrets.delete_secret().secret_id(&arn).recovery_window_in_days(7).send().await.unwrap();
                deleted = true;
            }
        })
        .await;
    assert_eq!(failed.status, ExecutionStatus::Failed, "{failed:?}");
    assert!(failed.new_key_id.is_some(), "it failed at the step, after the new secret was created");
    assert!(failed.error.clone().unwrap_or_default().contains("Secrets Manager"), "{:?}", failed.error);
    w.pass_grace();
    w.cleanup().await;
    assert!(w.tenant_keys().contains(&w.old_key), "the old secret is never removed after a failed rollout");
}

#[tokio::test]
async fn a_new_secret_that_does_not_sign_in_is_put_back_as_awscurrent_and_a_cancel_removes_it() {
    let (w, secrets, arn) = world().await;
    own::a_new_secret_that_does_not_sign_in_is_put_back_and_a_cancel_removes_it(&w, async || {
        current(&secrets, &arn).await
    })
    .await;
}
