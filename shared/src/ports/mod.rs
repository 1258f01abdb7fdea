//! The ports: what the use cases need from the world, by capability. Adapters implement them with a
//! technology (SQLite on one machine, DynamoDB/SQS/KMS on AWS); the contract suites in
//! `testing::contract` hold every implementation to the same behaviour.
//!
//! Layer rule: traits and the value types they carry only. A port may import `domain`, other ports
//! and `error`; never a use case, an adapter, the inbound side, `config` or `wiring`.

pub mod alerts;
pub mod clock;
pub mod directory;
pub mod key_ring;
pub mod queue;
pub mod step_runner;
pub mod store;

pub use alerts::{Alert, AlertSink};
pub use clock::Clock;
pub use directory::Directory;
pub use key_ring::{KeyRing, SealContext, SealedValue};
pub use queue::{
    DeadLetter, MessageId, OutgoingMessage, Queue, QueueDepth, QueueName, QueueSpec, ReceiptHandle, ReceivedMessage,
};
pub use step_runner::{StepContext, StepFailure, StepRunner};
pub use store::{
    AgentRecord, AlertKey, AuditEvent, AuditQuery, Claim, DueCredential, DuePosition, Owner, OwnerSnapshot,
    SealedRecord, Store, SyncCounts, SyncState,
};
