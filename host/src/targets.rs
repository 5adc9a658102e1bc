//! What one process watches: the targets named in the configuration, the
//! `[[discover]]` entries that find more, and the shard of them this
//! process owns.
//!
//! # The shard hash
//!
//! A process started with `--shard I/N` owns the targets whose key hashes
//! to `I` modulo `N`, Prometheus' `hashmod` convention: the MD5 digest of
//! the key's UTF-8 bytes, its last 8 bytes read as a big-endian `u64`,
//! modulo `N`. MD5 is fixed by that convention and is the same on every
//! platform and in every version; it is not used for anything secret.
//!
//! A target's key is its `name` when it has one, otherwise its address
//! `host:port`, followed by `/DB` when the URL selects a database other
//! than 0 (`10.0.0.7:6379/3`). Discovered nodes have no name, so their key
//! is their address.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use md5::{Digest, Md5};

use crate::redis::allow::Allow;
use crate::redis::endpoint::{Auth, Endpoint};
use crate::redis::tls::Tls;

/// One watched Redis, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Redis URL (may hold a password: log it through
    /// [`crate::redis::redact::redact_url`]).
    pub url: String,
    /// Name for messages and the shard key; `None` for its address.
    pub name: Option<String>,
    /// Labels copied into `fields.labels` of its envelopes.
    pub labels: BTreeMap<String, String>,
    /// Watchers that run on it (file names); `None` for all.
    pub watchers: Option<Vec<String>>,
    /// TLS settings for a `rediss://` URL (`[tls]` under its own).
    pub tls: Tls,
    /// Credentials beside the URL (`username`, `password_file`).
    pub auth: Auth,
    /// For a discovered node, the addresses it may resolve to when
    /// dialled (its entry's `allow`); `None` for a configured target.
    pub allow: Option<Arc<Allow>>,
}

impl Target {
    /// A target with only a URL.
    #[must_use]
    pub fn url(url: String) -> Self {
        Self {
            url,
            name: None,
            labels: BTreeMap::new(),
            watchers: None,
            tls: Tls::default(),
            auth: Auth::default(),
            allow: None,
        }
    }

    /// How to dial it.
    #[must_use]
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            allow: self.allow.clone(),
            ..Endpoint::configured(&self.url, &self.tls, &self.auth)
        }
    }

    /// Whether the watcher `name` runs on this target.
    #[must_use]
    pub fn runs(&self, name: &str) -> bool {
        self.watchers
            .as_ref()
            .is_none_or(|w| w.iter().any(|n| n == name))
    }

    /// The key that identifies this target in messages, in the fleet and
    /// in the shard hash: its name, or `host:port` (with `/DB` for a
    /// database other than 0).
    #[must_use]
    pub fn key(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        self.address()
    }

    /// `host:port` of its URL, with `/DB` for a database other than 0.
    #[must_use]
    pub fn address(&self) -> String {
        address_key(&self.url)
    }
}

/// `host:port[/DB]` of a Redis URL; the URL itself (redacted) when it has
/// no host (a Unix socket keeps its path).
fn address_key(url: &str) -> String {
    let Ok(parsed) = url::Url::parse(url) else {
        return crate::redis::redact::redact_url(url);
    };
    let Some(host) = parsed.host_str() else {
        return format!("unix:{}", parsed.path());
    };
    let port = parsed.port().unwrap_or(6379);
    let db = parsed
        .path()
        .trim_start_matches('/')
        .parse::<u32>()
        .unwrap_or(0);
    if db == 0 {
        format!("{host}:{port}")
    } else {
        format!("{host}:{port}/{db}")
    }
}

/// Where a `[[discover]]` entry looks for nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A Redis Cluster: every master and replica, from CLUSTER SHARDS
    /// (CLUSTER NODES before Redis 7).
    Cluster,
    /// The master of this name and its replicas, from Sentinel.
    Sentinel {
        /// The master's name in Sentinel.
        master: String,
    },
}

/// One `[[discover]]` entry, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discover {
    /// Cluster or Sentinel.
    pub source: Source,
    /// The seed node (cluster) or the sentinel; its credentials, database
    /// and options apply to the nodes it finds.
    pub url: String,
    /// Time between two discoveries.
    pub refresh: Duration,
    /// Labels of every node found (besides `role`).
    pub labels: BTreeMap<String, String>,
    /// Watchers that run on the nodes found; `None` for all.
    pub watchers: Option<Vec<String>>,
    /// TLS settings of the seed or sentinel and of the nodes found.
    pub tls: Tls,
    /// Credentials of the seed or sentinel beside its URL; a cluster's
    /// nodes get them too.
    pub auth: Auth,
    /// Credentials of the nodes a sentinel names (`node_username`,
    /// `node_password_file`); a sentinel's own never reach them.
    pub node_auth: Auth,
    /// Where found nodes may be (`allow`).
    pub allow: Arc<Allow>,
    /// Most nodes watched (`max_nodes`): masters first, then by address.
    pub max_nodes: usize,
}

