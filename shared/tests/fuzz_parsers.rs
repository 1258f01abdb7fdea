//! A bounded fuzz run over the two readers of operator input: the step parser and the
//! configuration reader. Valid documents are mutated (bytes flipped, pieces repeated or cut,
//! hostile values spliced in: huge numbers, durations past the calendar, long words, forbidden
//! addresses) by a seeded generator, so a failure replays; every input must give a plan, a
//! configuration or an error, never a panic. Part of `make test` (`cargo test --workspace`); it
//! stops after a fixed number of cases or a time budget, whichever comes first.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::{Duration, Instant};

use entra_rotator::config::Config;
use entra_rotator::domain::steps::parse_steps;

const CASES: usize = 20_000;
const BUDGET: Duration = Duration::from_secs(20);

/// xorshift64*: small, seeded, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Values that have broken parsers elsewhere, spliced in as they are.
const HOSTILE: &[&str] = &[
    "\"10000y\"",
    "\"0s\"",
    "\"99999999999999999999d\"",
    "18446744073709551616",
    "-1",
    "1e309",
    "null",
    "[]",
    "{}",
    "\"\\u0000\"",
    "\"http://169.254.169.254/\"",
    "\"http://[::ffff:127.0.0.1]/\"",
    "\"https://0xA9FEA9FE/\"",
    "\"../../../../etc/passwd\"",
    "\"/dev/zero\"",
    "\"é😀\u{202e}\"",
    "\"",
    "]",
    "}",
    "=",
    "[[",
    "\n[policies.x]\n",
];

fn mutate(seed: &str, rng: &mut Rng) -> String {
    let mut bytes = seed.as_bytes().to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(6) {
            0 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                bytes[i] = (rng.next() & 0xff) as u8;
            }
            1 => {
                let end = (at + rng.below(64)).min(bytes.len());
                bytes.drain(at..end);
            }
            2 => {
                let end = (at + rng.below(32)).min(bytes.len());
                let piece = bytes[at..end].to_vec();
                for _ in 0..rng.below(8) {
                    bytes.splice(at..at, piece.iter().copied());
                }
            }
            3 => {
                let word = "a".repeat(rng.below(5_000));
                bytes.splice(at..at, format!("\"{word}\"").into_bytes());
            }
            _ => {
                let hostile = HOSTILE[rng.below(HOSTILE.len())];
                bytes.splice(at..at, hostile.bytes());
            }
        }
    }
    // The readers take text: invalid UTF-8 is the file reader's error, not theirs.
    String::from_utf8_lossy(&bytes).into_owned()
}

fn fixtures(names: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    names.iter().map(|n| std::fs::read_to_string(root.join(n)).unwrap_or_else(|e| panic!("{n}: {e}"))).collect()
}

/// Runs `read` over mutations of `seeds`; returns how many cases ran. A panic fails the test
/// with the seed and case number (never the input, which may be megabytes).
fn fuzz(name: &str, seed: u64, seeds: &[String], read: impl Fn(&str)) -> usize {
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut cases = 0;
    while cases < CASES && started.elapsed() < BUDGET {
        let input = mutate(&seeds[rng.below(seeds.len())], &mut rng);
        if catch_unwind(AssertUnwindSafe(|| read(&input))).is_err() {
            panic!("{name}: case {cases} of seed {seed:#x} panicked ({} bytes of input)", input.len());
        }
        cases += 1;
    }
    cases
}

#[test]
fn the_step_parser_never_panics_on_mutated_documents() {
    let seeds = fixtures(&[
        "tests/fixtures/steps/seed-example-1.json",
        "tests/fixtures/steps/seed-example-2.json",
        "tests/fixtures/steps/all-options.json",
        "examples/steps/iis-app.json",
        "examples/steps/orders-kubernetes.json",
        "examples/steps/orders-eks.json",
    ]);
    let cases = fuzz("parse_steps", 0x5eed_0001, &seeds, |text| {
        let _ = parse_steps(text);
    });
    assert!(cases >= 100, "only {cases} cases ran");
}

#[test]
fn the_configuration_reader_never_panics_on_mutated_files() {
    let example = fixtures(&["examples/rotator.toml"]).remove(0);
    let inline = r#"
listen = "127.0.0.1:8080"
[outbound]
allow = ["127.0.0.1", "10.0.0.0/8"]
deny = ["192.168.0.0/16"]
[schedules]
sync = "1h"
[integrations.contoso]
tenant_id = "aaaaaaaa-0000-0000-0000-000000000001"
client_id = "bbbbbbbb-0000-0000-0000-000000000002"
auth = "client_secret"
[[http.tokens]]
name = "ops"
sha256 = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
roles = ["entra:read"]
[policies.default]
grace_period = "30d"
secret_lifetime = "180d"
[[policies.default.steps]]
type = "http_health_check"
order = 10
config = { url = "https://app.example.com/health", timeout = "1m" }
[[alerts.webhooks]]
url = "https://hooks.example.com/x"
"#
    .to_owned();
    let env: BTreeMap<String, String> =
        [("ROTATOR_CONTOSO_CLIENT_SECRET", "x"), ("ROTATION_WEBHOOK_KEY", "whsec_abc"), ("HOOK_KEY", "k")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    // The example's relative steps_file resolves beside it.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rotator.toml");
    let cases = fuzz("Config::parse", 0x5eed_0002, &[example, inline], |text| {
        let _ = Config::parse(text, &path, &env);
    });
    assert!(cases >= 100, "only {cases} cases ran");
}
