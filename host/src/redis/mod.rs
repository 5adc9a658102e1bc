//! Redis I/O: connections (lazy dial, timeouts, the redial-once rule),
//! the probes that build a snapshot (declared probes among them), backoff while a Redis is unreachable,
//! redaction of passwords, typed errors, and TLS.

pub mod allow;
pub mod backoff;
pub mod conn;
pub mod declared;
pub mod endpoint;
pub mod error;
pub mod probe;
pub mod redact;
pub mod tls;
