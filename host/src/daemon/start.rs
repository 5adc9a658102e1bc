//! Start-up: the settings and the plugins folder checked, every
//! configured connection prepared (nothing dialled yet), the publisher
//! built with its spool replayed, the metrics socket bound.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};

use super::{Daemon, RunMode};
use crate::config::Settings;
use crate::delivery::envelope::Origin;
use crate::delivery::heartbeat;
use crate::delivery::publisher::{Publisher, Sink};
use crate::metrics::Metrics;
use crate::redis::conn::Conn;
use crate::redis::endpoint::Endpoint;
use crate::redis::redact::instance_of;
use crate::sandbox::Engine;
use crate::sandbox::engine::{Layout, PACKAGE, VERSION, read_checked};
use crate::watchers::load::name_of;
use crate::watchers::reload::{Stamp, stamp, wasm_files};

impl Daemon {
    /// Start-up checks: settings, the plugins folder and its files
    /// (compiling comes later, concurrently), URLs, the spool. With
    /// `mode.strict` the files' size and header are checked here too.
    ///
    /// # Errors
    /// Any start-up problem: missing plugins folder, a bad setting, a bad
    /// URL, and with `mode.strict` a file that is not a WebAssembly
    /// component. The message names the file or key.
    pub(crate) fn prepare(settings: Settings, mode: RunMode) -> Result<Self> {
        let files = wasm_files(&settings.plugins)?;
        // The compact memory layout when the fleet may be large: the
        // configured targets this shard owns, and 100 for each discover
        // entry, times the watcher files.
        let expected = (owned(&settings) + 100 * settings.discover.len()) * files.len().max(1);
        let layout = Layout::for_instances(expected);
        let engine = Engine::with_layout(settings.cache_dir.as_deref(), layout)?;
        let files: Vec<(PathBuf, Stamp)> = files
            .into_iter()
            .map(|f| {
                let at = stamp(&f);
                (f, at)
            })
            .collect();
        if mode.strict {
            for (path, _) in &files {
                let limits = settings.limits.of(&name_of(path));
                read_checked(path, limits.max_wasm_bytes)?;
            }
        }
        let config_file = || {
            settings
                .config_path
                .as_ref()
                .map_or_else(|| "config".to_owned(), |p| p.display().to_string())
        };
        for name in settings.watchers.keys() {
            if !files.iter().any(|(f, _)| &name_of(f) == name) {
                bail!(
                    "{}: [watchers.{name}] names no watcher in {} (expected {name}.wasm there)",
                    config_file(),
                    settings.plugins.display()
                );
            }
        }
        for t in &settings.targets {
            dial(&settings, &t.endpoint())?;
        }
        // Host events not about one target carry the first configured
        // target's address, or the first discover entry's.
        let first = settings
            .targets
            .first()
            .map(|t| t.url.as_str())
            .or_else(|| settings.discover.first().map(|d| d.url.as_str()))
            .unwrap_or(settings.publish.url.as_str());
        let origin = Origin::new(&settings.service, &instance_of(first))
            .with_max_envelope_bytes(settings.limits.defaults.max_envelope_bytes);
        let sink = if mode.dry_run {
            Sink::Stdout
        } else {
            Sink::Redis {
                conn: Box::new(dial(&settings, &settings.publish.endpoint())?),
                settings: Box::new(settings.publish.clone()),
            }
        };
        let heartbeat = match &settings.heartbeat {
            Some(prefix) if !mode.dry_run => Some((
                dial(&settings, &settings.publish.endpoint())?,
                heartbeat::key(prefix, &origin.host, origin.pid),
            )),
            _ => None,
        };
        let mut publisher = Publisher::new(sink, settings.buffer, settings.breaker, origin.clone());
        let mut replayed = None;
        if let Some(dir) = &settings.spool_dir
            && !mode.dry_run
        {
            let replay = publisher.with_spool(dir)?;
            replayed = Some((
                replay.envelopes.len(),
                replay.corrupt,
                dir.display().to_string(),
            ));
        }
        let metrics = match settings.metrics_addr {
            Some(addr) => {
                let listener = std::net::TcpListener::bind(addr)
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                    .with_context(|| format!("metrics_addr {addr}: cannot listen there"))?;
                let abi = format!("{PACKAGE}@{VERSION}");
                let metrics = Metrics::new(settings.poll_interval, env!("CARGO_PKG_VERSION"), &abi);
                Some((Arc::new(metrics), listener))
            }
            None => None,
        };
        Ok(Self {
            settings,
            origin,
            engine,
            publisher,
            files,
            replayed,
            heartbeat,
            metrics,
        })
    }
}

/// A connection to `endpoint` with the configured timeouts; nothing is
/// dialled yet.
///
/// # Errors
/// The URL does not parse, or a file it needs cannot be read.
pub(super) fn dial(settings: &Settings, endpoint: &Endpoint) -> Result<Conn> {
    Conn::open(
        endpoint,
        settings.connect_timeout,
        settings.response_timeout,
    )
}

/// How many configured targets this process's shard owns.
pub(super) fn owned(settings: &Settings) -> usize {
    settings
        .targets
        .iter()
        .filter(|t| settings.shard.owns(&t.key()))
        .count()
}
