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
    /// The guest tried to grow its memory while its watcher's instances
    /// together had grown as much as the fleet budget allows.
    #[error(
        "fleet memory budget spent: {requested} more bytes refused, the watcher's instances have \
         grown {used} bytes beyond their initial memory, budget {cap} bytes ({key})"
    )]
    FleetBudget {
        /// Bytes the instance asked for beyond what it held.
        requested: usize,
        /// Bytes all the watcher's instances had grown.
        used: usize,
        /// The budget.
        cap: usize,
        /// The key that sets the budget.
        key: String,
    },
    /// The guest tried to grow its tables past the store's element budget.
    #[error(
        "table cap reached: {requested} elements requested, cap {cap} elements \
         (limits.max_table_elements)"
    )]
    TableCap {
        /// Elements the store's tables would hold.
        requested: usize,
        /// The cap.
        cap: usize,
    },
    /// The guest held as many WASI resources (streams, pollables) as it
    /// may and asked for one more.
    #[error("resource cap reached: {cap} WASI resources held (limits.max_resources)")]
    ResourceCap {
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
            Some(trap) => Self::Wasm(clip(&trap.to_string())),
            None => Self::Other(clip(&format!("{error:#}"))),
        }
    }
}

/// Most bytes kept of a text a watcher controls or causes (a trap's
/// description, a `configure` error) before it goes into logs and events.
pub(crate) const MAX_TEXT_BYTES: usize = 512;

/// `text` cut to at most [`MAX_TEXT_BYTES`] on a char boundary, saying how
/// much was cut.
pub(crate) fn clip(text: &str) -> String {
    if text.len() <= MAX_TEXT_BYTES {
        return text.to_owned();
    }
    let mut end = MAX_TEXT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes cut)", &text[..end], text.len() - end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_are_cut_on_a_char_boundary() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(1000);
        let cut = clip(&long);
        assert!(cut.len() < MAX_TEXT_BYTES + 40, "{}", cut.len());
        assert!(cut.ends_with("... (1488 bytes cut)"), "{cut}");
        let trap = Trap::classify(&wasmtime::Error::msg("x".repeat(1 << 20)), None);
        assert!(trap.to_string().len() < MAX_TEXT_BYTES + 40);
    }
}
