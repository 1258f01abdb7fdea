//! The generated inventory: `--apps N` applications with realistic credential mixes, the same for the
//! same seed and reference time.
//!
//! The mix, per application: most hold one or two client secrets, about one in eight none; about 15%
//! hold a certificate (listed as a `Sign` + `Verify` pair for most, `Verify` only for some); about 3%
//! allow personal Microsoft accounts (and then hold at most two secrets); about 30% have a service
//! principal in the tenant, a fifth of which hold a password of their own.
//!
//! End dates, relative to the reference time: about 5% expired, 5% within 7 days, 10% within 30, 15%
//! within 90, the rest later. Every generated date keeps at least an hour away from the reference time
//! and from the 7/30/90-day boundaries, so counts taken a few minutes later are the same.
//!
//! Randomness comes from SplitMix64, written out here rather than taken from a crate, so the output for
//! a seed never changes with a dependency update.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::state::{
    Collection, Directory, DirectoryObject, KeyCredential, KeyUsage, PERSONAL_ACCOUNT_PASSWORD_LIMIT,
    PasswordCredential, allows_personal_accounts,
};

const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough for test data.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant at these sizes).
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `low..=high`.
    fn between(&mut self, low: i64, high: i64) -> i64 {
        let span = high.abs_diff(low) + 1;
        low + i64::try_from(self.below(span)).unwrap_or(0)
    }

    fn per_mille(&mut self) -> u64 {
        self.below(1000)
    }

    pub(crate) fn uuid(&mut self) -> Uuid {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    fn thumbprint(&mut self) -> [u8; 20] {
        let mut bytes = [0u8; 20];
        for chunk in bytes.chunks_mut(8) {
            let random = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&random[..chunk.len()]);
        }
        bytes
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let index = usize::try_from(self.below(items.len() as u64)).unwrap_or(0);
        &items[index.min(items.len().saturating_sub(1))]
    }
}

/// The tenant id and the management application's client id for a seed.
pub(crate) fn identities(seed: u64) -> (Uuid, Uuid) {
    let mut rng = SplitMix64::new(seed ^ 0x7E4A_04E7_0000_0001);
    (rng.uuid(), rng.uuid())
}

const COMPANIES: &[&str] =
    &["Contoso", "Fabrikam", "Northwind", "Tailspin", "Woodgrove", "Adventure Works", "Litware", "O'Brien & Sons"];
const SYSTEMS: &[&str] = &[
    "Payroll API",
    "HR Portal",
    "Data Sync",
    "Billing Worker",
    "Reporting",
    "CI Deployer",
    "Backup Agent",
    "Mail Relay",
    "Monitoring",
    "Inventory Service",
    "Key Vault Reader",
    "Partner Gateway",
];
const SECRET_NAMES: &[Option<&str>] =
    &[Some("prod"), Some("ci-pipeline"), Some("terraform"), Some("rotation"), Some("client secret"), None];
const HINT_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.~";

/// Seconds from the reference time to a generated end date, by the bucket it should fall in.
fn end_offset(rng: &mut SplitMix64) -> i64 {
    match rng.per_mille() {
        0..50 => rng.between(-365 * DAY, -HOUR),
        50..100 => rng.between(HOUR, 7 * DAY - HOUR),
        100..200 => rng.between(7 * DAY + HOUR, 30 * DAY - HOUR),
        200..350 => rng.between(30 * DAY + HOUR, 90 * DAY - HOUR),
        _ => rng.between(90 * DAY + HOUR, 730 * DAY),
    }
}

/// A validity window: the end by bucket, the start a typical lifetime before it but never after the
/// reference time (a generated credential is always already valid or expired, never future).
fn window(rng: &mut SplitMix64, now: i64) -> (OffsetDateTime, OffsetDateTime) {
    let end = now + end_offset(rng);
    let lifetime = *rng.pick(&[180 * DAY, 365 * DAY, 730 * DAY]);
    let start = (end - lifetime).min(now - DAY - rng.between(0, 30 * DAY));
    (at(start), at(end))
}

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn password(rng: &mut SplitMix64, now: i64) -> PasswordCredential {
    let (start, end) = window(rng, now);
    let hint = (0..3).map(|_| char::from(*rng.pick(HINT_ALPHABET))).collect();
    PasswordCredential {
        key_id: rng.uuid(),
        display_name: rng.pick(SECRET_NAMES).map(str::to_owned),
        hint: Some(hint),
        start,
        end,
        secret: None,
    }
}

fn certificate(rng: &mut SplitMix64, now: i64, subject: &str) -> Vec<KeyCredential> {
    let (start, end) = window(rng, now);
    let thumbprint = rng.thumbprint();
    let usages: &[KeyUsage] =
        if rng.per_mille() < 850 { &[KeyUsage::Sign, KeyUsage::Verify] } else { &[KeyUsage::Verify] };
    usages
        .iter()
        .map(|usage| KeyCredential {
            key_id: rng.uuid(),
            display_name: Some(format!("CN={subject}")),
            thumbprint,
            usage: *usage,
            start,
            end,
        })
        .collect()
}

