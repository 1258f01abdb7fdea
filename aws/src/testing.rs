//! The moto harness: tests of the AWS adapters talk to a local moto server (the AWS emulator from
//! PyPI) that `make test` installs and starts, and whose address it passes in
//! `ROTATOR_TEST_AWS_ENDPOINT`. Each test makes resources with names of its own, so tests share one
//! server and run in parallel.

// Harness code for tests: a missing emulator is a failed test with the reason, never a skip.
#![allow(clippy::expect_used, clippy::panic)]

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;

/// The environment variable naming the running moto server.
pub const ENDPOINT_VAR: &str = "ROTATOR_TEST_AWS_ENDPOINT";

/// The moto server's URL. Panics with how to get one when it is not running.
pub fn endpoint() -> String {
    #[allow(clippy::disallowed_methods)] // test harness: the emulator's address is the only input
    let found = std::env::var(ENDPOINT_VAR).ok().filter(|v| !v.is_empty());
    found.unwrap_or_else(|| {
        panic!(
            "this test needs the moto server (the local AWS emulator): run `make test`, which installs and \
             starts it, or `scripts/with-moto.sh cargo test ...`; it sets {ENDPOINT_VAR}"
        )
    })
}

/// An SDK configuration for moto: its endpoint, a fixed region, fixed test credentials.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint())
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .load()
        .await
}

/// A name no other test uses: `prefix-<12 hex digits>`.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
}
