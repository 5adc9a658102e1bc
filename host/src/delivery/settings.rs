//! Delivery's settings: the `[publish]`, `[buffer]`, `[breaker]` and
//! `[heartbeat]` tables of `lookout.toml` as written, each with the resolve
//! that checks it and gives the settings the publisher, the outbox, the
//! breaker and the heartbeat use.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::{Value, json};

use super::breaker::BreakerSettings;
use super::outbox::{Caps, DropPolicy};
use crate::checks::{IntKey, Origin, SecondsKey, check_url, own_tls_needs_rediss};
use crate::redis::endpoint::{Auth, Endpoint};
use crate::redis::redact::redact_url;
use crate::redis::tls::Tls;

/// `[publish]` table of `lookout.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishFile {
    /// Redis that receives envelopes; defaults to the watched one.
    pub url: Option<String>,
    /// Pub/sub channel prefix; the level is appended after a dot.
    pub channel_prefix: Option<String>,
    /// Stream that receives every envelope.
    pub stream_key: Option<String>,
    /// Approximate cap on the stream length (`MAXLEN ~`).
    pub stream_maxlen: Option<i64>,
    /// TLS settings of the bus, over `[tls]`.
    pub tls: Option<Tls>,
    /// ACL user of the bus, when the URL names none.
    pub username: Option<String>,
    /// File holding the bus's password, instead of the URL.
    pub password_file: Option<PathBuf>,
}

/// `[buffer]` table of `lookout.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferFile {
    /// Most envelopes held while the bus is unreachable.
    pub max_envelopes: Option<i64>,
    /// Most MiB of envelopes held.
    pub max_mib: Option<i64>,
    /// `drop_oldest` (default) or `drop_newest` when full.
    pub policy: Option<DropPolicy>,
    /// Folder of the durable spool; none by default.
    pub dir: Option<PathBuf>,
}

/// `[breaker]` table of `lookout.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerFile {
    /// Consecutive failed publishes that open the breaker.
    pub failures: Option<i64>,
    /// Seconds the breaker stays open before a probe.
    pub recovery_s: Option<f64>,
}

/// `[heartbeat]` table of `lookout.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatFile {
    /// Write the key (default true).
    pub enabled: Option<bool>,
    /// Key prefix, `lookout:heartbeat` by default.
    pub prefix: Option<String>,
}

/// `publish.stream_maxlen`.
pub(crate) const STREAM_MAXLEN: IntKey =
    IntKey::new("publish.stream_maxlen", 10_000, 1..=1_000_000_000);

/// `buffer.max_envelopes`.
pub(crate) const MAX_ENVELOPES: IntKey =
    IntKey::new("buffer.max_envelopes", 10_000, 1..=10_000_000);

/// `buffer.max_mib`.
pub(crate) const MAX_MIB: IntKey = IntKey::new("buffer.max_mib", 16, 1..=16_384);

/// `breaker.failures`.
pub(crate) const FAILURES: IntKey = IntKey::new("breaker.failures", 3, 1..=1000);

/// `breaker.recovery_s`.
pub(crate) const RECOVERY_S: SecondsKey = SecondsKey::new("breaker.recovery_s", 2.0);

/// Default `publish.channel_prefix`.
pub(crate) const CHANNEL_PREFIX: &str = "logs.redis";
/// Default `publish.stream_key`.
pub(crate) const STREAM_KEY: &str = "logs:stream:redis";
/// Default `heartbeat.prefix`.
pub(crate) const HEARTBEAT_PREFIX: &str = "lookout:heartbeat";

/// Where envelopes go.
#[derive(Debug, Clone)]
pub struct PublishSettings {
    /// Redis URL of the bus (the watched Redis unless `publish.url` is set).
    pub url: String,
    /// Channel prefix, `logs.redis` by default.
    pub channel_prefix: String,
    /// Stream key, `logs:stream:redis` by default.
    pub stream_key: String,
    /// `MAXLEN ~` of the stream, 10000 by default.
    pub stream_maxlen: u64,
    /// TLS settings of the bus (`[publish] tls` over `[tls]`).
    pub tls: Tls,
    /// Credentials of the bus beside its URL (`[publish] username`,
    /// `password_file`).
    pub auth: Auth,
}

impl PublishSettings {
    /// How to dial the bus.
    #[must_use]
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::configured(&self.url, &self.tls, &self.auth)
    }
}

