//! The protocol the host agent (`rotator-agent`) and entra-rotator's server speak.
//!
//! Pure: the caller brings bytes, strings and the current time (Unix seconds); nothing here reads
//! a clock, the environment or the network, so both sides and their tests share one definition.

pub mod auth;
pub mod enrollment;
pub mod keys;
pub mod seal;
pub mod wire;

mod b64;

pub use auth::{AuthError, Claimed, SignedHeaders, Verified};
pub use enrollment::{CodeError, EnrollmentCode, code_hash};
pub use keys::{AgentKeys, KeyError, PublicKeys};
pub use seal::{OpenError, SealError, Sealed, open, seal, task_info};
