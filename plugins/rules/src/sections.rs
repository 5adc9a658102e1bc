//! Which INFO section each field of the default INFO is in, so that `rules`
//! can narrow what it reads to the sections its rules name.
/// The fields of the sections `rules` declares, as Redis 7.0 prints them on
/// a master and on a replica, sorted by name: `(field, section)`. A field
/// not listed (a newer Redis, one printed only at times, a typo) is looked
/// for in every section.
pub const INFO_FIELDS: [(&str, &str); 198] = [
    ("active_defrag_hits", "stats"),
    ("active_defrag_key_hits", "stats"),
    ("active_defrag_key_misses", "stats"),
    ("active_defrag_misses", "stats"),
    ("active_defrag_running", "memory"),
    ("allocator_active", "memory"),
    ("allocator_allocated", "memory"),
    ("allocator_frag_bytes", "memory"),
    ("allocator_frag_ratio", "memory"),
    ("allocator_resident", "memory"),
    ("allocator_rss_bytes", "memory"),
    ("allocator_rss_ratio", "memory"),
    ("aof_current_rewrite_time_sec", "persistence"),
    ("aof_enabled", "persistence"),
    ("aof_last_bgrewrite_status", "persistence"),
    ("aof_last_cow_size", "persistence"),
    ("aof_last_rewrite_time_sec", "persistence"),
    ("aof_last_write_status", "persistence"),
    ("aof_rewrite_in_progress", "persistence"),
    ("aof_rewrite_scheduled", "persistence"),
    ("aof_rewrites", "persistence"),
    ("aof_rewrites_consecutive_failures", "persistence"),
    ("arch_bits", "server"),
    ("async_loading", "persistence"),
    ("atomicvar_api", "server"),
    ("blocked_clients", "clients"),
    ("client_recent_max_input_buffer", "clients"),
    ("client_recent_max_output_buffer", "clients"),
    ("clients_in_timeout_table", "clients"),
    ("cluster_connections", "clients"),
    ("cluster_enabled", "cluster"),
    ("config_file", "server"),
    ("configured_hz", "server"),
    ("connected_clients", "clients"),
    ("connected_slaves", "replication"),
    ("current_active_defrag_time", "stats"),
    ("current_cow_peak", "persistence"),
    ("current_cow_size", "persistence"),
    ("current_cow_size_age", "persistence"),
    ("current_eviction_exceeded_time", "stats"),
    ("current_fork_perc", "persistence"),
    ("current_save_keys_processed", "persistence"),
    ("current_save_keys_total", "persistence"),
    ("dump_payload_sanitizations", "stats"),
    ("evicted_clients", "stats"),
    ("evicted_keys", "stats"),
    ("executable", "server"),
    ("expire_cycle_cpu_milliseconds", "stats"),
    ("expired_keys", "stats"),
    ("expired_stale_perc", "stats"),
    ("expired_time_cap_reached_count", "stats"),
    ("gcc_version", "server"),
    ("hz", "server"),
    ("instantaneous_input_kbps", "stats"),
    ("instantaneous_input_repl_kbps", "stats"),
    ("instantaneous_ops_per_sec", "stats"),
    ("instantaneous_output_kbps", "stats"),
    ("instantaneous_output_repl_kbps", "stats"),
    ("io_threaded_reads_processed", "stats"),
    ("io_threaded_writes_processed", "stats"),
    ("io_threads_active", "server"),
    ("keyspace_hits", "stats"),
    ("keyspace_misses", "stats"),
    ("latest_fork_usec", "stats"),
    ("lazyfree_pending_objects", "memory"),
    ("lazyfreed_objects", "memory"),
    ("loading", "persistence"),
    ("lru_clock", "server"),
    ("master_failover_state", "replication"),
    ("master_host", "replication"),
    ("master_last_io_seconds_ago", "replication"),
    ("master_link_down_since_seconds", "replication"),
    ("master_link_status", "replication"),
    ("master_port", "replication"),
    ("master_repl_offset", "replication"),
    ("master_replid", "replication"),
    ("master_replid2", "replication"),
    ("master_sync_in_progress", "replication"),
    ("master_sync_last_io_seconds_ago", "replication"),
    ("master_sync_left_bytes", "replication"),
    ("master_sync_perc", "replication"),
    ("master_sync_read_bytes", "replication"),
    ("master_sync_total_bytes", "replication"),
    ("maxclients", "clients"),
    ("maxmemory", "memory"),
    ("maxmemory_human", "memory"),
    ("maxmemory_policy", "memory"),
    ("mem_allocator", "memory"),
    ("mem_aof_buffer", "memory"),
    ("mem_clients_normal", "memory"),
    ("mem_clients_slaves", "memory"),
    ("mem_cluster_links", "memory"),
    ("mem_fragmentation_bytes", "memory"),
    ("mem_fragmentation_ratio", "memory"),
    ("mem_not_counted_for_evict", "memory"),
    ("mem_replication_backlog", "memory"),
    ("mem_total_replication_buffers", "memory"),
    ("migrate_cached_sockets", "stats"),
    ("min_slaves_good_slaves", "replication"),
    ("module_fork_in_progress", "persistence"),
    ("module_fork_last_cow_size", "persistence"),
    ("monotonic_clock", "server"),
    ("multiplexing_api", "server"),
    ("number_of_cached_scripts", "memory"),
    ("number_of_functions", "memory"),
    ("number_of_libraries", "memory"),
    ("os", "server"),
    ("process_id", "server"),
    ("process_supervised", "server"),
    ("pubsub_channels", "stats"),
    ("pubsub_patterns", "stats"),
    ("pubsubshard_channels", "stats"),
    ("rdb_bgsave_in_progress", "persistence"),
    ("rdb_changes_since_last_save", "persistence"),
    ("rdb_current_bgsave_time_sec", "persistence"),
    ("rdb_last_bgsave_status", "persistence"),
    ("rdb_last_bgsave_time_sec", "persistence"),
    ("rdb_last_cow_size", "persistence"),
    ("rdb_last_load_keys_expired", "persistence"),
    ("rdb_last_load_keys_loaded", "persistence"),
    ("rdb_last_save_time", "persistence"),
    ("rdb_saves", "persistence"),
    ("redis_build_id", "server"),
    ("redis_git_dirty", "server"),
    ("redis_git_sha1", "server"),
    ("redis_mode", "server"),
    ("redis_version", "server"),
    ("rejected_connections", "stats"),
    ("repl_backlog_active", "replication"),
    ("repl_backlog_first_byte_offset", "replication"),
    ("repl_backlog_histlen", "replication"),
    ("repl_backlog_size", "replication"),
    ("replica_announced", "replication"),
    ("reply_buffer_expands", "stats"),
    ("reply_buffer_shrinks", "stats"),
    ("role", "replication"),
    ("rss_overhead_bytes", "memory"),
    ("rss_overhead_ratio", "memory"),
    ("run_id", "server"),
    ("second_repl_offset", "replication"),
    ("server_time_usec", "server"),
    ("slave_expires_tracked_keys", "stats"),
    ("slave_priority", "replication"),
    ("slave_read_only", "replication"),
    ("slave_read_repl_offset", "replication"),
    ("slave_repl_offset", "replication"),
    ("sync_full", "stats"),
    ("sync_partial_err", "stats"),
    ("sync_partial_ok", "stats"),
    ("tcp_port", "server"),
    ("total_active_defrag_time", "stats"),
    ("total_commands_processed", "stats"),
    ("total_connections_received", "stats"),
    ("total_error_replies", "stats"),
    ("total_eviction_exceeded_time", "stats"),
    ("total_forks", "stats"),
    ("total_net_input_bytes", "stats"),
    ("total_net_output_bytes", "stats"),
    ("total_net_repl_input_bytes", "stats"),
    ("total_net_repl_output_bytes", "stats"),
    ("total_reads_processed", "stats"),
    ("total_system_memory", "memory"),
    ("total_system_memory_human", "memory"),
    ("total_writes_processed", "stats"),
    ("tracking_clients", "clients"),
    ("tracking_total_items", "stats"),
    ("tracking_total_keys", "stats"),
    ("tracking_total_prefixes", "stats"),
    ("unexpected_error_replies", "stats"),
    ("uptime_in_days", "server"),
    ("uptime_in_seconds", "server"),
    ("used_cpu_sys", "cpu"),
    ("used_cpu_sys_children", "cpu"),
    ("used_cpu_sys_main_thread", "cpu"),
    ("used_cpu_user", "cpu"),
    ("used_cpu_user_children", "cpu"),
    ("used_cpu_user_main_thread", "cpu"),
    ("used_memory", "memory"),
    ("used_memory_dataset", "memory"),
    ("used_memory_dataset_perc", "memory"),
    ("used_memory_functions", "memory"),
    ("used_memory_human", "memory"),
    ("used_memory_lua", "memory"),
    ("used_memory_lua_human", "memory"),
    ("used_memory_overhead", "memory"),
    ("used_memory_peak", "memory"),
    ("used_memory_peak_human", "memory"),
    ("used_memory_peak_perc", "memory"),
    ("used_memory_rss", "memory"),
    ("used_memory_rss_human", "memory"),
    ("used_memory_scripts", "memory"),
    ("used_memory_scripts_eval", "memory"),
    ("used_memory_scripts_human", "memory"),
    ("used_memory_startup", "memory"),
    ("used_memory_vm_eval", "memory"),
    ("used_memory_vm_functions", "memory"),
    ("used_memory_vm_total", "memory"),
    ("used_memory_vm_total_human", "memory"),
];

