//! Why a watcher call failed, by type: the supervisor reports it and
//! drops the instance whatever it was.

use std::time::Duration;

/// Why a call failed. After any of these the instance is dropped and never
/// entered again.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Trap {
    /// The call was still running (in wasm or waiting in a host call) at
    /// its deadline and was abandoned.
    #[error("call deadline exceeded ({} ms)", .0.as_millis())]
    Deadline(Duration),
    /// The guest tried to grow its memory past the cap.
    #[error("memory cap reached: {requested} bytes requested, cap {cap} bytes (limits.memory_mib)")]
    MemoryCap {
        /// Size the guest asked for.
        requested: usize,
        /// The cap.
        cap: usize,
    },
    /// The guest's wasm stack overflowed.
    #[error("stack overflow")]
    StackOverflow,
    /// A wasm trap (a panic is `unreachable`), with its description.
    #[error("trapped: {0}")]
    Wasm(String),
    /// Anything else that ended the call: a failed instantiation, a host
    /// error; the text has the detail.
    #[error("{0}")]
    Other(String),
    /// There was no live instance to call.
    #[error("no live instance")]
    NoInstance,
}

impl Trap {
    /// The failure behind `error`; `cap_hit` is the cap the store's
    /// limiter recorded, which wins over the error's own text.
    pub(crate) fn classify(error: &wasmtime::Error, cap_hit: Option<&Trap>) -> Self {
        if let Some(hit) = cap_hit {
            return hit.clone();
        }
        match error.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::StackOverflow) => Self::StackOverflow,
            Some(trap) => Self::Wasm(trap.to_string()),
            None => Self::Other(format!("{error:#}")),
        }
    }
}
