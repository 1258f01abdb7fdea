//! What the tenant holds, counted exactly, for tests to compare the product's inventory and dashboard
//! with.

use std::collections::HashMap;

use time::{Duration, OffsetDateTime};

use crate::state::{Collection, Directory};

/// Counts over the whole tenant at a given time.
///
/// The expiry counts cover password credentials (applications' and service principals') and
/// certificates, each certificate once per thumbprint however many key credentials list it. A
/// credential is *expired* when its end is at or before `now`; it is *expiring within N days* when it
/// is not expired and its end is at or before `now + N days`. The within-N counts are cumulative (the
/// 30-day count includes the 7-day one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Truth {
    pub applications: usize,
    pub service_principals: usize,
    /// Applications' and service principals' password credentials.
    pub password_credentials: usize,
    /// Distinct certificate thumbprints.
    pub certificates: usize,
    pub expired: usize,
    pub expiring_within_7_days: usize,
    pub expiring_within_30_days: usize,
    pub expiring_within_90_days: usize,
}

impl Truth {
    fn count(&mut self, end: OffsetDateTime, now: OffsetDateTime) {
        if end <= now {
            self.expired += 1;
            return;
        }
        let left = end - now;
        self.expiring_within_7_days += usize::from(left <= Duration::days(7));
        self.expiring_within_30_days += usize::from(left <= Duration::days(30));
        self.expiring_within_90_days += usize::from(left <= Duration::days(90));
    }
}

pub(crate) fn compute(directory: &Directory, now: OffsetDateTime) -> Truth {
    let mut truth = Truth {
        applications: directory.store(Collection::Applications).live.len(),
        service_principals: directory.store(Collection::ServicePrincipals).live.len(),
        ..Truth::default()
    };
    let mut certificates: HashMap<[u8; 20], OffsetDateTime> = HashMap::new();
    for collection in [Collection::Applications, Collection::ServicePrincipals] {
        for object in directory.store(collection).live.values() {
            truth.password_credentials += object.passwords.len();
            for password in &object.passwords {
                truth.count(password.end, now);
            }
            for key in &object.keys {
                // The Sign and Verify entries of one certificate share its end date; should two
                // entries disagree, the later end is the certificate's.
                let end = certificates.entry(key.thumbprint).or_insert(key.end);
                *end = (*end).max(key.end);
            }
        }
    }
    truth.certificates = certificates.len();
    for end in certificates.into_values() {
        truth.count(end, now);
    }
    truth
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{DirectoryObject, KeyCredential, KeyUsage, PasswordCredential};
    use time::macros::datetime;
    use uuid::Uuid;

    const NOW: OffsetDateTime = datetime!(2030-01-01 00:00 UTC);

    fn password(end: OffsetDateTime) -> PasswordCredential {
        PasswordCredential {
            key_id: Uuid::new_v4(),
            display_name: None,
            hint: None,
            start: NOW - Duration::days(400),
            end,
            secret: None,
        }
    }

    #[test]
    fn counts_are_cumulative_and_certificates_count_once_per_thumbprint() {
        let key = |usage| KeyCredential {
            key_id: Uuid::new_v4(),
            display_name: None,
            thumbprint: [7; 20],
            usage,
            start: NOW - Duration::days(10),
            end: NOW + Duration::days(20),
        };
        let app = DirectoryObject {
            id: Uuid::new_v4(),
            app_id: Uuid::new_v4(),
            display_name: "a".to_owned(),
            sign_in_audience: Some("AzureADMyOrg".to_owned()),
            service_principal_type: None,
            passwords: vec![
                password(NOW - Duration::days(1)),
                password(NOW),
                password(NOW + Duration::days(3)),
                password(NOW + Duration::days(60)),
                password(NOW + Duration::days(365)),
            ],
            keys: vec![key(KeyUsage::Sign), key(KeyUsage::Verify)],
            version: 0,
        };
        let mut directory = Directory::default();
        directory.insert(Collection::Applications, app);
        let truth = compute(&directory, NOW);
        assert_eq!(
            truth,
            Truth {
                applications: 1,
                service_principals: 0,
                password_credentials: 5,
                certificates: 1,
                expired: 2,
                expiring_within_7_days: 1,
                expiring_within_30_days: 2,
                expiring_within_90_days: 3,
            }
        );
    }
}