impl Discover {
    /// How to dial the seed or sentinel.
    #[must_use]
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::configured(&self.url, &self.tls, &self.auth)
    }

    /// What this entry is, for messages: `cluster 10.0.0.1:7000` or
    /// `sentinel 10.0.0.9:26379 master mymaster`.
    #[must_use]
    pub fn describe(&self) -> String {
        let at = address_key(&self.url);
        match &self.source {
            Source::Cluster => format!("cluster {at}"),
            Source::Sentinel { master } => format!("sentinel {at} master {master}"),
        }
    }
}

/// `--shard I/N`: this process owns the targets whose key hashes to `I`
/// modulo `N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// `I`, from 0 to `N - 1`.
    pub index: u64,
    /// `N`, at least 1.
    pub count: u64,
}

impl Shard {
    /// The whole fleet: `0/1`.
    pub const ALL: Self = Self { index: 0, count: 1 };

    /// Parses `I/N`.
    ///
    /// # Errors
    /// Not two integers separated by `/`, `N` of 0, or `I` not below `N`.
    pub fn parse(text: &str) -> Result<Self> {
        let usage = "expected I/N with 0 <= I < N, as in 0/3";
        let Some((i, n)) = text.trim().split_once('/') else {
            bail!("shard `{text}`: {usage}");
        };
        let (Ok(index), Ok(count)) = (i.trim().parse::<u64>(), n.trim().parse::<u64>()) else {
            bail!("shard `{text}`: {usage}");
        };
        if count == 0 || index >= count {
            bail!("shard `{text}`: {usage}");
        }
        Ok(Self { index, count })
    }

    /// Whether this shard owns the target of this key.
    #[must_use]
    pub fn owns(&self, key: &str) -> bool {
        hashmod(key, self.count) == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Prometheus' `hashmod`: MD5 of `key`, its bytes 8 to 15 as a big-endian
/// `u64`, modulo `modulus` (at least 1).
#[must_use]
pub fn hashmod(key: &str, modulus: u64) -> u64 {
    let digest = Md5::digest(key.as_bytes());
    let mut tail = [0u8; 8];
    tail.copy_from_slice(&digest[8..16]);
    u64::from_be_bytes(tail) % modulus.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashmod_is_prometheus_hashmod() {
        // These values are fixed forever: a change here re-shards fleets.
        let digest = Md5::digest(b"");
        assert_eq!(
            digest
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        // Bytes 8..16 of md5("") are e9800998ecf8427e.
        assert_eq!(hashmod("", u64::MAX), 0xe980_0998_ecf8_427e);
        assert_eq!(hashmod("", 1), 0);
        assert_eq!(hashmod("anything", 1), 0);
        // Python: int.from_bytes(hashlib.md5(b"10.0.0.7:6379").digest()[8:], "big") % 1000
        assert_eq!(hashmod("10.0.0.7:6379", 1000), 926);
        assert_eq!(hashmod("10.0.0.7:6379", 3), 1);
    }

    #[test]
    fn shards_cover_every_key_exactly_once() {
        for n in 1..=7u64 {
            for k in 0..500 {
                let key = format!("10.0.{}.{}:6379", k / 250, k % 250);
                let owners = (0..n)
                    .filter(|&i| Shard { index: i, count: n }.owns(&key))
                    .count();
                assert_eq!(owners, 1, "{key} over {n} shards");
            }
        }
    }

    #[test]
    fn shards_are_balanced_enough() {
        let n = 4;
        let mut counts = [0u32; 4];
        for k in 0..4000 {
            counts[usize::try_from(hashmod(&format!("host-{k}:6379"), n)).unwrap()] += 1;
        }
        assert!(
            counts.iter().all(|&c| (850..1150).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn shard_parses_and_refuses() {
        assert_eq!(Shard::parse("1/3").unwrap(), Shard { index: 1, count: 3 });
        assert_eq!(Shard::parse(" 0 / 1 ").unwrap(), Shard::ALL);
        for bad in ["3/3", "1/0", "1", "a/2", "-1/2", "1/2/3", ""] {
            let err = Shard::parse(bad).unwrap_err().to_string();
            assert!(err.contains("expected I/N"), "{bad}: {err}");
        }
    }

    #[test]
    fn keys_are_names_or_addresses() {
        let mut t = Target::url("redis://:secret@10.0.0.7:6380/3".to_owned());
        assert_eq!(t.key(), "10.0.0.7:6380/3");
        t.url = "redis://10.0.0.7".to_owned();
        assert_eq!(t.key(), "10.0.0.7:6379");
        t.url = "redis://10.0.0.7:7000/0".to_owned();
        assert_eq!(t.key(), "10.0.0.7:7000");
        t.name = Some("orders".to_owned());
        assert_eq!(t.key(), "orders");
        let unix = Target::url("unix:///run/redis.sock".to_owned());
        assert_eq!(unix.key(), "unix:/run/redis.sock");
    }
}