/// Fill `directory` with `apps` generated applications (and their service principals).
pub(crate) fn populate(directory: &mut Directory, apps: usize, seed: u64, now: OffsetDateTime) {
    let mut rng = SplitMix64::new(seed);
    let now = now.unix_timestamp();
    for index in 0..apps {
        let name = format!("{} {} {:05}", rng.pick(COMPANIES), rng.pick(SYSTEMS), index + 1);
        let sign_in_audience = match rng.per_mille() {
            0..20 => "AzureADandPersonalMicrosoftAccount",
            20..30 => "PersonalMicrosoftAccount",
            30..230 => "AzureADMultipleOrgs",
            _ => "AzureADMyOrg",
        };
        let mut secrets = match rng.per_mille() {
            0..120 => 0,
            120..720 => 1,
            720..960 => 2,
            _ => 3,
        };
        if allows_personal_accounts(Some(sign_in_audience)) {
            secrets = secrets.min(PERSONAL_ACCOUNT_PASSWORD_LIMIT);
        }
        let passwords = (0..secrets).map(|_| password(&mut rng, now)).collect();
        let subject = name.to_lowercase().replace(' ', "-");
        let keys = if rng.per_mille() < 150 { certificate(&mut rng, now, &subject) } else { Vec::new() };
        let app = DirectoryObject {
            id: rng.uuid(),
            app_id: rng.uuid(),
            display_name: name,
            sign_in_audience: Some(sign_in_audience.to_owned()),
            service_principal_type: None,
            passwords,
            keys,
            version: 0,
        };
        if rng.per_mille() < 300 {
            let sp_passwords = if rng.per_mille() < 200 { vec![password(&mut rng, now)] } else { Vec::new() };
            let sp = DirectoryObject {
                id: rng.uuid(),
                app_id: app.app_id,
                display_name: app.display_name.clone(),
                sign_in_audience: None,
                service_principal_type: Some("Application".to_owned()),
                passwords: sp_passwords,
                keys: Vec::new(),
                version: 0,
            };
            directory.insert(Collection::ServicePrincipals, sp);
        }
        directory.insert(Collection::Applications, app);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2030-06-15 12:00 UTC);

    fn generated(apps: usize, seed: u64) -> Directory {
        let mut directory = Directory::default();
        populate(&mut directory, apps, seed, NOW);
        directory
    }

    #[test]
    fn the_same_seed_generates_the_same_tenant_and_another_seed_another() {
        let a = generated(200, 7);
        let b = generated(200, 7);
        let c = generated(200, 8);
        let ids = |d: &Directory| d.store(Collection::Applications).live.keys().copied().collect::<Vec<_>>();
        assert_eq!(ids(&a), ids(&b));
        assert_ne!(ids(&a), ids(&c));
        assert_eq!(identities(7), identities(7));
        assert_ne!(identities(7).0, identities(8).0);
    }

    #[test]
    fn generated_dates_keep_an_hour_away_from_now_and_from_the_7_30_90_day_boundaries() {
        let directory = generated(5000, 3);
        let now = NOW.unix_timestamp();
        let boundaries = [now, now + 7 * DAY, now + 30 * DAY, now + 90 * DAY];
        for collection in [Collection::Applications, Collection::ServicePrincipals] {
            for object in directory.store(collection).live.values() {
                let ends = object
                    .passwords
                    .iter()
                    .map(|p| (p.start, p.end))
                    .chain(object.keys.iter().map(|k| (k.start, k.end)));
                for (start, end) in ends {
                    assert!(start < end);
                    assert!(start.unix_timestamp() < now, "no generated credential starts in the future");
                    for boundary in boundaries {
                        assert!((end.unix_timestamp() - boundary).abs() >= HOUR, "{end} is too close to a boundary");
                    }
                }
            }
        }
    }

    #[test]
    fn the_mix_is_realistic() {
        let directory = generated(10_000, 11);
        let apps = &directory.store(Collection::Applications).live;
        let sps = directory.store(Collection::ServicePrincipals).live.len();
        let with_certs = apps.values().filter(|a| !a.keys.is_empty()).count();
        let personal = apps.values().filter(|a| allows_personal_accounts(a.sign_in_audience.as_deref())).count();
        let without_secrets = apps.values().filter(|a| a.passwords.is_empty()).count();
        assert!((1300..1700).contains(&with_certs), "{with_certs} apps with certificates");
        assert!((200..400).contains(&personal), "{personal} personal-account apps");
        assert!((2700..3300).contains(&sps), "{sps} service principals");
        assert!((1000..1400).contains(&without_secrets), "{without_secrets} apps without secrets");
        assert!(
            apps.values()
                .filter(|a| allows_personal_accounts(a.sign_in_audience.as_deref()))
                .all(|a| a.passwords.len() <= 2)
        );
        let pairs = apps.values().filter(|a| a.keys.len() == 2).count();
        assert!(pairs > with_certs * 3 / 4, "most certificates are listed as a Sign + Verify pair");
    }

    #[test]
    fn twenty_thousand_apps_generate_quickly() {
        let started = std::time::Instant::now();
        let directory = generated(20_000, 1);
        assert_eq!(directory.store(Collection::Applications).live.len(), 20_000);
        // Generous for unoptimised test builds on a loaded machine; release builds take a few ms.
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
    }
}
