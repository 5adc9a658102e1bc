//! Integration tests: the real `lookout` binary against real redis-servers
//! started on free ports, with the real watcher components.

mod fake_resp;
mod support;

mod alertmanager;
mod authoring;
mod budget;
mod bus;
mod caps;
mod client_buffers;
mod conditions;
mod config;
mod discovery;
mod docs;
mod engine;
mod fleet;
mod heartbeat;
mod help;
mod lateness;
mod liar;
mod metrics;
mod outage;
mod packaging;
mod probes;
mod reload;
mod resilience;
mod sandbox;
mod signals;
mod slowlog;
mod smoke;
mod spool;
mod startup;
mod status;
mod tail;
mod targets;
mod tls;
mod tls_cluster;
mod trust;
mod watchers;
