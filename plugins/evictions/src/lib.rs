//! The `evictions` watcher.
