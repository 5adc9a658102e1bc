//! Delivery: the envelope wire format, the bounded outbox, the circuit
//! breaker, the durable spool, and the publisher task that owns them,
//! fed by the pollers through a bounded queue; the heartbeat key; and their
//! settings, the `[publish]`, `[buffer]`, `[breaker]` and `[heartbeat]`
//! tables.

pub(crate) mod breaker;
pub(crate) mod envelope;
pub(crate) mod heartbeat;
pub(crate) mod outbox;
pub(crate) mod publisher;
pub(crate) mod settings;
pub(crate) mod spool;
pub(crate) mod task;
