//! Redis I/O: the dial (TCP, TLS, Unix sockets) and connections read on
//! the caller's task (lazy dial, timeouts, the redial-once rule), the probes that build a snapshot (declared probes among them), backoff while a Redis is unreachable,
//! redaction of passwords, typed errors, and TLS.

pub(crate) mod allow;
pub(crate) mod backoff;
pub(crate) mod conn;
pub(crate) mod declared;
pub(crate) mod dial;
pub(crate) mod endpoint;
pub(crate) mod error;
pub(crate) mod link;
pub(crate) mod probe;
pub(crate) mod redact;
pub(crate) mod tls;
