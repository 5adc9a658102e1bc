//! What the publisher needs of a bus: [`Bus`], and the batch it is sent
//! and what it answers.

use std::future::Future;

use anyhow::Result;

use super::diagnose::Refusal;
use crate::delivery::envelope::Sealed;

/// An envelope of a batch, with which of its two writes the bus already
/// confirmed (those are not sent again).
#[derive(Debug, Clone, Copy)]
pub struct Queued<'a> {
    /// The envelope and its JSON payload.
    pub sealed: &'a Sealed,
    /// Its PUBLISH is confirmed.
    pub published: bool,
    /// Its XADD is confirmed.
    pub streamed: bool,
}

/// What the bus said to one batch.
#[derive(Debug, Default)]
pub struct Replies {
    /// Per envelope of the batch, oldest first: whether its PUBLISH and its
    /// XADD are now confirmed (sent in this batch or an earlier one).
    pub confirmed: Vec<(bool, bool)>,
    /// Writes refused with an error reply.
    pub refusals: Vec<Refusal>,
    /// The bus's `maxmemory_policy`, read on a fresh connection.
    pub policy: Option<String>,
    /// The stream was missing before this batch although an XADD to it
    /// had succeeded.
    pub stream_vanished: bool,
    /// An XADD of this batch succeeded.
    pub streamed: bool,
}

impl Replies {
    /// Replies to `batch` before the bus answered: only what earlier
    /// batches confirmed.
    pub fn to(batch: &[Queued<'_>]) -> Self {
        Self {
            confirmed: batch.iter().map(|q| (q.published, q.streamed)).collect(),
            ..Self::default()
        }
    }
}

/// What the publisher needs of a bus.
pub trait Bus {
    /// Sends one batch, oldest first: a PUBLISH and an XADD per envelope,
    /// leaving out the writes already confirmed; when `check_stream`, first
    /// asks whether the stream written to before still exists. Each reply
    /// is read on its own: an error reply refuses one write only.
    ///
    /// # Errors
    /// The batch failed as a whole (the bus is unreachable, the pipeline
    /// was cut, the replies do not match the commands): which of its
    /// writes took effect is unknown.
    fn send(
        &mut self,
        batch: &[Queued<'_>],
        check_stream: bool,
    ) -> impl Future<Output = Result<Replies>> + Send;

    /// The bus's `host:port`, when it has one.
    fn instance(&self) -> Option<&str>;

    /// The stream written to, when there is one.
    fn stream_key(&self) -> Option<&str>;
}
