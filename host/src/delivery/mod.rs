//! Delivery: the envelope wire format, the bounded outbox, the circuit
//! breaker, the durable spool, and the publisher task that owns them,
//! fed by the pollers through a bounded queue; the heartbeat key; and their
//! settings, the `[publish]`, `[buffer]`, `[breaker]` and `[heartbeat]`
//! tables.

pub mod breaker;
pub mod envelope;
pub mod heartbeat;
pub mod outbox;
pub mod publisher;
pub mod settings;
pub mod spool;
pub mod task;
