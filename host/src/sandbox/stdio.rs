//! A watcher's stdout and stderr: complete lines go to the host log tagged
//! with the watcher's name, at most [`LINES_PER_SECOND`] a second; the rest
//! is counted and reported as suppressed. Writes always succeed, so a
//! chatty watcher neither blocks nor fails, and nothing grows without bound.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Lines a watcher may log per second and stream before the rest is dropped.
pub(crate) const LINES_PER_SECOND: u32 = 20;
/// Longest line kept; the rest of a longer line is cut.
pub(crate) const MAX_LINE: usize = 1024;

#[derive(Debug)]
struct State {
    partial: Vec<u8>,
    window: Instant,
    in_window: u32,
    suppressed: u64,
}

/// One output stream of one watcher.
#[derive(Debug, Clone)]
pub(crate) struct LogPipe {
    watcher: Arc<str>,
    stream: &'static str,
    state: Arc<Mutex<State>>,
}

impl LogPipe {
    /// A pipe for `watcher`'s `stream` ("stdout" or "stderr").
    pub(crate) fn new(watcher: &str, stream: &'static str) -> Self {
        Self {
            watcher: Arc::from(watcher),
            stream,
            state: Arc::new(Mutex::new(State {
                partial: Vec::new(),
                window: Instant::now(),
                in_window: 0,
                suppressed: 0,
            })),
        }
    }

    fn accept(&self, bytes: &[u8]) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            let complete = chunk.ends_with(b"\n");
            let body = chunk.strip_suffix(b"\n").unwrap_or(chunk);
            let room = MAX_LINE.saturating_sub(state.partial.len());
            let keep = body.len().min(room);
            state.partial.extend_from_slice(&body[..keep]);
            if complete || state.partial.len() >= MAX_LINE {
                let line = std::mem::take(&mut state.partial);
                self.emit(&mut state, &line);
            }
        }
    }

    fn emit(&self, state: &mut State, line: &[u8]) {
        let now = Instant::now();
        if now.duration_since(state.window) >= Duration::from_secs(1) {
            if state.suppressed > 0 {
                tracing::warn!(
                    watcher = %self.watcher,
                    stream = self.stream,
                    suppressed = state.suppressed,
                    "watcher output over {LINES_PER_SECOND} lines/s; lines dropped"
                );
                state.suppressed = 0;
            }
            state.window = now;
            state.in_window = 0;
        }
        if state.in_window >= LINES_PER_SECOND {
            state.suppressed += 1;
            return;
        }
        state.in_window += 1;
        tracing::info!(
            watcher = %self.watcher,
            stream = self.stream,
            "{}",
            String::from_utf8_lossy(line)
        );
    }
}

impl IsTerminal for LogPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogPipe {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for LogPipe {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.accept(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogPipe {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for LogPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.accept(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_capped_and_rate_limited() {
        let pipe = LogPipe::new("w", "stdout");
        let big = vec![b'x'; MAX_LINE * 3];
        pipe.accept(&big);
        assert!(pipe.state.lock().unwrap().partial.len() <= MAX_LINE);
        for _ in 0..100 {
            pipe.accept(b"line\n");
        }
        let state = pipe.state.lock().unwrap();
        assert!(state.in_window <= LINES_PER_SECOND);
        assert!(state.suppressed >= 70, "{}", state.suppressed);
        assert!(state.partial.is_empty());
    }
}
