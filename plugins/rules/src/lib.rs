//! The `rules` watcher.
