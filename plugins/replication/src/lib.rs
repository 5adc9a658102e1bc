//! The `replication` watcher.
