//! Where each resolved setting came from, for `lookout config`: the
//! settings `lookout run` would resolve, key by key in the file's keys and
//! units, each with its layer (default, file, environment, flag).
//! Passwords stay hidden: URLs are shown without theirs, password files
//! by their paths.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;
use serde_json::{Value, json};

use super::{FileConfig, LogFormat, Overrides, Settings};
use crate::delivery;
use crate::redis::redact::redact_url;

/// The layer a setting's value came from: a flag wins over the
/// environment, which wins over the file, which wins over the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    /// Built in, or worked out from other settings (`publish.url` is the
    /// watched Redis).
    Default,
    /// `lookout.toml`.
    File,
    /// An environment variable (`REDIS_URL`, `POLL_INTERVAL`,
    /// `LOOKOUT_SHARD`).
    Environment,
    /// A command-line flag.
    Flag,
}

impl Layer {
    /// `default`, `file`, `environment` or `flag`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::File => "file",
            Self::Environment => "environment",
            Self::Flag => "flag",
        }
    }
}

/// One resolved setting.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shown {
    /// Its key: `poll_interval`, `publish.url`, `targets[1].labels.zone`.
    pub key: String,
    /// Its value, in the file's units; `null` when unset.
    pub value: Value,
    /// Where the value came from.
    #[serde(rename = "source")]
    pub layer: Layer,
}

/// The settings `lookout run` resolves from the file at `config_path` and
/// `overrides`, each key with the layer its value came from.
///
/// # Errors
/// Those of [`Settings::load`]: the same file and values fail the same
/// way.
pub fn explain(config_path: Option<&Path>, overrides: Overrides) -> Result<Vec<Shown>> {
    let (file, given) = match config_path {
        Some(path) => {
            let text = super::read(path)?;
            let file = super::parse(path, &text)?;
            (file, given_keys(&text))
        }
        None => (FileConfig::default(), BTreeSet::new()),
    };
    // The file's [[targets]] are listed as such unless the flags or the
    // environment replaced them.
    let listed_targets = overrides.redis_urls.is_empty() && !file.targets.is_empty();
    let settings = Settings::resolve(file, config_path, overrides)?;
    let mut flat = Vec::new();
    for (table, value) in tables(&settings, listed_targets) {
        flatten(table.to_owned(), value, &mut flat);
    }
    let o = &settings.overrides;
    Ok(flat
        .into_iter()
        .map(|(key, value)| {
            let layer = layer(&key, &given, o);
            Shown { key, value, layer }
        })
        .collect())
}

/// The resolved settings in the file's shape: the top-level keys (table
/// `""`), then every table, each module's as it shows them.
fn tables(s: &Settings, listed_targets: bool) -> Vec<(&'static str, Value)> {
    let mut top = json!({
        "poll_interval": s.poll_interval.as_secs_f64(),
        "plugins": s.plugins,
        "cache_dir": s.cache_dir,
        "service": s.service,
        "slowlog_count": s.slowlog_count,
        "connect_timeout": s.connect_timeout.as_secs_f64(),
        "response_timeout": s.response_timeout.as_secs_f64(),
        "shutdown_grace": s.shutdown_grace.as_secs_f64(),
        "log_format": match s.log_format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        },
        "shard": s.shard.to_string(),
        "max_calls_in_flight": s.max_calls_in_flight,
        "metrics_addr": s.metrics_addr.map(|a| a.to_string()),
    });
    let mut tables = Vec::new();
    if listed_targets || s.targets.len() > 1 {
        let targets = s.targets.iter().map(crate::targets::Target::shown);
        tables.push(("targets", Value::Array(targets.collect())));
    } else if let Value::Object(t) = &mut top {
        // One watched Redis (or none, with only discover entries).
        let url = s.targets.first().map(|t| redact_url(&t.url));
        t.insert("redis_url".to_owned(), json!(url));
    }
    tables.insert(0, ("", top));
    let discover = s.discover.iter().map(crate::targets::Discover::shown);
    tables.push(("discover", Value::Array(discover.collect())));
    tables.extend(delivery::settings::shown(
        &s.publish,
        &s.buffer,
        s.spool_dir.as_deref(),
        &s.breaker,
        s.heartbeat.as_deref(),
    ));
    tables.push(crate::alerts::alertmanager::shown(s.alertmanager.as_ref()));
    tables.push(s.alerts.shown());
    tables.push(("tls", json!(s.tls)));
    tables.push(("limits", s.limits.shown()));
    tables.push(("watchers", json!(s.watchers)));
    tables
}

/// `value` as `(key, value)` leaves under `key`: a table's keys joined with
/// dots, an array of tables by index (`targets[0].url`); an empty table,
/// any other array and every other value are one leaf.
fn flatten(key: String, value: Value, out: &mut Vec<(String, Value)>) {
    let join = |k: &str| {
        if key.is_empty() {
            k.to_owned()
        } else {
            format!("{key}.{k}")
        }
    };
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                flatten(join(&k), v, out);
            }
        }
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
            for (i, v) in items.into_iter().enumerate() {
                flatten(format!("{key}[{i}]"), v, out);
            }
        }
        value => out.push((key, value)),
    }
}

/// Every key the file sets, named as [`flatten`] names them.
fn given_keys(text: &str) -> BTreeSet<String> {
    let table = text.parse::<toml::Table>().unwrap_or_default();
    let mut keys = Vec::new();
    flatten(String::new(), json!(table), &mut keys);
    keys.into_iter().map(|(k, _)| k).collect()
}

/// Where the value of `key` came from: a flag or the environment when
/// one was given for it, else the file when it sets the key (or the key
/// it inherits: `[tls]` under a target's `tls`, `[limits]` under
/// `[limits.watchers.NAME]`), else the default.
fn layer(key: &str, given: &BTreeSet<String>, o: &Overrides) -> Layer {
    let from_flags = !o.redis_urls.is_empty();
    let overridden = match key {
        "redis_url" => Some(("redis_url", from_flags)),
        "poll_interval" => Some(("poll_interval", o.poll_interval.is_some())),
        "plugins" => Some(("plugins", o.plugins.is_some())),
        "cache_dir" => Some(("cache_dir", o.cache_dir.is_some())),
        "service" => Some(("service", o.service.is_some())),
        "log_format" => Some(("log_format", o.log_format.is_some())),
        "shard" => Some(("shard", o.shard.is_some())),
        "metrics_addr" => Some(("metrics_addr", o.metrics_addr.is_some())),
        // Targets from the flags or the environment: their URLs come from
        // there, the rest is default.
        k if k.starts_with("targets[") && from_flags => Some(("redis_url", k.ends_with("].url"))),
        _ => None,
    };
    match overridden {
        Some((name, true)) if o.environment.contains(name) => Layer::Environment,
        Some((_, true)) => Layer::Flag,
        Some((name, false)) if name == "redis_url" && from_flags => Layer::Default,
        _ if given.contains(key) || inherited(key).is_some_and(|k| given.contains(&k)) => {
            Layer::File
        }
        _ => Layer::Default,
    }
}

/// The key whose value `key` takes when the file does not set it.
fn inherited(key: &str) -> Option<String> {
    if let Some((owner, k)) = key.rsplit_once(".tls.")
        && !owner.is_empty()
    {
        return Some(format!("tls.{k}"));
    }
    let (_, k) = key.strip_prefix("limits.watchers.")?.rsplit_once('.')?;
    Some(format!("limits.{k}"))
}
