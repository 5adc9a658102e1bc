//! The `latency` watcher.
