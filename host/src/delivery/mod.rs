//! Delivery: the envelope wire format, the bounded outbox, the circuit
//! breaker, the durable spool, and the publisher task that owns them,
//! fed by the pollers through a bounded queue.

pub mod breaker;
pub mod envelope;
pub mod outbox;
pub mod publisher;
pub mod spool;
pub mod task;
