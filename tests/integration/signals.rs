//! The replication, persistence, evictions and rules watchers in the
//! daemon beside every other bundled watcher, each against a real Redis
//! driven into its condition.
