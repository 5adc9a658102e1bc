//! The `stream-lag` watcher.