impl PublishFile {
    /// The bus: `url`, or `watched` (the first watched Redis) when unset,
    /// with this table's `tls` over `tls` (the `[tls]` table) and its
    /// credentials.
    ///
    /// # Errors
    /// A bad URL, a value out of range, a `tls` table beside a URL that is
    /// not `rediss://`, unusable TLS files or credentials; the message
    /// names the key at `origin`.
    pub fn resolve(&self, watched: &str, tls: &Tls, origin: &Origin) -> Result<PublishSettings> {
        let url = self.url.clone().unwrap_or_else(|| watched.to_owned());
        check_url(&url).with_context(|| origin.key("publish.url"))?;
        let stream_maxlen = STREAM_MAXLEN.resolve(self.stream_maxlen, origin)?;
        if self.tls.is_some() {
            own_tls_needs_rediss(&url).with_context(|| origin.key("publish.tls"))?;
        }
        let tls = self
            .tls
            .as_ref()
            .map_or_else(|| tls.clone(), |own| own.over(tls));
        tls.check(&url).with_context(|| origin.key("publish.tls"))?;
        let auth = Auth {
            username: self.username.clone(),
            password_file: self.password_file.clone(),
        };
        auth.check(&url, "publish")
            .with_context(|| origin.key("publish"))?;
        Ok(PublishSettings {
            url,
            channel_prefix: self
                .channel_prefix
                .clone()
                .unwrap_or_else(|| CHANNEL_PREFIX.to_owned()),
            stream_key: self
                .stream_key
                .clone()
                .unwrap_or_else(|| STREAM_KEY.to_owned()),
            stream_maxlen,
            tls,
            auth,
        })
    }
}

impl BufferFile {
    /// The outbox's caps and policy (the spool folder is `dir` as it is).
    ///
    /// # Errors
    /// A value out of range; the message names the key at `origin`.
    pub fn resolve(&self, origin: &Origin) -> Result<Caps> {
        let envelopes = MAX_ENVELOPES.resolve(self.max_envelopes, origin)?;
        let mib: usize = MAX_MIB.resolve(self.max_mib, origin)?;
        Ok(Caps {
            envelopes,
            bytes: mib.saturating_mul(1 << 20),
            policy: self.policy.unwrap_or_default(),
        })
    }
}

impl BreakerFile {
    /// The breaker's settings.
    ///
    /// # Errors
    /// A value out of range; the message names the key at `origin`.
    pub fn resolve(&self, origin: &Origin) -> Result<BreakerSettings> {
        Ok(BreakerSettings {
            failures: FAILURES.resolve(self.failures, origin)?,
            recovery: RECOVERY_S.resolve(self.recovery_s, origin)?,
        })
    }
}

impl HeartbeatFile {
    /// The heartbeat key's prefix, `None` when the heartbeat is off.
    ///
    /// # Errors
    /// An empty prefix; the message names the key at `origin`.
    pub fn resolve(&self, origin: &Origin) -> Result<Option<String>> {
        match (self.enabled, &self.prefix) {
            (Some(false), _) => Ok(None),
            (_, Some(prefix)) if prefix.trim().is_empty() => bail!(
                "{}: an empty prefix; set a key prefix or `enabled = false`",
                origin.key("heartbeat.prefix")
            ),
            (_, prefix) => Ok(Some(
                prefix
                    .clone()
                    .unwrap_or_else(|| HEARTBEAT_PREFIX.to_owned()),
            )),
        }
    }
}

/// Delivery's tables as resolved, by name, in the file's keys and units,
/// as `lookout config` shows them: the bus's URL without its password,
/// its TLS keys when it is a `rediss://` URL.
#[must_use]
pub(crate) fn shown(
    publish: &PublishSettings,
    buffer: &Caps,
    spool_dir: Option<&Path>,
    breaker: &BreakerSettings,
    heartbeat: Option<&str>,
) -> [(&'static str, Value); 4] {
    [
        (
            "publish",
            json!({
                "url": redact_url(&publish.url),
                "channel_prefix": publish.channel_prefix,
                "stream_key": publish.stream_key,
                "stream_maxlen": publish.stream_maxlen,
                "tls": publish.url.starts_with("rediss:").then_some(&publish.tls),
                "username": publish.auth.username,
                "password_file": publish.auth.password_file,
            }),
        ),
        (
            "buffer",
            json!({
                "max_envelopes": buffer.envelopes,
                "max_mib": buffer.bytes >> 20,
                "policy": buffer.policy.as_str(),
                "dir": spool_dir,
            }),
        ),
        (
            "breaker",
            json!({
                "failures": breaker.failures,
                "recovery_s": breaker.recovery.as_secs_f64(),
            }),
        ),
        (
            "heartbeat",
            json!({ "enabled": heartbeat.is_some(), "prefix": heartbeat }),
        ),
    ]
}