/// The section `field` is in, when known: the table above, and the
/// numbered families (`db0` in keyspace, `slave0` in replication,
/// `errorstat_ERR` in errorstats).
pub fn section_of(field: &str) -> Option<&'static str> {
    let numbered = |prefix: &str| {
        field
            .strip_prefix(prefix)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    if numbered("db") {
        return Some("keyspace");
    }
    if numbered("slave") {
        return Some("replication");
    }
    if field.starts_with("errorstat_") {
        return Some("errorstats");
    }
    INFO_FIELDS
        .binary_search_by(|(name, _)| (*name).cmp(field))
        .ok()
        .map(|i| INFO_FIELDS[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_sorted_and_known_ones_found() {
        assert!(INFO_FIELDS.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(section_of("used_memory"), Some("memory"));
        assert_eq!(section_of("rdb_last_bgsave_status"), Some("persistence"));
        assert_eq!(section_of("master_link_status"), Some("replication"));
        assert_eq!(section_of("rejected_connections"), Some("stats"));
        assert_eq!(section_of("run_id"), Some("server"));
        assert_eq!(section_of("cluster_enabled"), Some("cluster"));
        assert_eq!(section_of("db0"), Some("keyspace"));
        assert_eq!(section_of("slave12"), Some("replication"));
        assert_eq!(section_of("errorstat_NOPERM"), Some("errorstats"));
        assert_eq!(section_of("db"), None);
        assert_eq!(section_of("cluster_state"), None);
        assert_eq!(section_of("no_such_field"), None);
    }
}
