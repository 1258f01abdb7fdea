//! Which credential signed in: every token request granted to a client secret is noted with the
//! application and the key id of the password it matched (never the secret), so a test can tell
//! that a rotated secret — and not the one before it — is the one in use ([`Sim::secret_sign_ins`]).

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::lock;
use crate::server::Shared;
use crate::state::Collection;

/// One token granted to a client secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretSignIn {
    /// The application (client) id that signed in.
    pub client_id: Uuid,
    /// The key id of the password whose secret was presented; `None` for the management
    /// application's fixed secret.
    pub key_id: Option<Uuid>,
}

/// The most sign-ins kept; beyond it the oldest half is dropped.
const MAX_SIGN_INS: usize = 10_000;

/// Notes that `secret` signed in as `client_id` (the token endpoint checked it already).
pub(crate) fn note(shared: &Shared, client_id: Uuid, secret: &str) {
    let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    let key_id = {
        let directory = lock(&shared.directory);
        [Collection::Applications, Collection::ServicePrincipals]
            .into_iter()
            .filter_map(|c| directory.store(c).by_app_id(client_id))
            .flat_map(|object| object.passwords.iter())
            .find(|p| p.secret.as_ref().is_some_and(|s| s.sha256 == digest))
            .map(|p| p.key_id)
    };
    let mut sign_ins = lock(&shared.sign_ins);
    if sign_ins.len() >= MAX_SIGN_INS {
        sign_ins.drain(..MAX_SIGN_INS / 2);
    }
    sign_ins.push(SecretSignIn { client_id, key_id });
}
