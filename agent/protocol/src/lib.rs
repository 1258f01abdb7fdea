//! The protocol the host agent (`rotator-agent`) and entra-rotator's server speak.
//!
//! Pure: the caller brings bytes, strings and the current time (Unix seconds); nothing here reads
//! a clock, the environment or the network, so both sides and their tests share one definition.
//!
//! - [`keys`]: the agent's Ed25519 signing key and X25519 sealing key, and their public half.
//! - [`seal`]: HPKE (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 /
//!   ChaCha20Poly1305, bound to an agent and a task.
//! - [`auth`]: signing a request on the agent, checking it on the server.
//! - [`enrollment`]: one-time enrollment codes and the hash the server keeps of them.
//! - [`wire`]: the JSON bodies.

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
