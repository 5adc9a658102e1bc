//! An in-memory bus for the publisher's tests.

use std::sync::{Arc, Mutex};

use anyhow::Result;

use super::bus::{Bus, Queued, Replies};
use super::diagnose::Refusal;
use crate::delivery::envelope::HOST_TARGET;
use crate::redis::error::ServerKind;

/// A scriptable in-memory bus: up or down, optionally cutting the next
/// batch after some envelopes (a pipeline cut midway), optionally refusing
/// every PUBLISH or every XADD with an error reply. Shared with the test
/// that drives it, which scripts it and reads what it received.
#[derive(Debug, Default)]
pub struct MemoryBus {
    /// Whether sends succeed.
    pub up: bool,
    /// Cut the next batch after this many envelopes, then fail it.
    pub cut_after: Option<usize>,
    /// Ids PUBLISHed, in order (duplicates included).
    pub received: Vec<String>,
    /// Ids XADDed, in order (duplicates included).
    pub streamed: Vec<String>,
    /// Error code every PUBLISH is refused with.
    pub refuse_publish: Option<String>,
    /// Error code every XADD is refused with.
    pub refuse_xadd: Option<String>,
    /// Sum of the counts of the drop reports XADDed.
    pub reported_drops: u64,
}

impl Bus for Arc<Mutex<MemoryBus>> {
    async fn send(&mut self, batch: &[Queued<'_>], _check_stream: bool) -> Result<Replies> {
        let mut bus = self.lock().expect("test bus");
        if !bus.up {
            anyhow::bail!("bus down");
        }
        let mut replies = Replies::to(batch);
        let cut = bus.cut_after.take();
        for (i, queued) in batch.iter().enumerate() {
            if cut.is_some_and(|k| i >= k) {
                anyhow::bail!("pipeline cut after {}", cut.unwrap_or_default());
            }
            let envelope = queued.sealed.envelope();
            if !queued.published {
                match bus.refuse_publish.clone() {
                    Some(code) => replies.refusals.push(refusal("PUBLISH", &code)),
                    None => {
                        bus.received.push(envelope.id.clone());
                        replies.confirmed[i].0 = true;
                    }
                }
            }
            if !queued.streamed {
                match bus.refuse_xadd.clone() {
                    Some(code) => replies.refusals.push(refusal("XADD", &code)),
                    None => {
                        bus.streamed.push(envelope.id.clone());
                        replies.confirmed[i].1 = true;
                        if envelope.target == HOST_TARGET && envelope.msg.starts_with("dropped ") {
                            bus.reported_drops += envelope.fields["dropped"].as_u64().unwrap_or(0);
                        }
                    }
                }
            }
        }
        Ok(replies)
    }

    fn instance(&self) -> Option<&str> {
        None
    }

    fn stream_key(&self) -> Option<&str> {
        None
    }
}

/// A refusal of `command` with the error code `code` and no detail.
fn refusal(command: &'static str, code: &str) -> Refusal {
    Refusal {
        command,
        kind: ServerKind::from_code(code, None),
        detail: String::new(),
    }
}
