//! The `persistence` watcher.
