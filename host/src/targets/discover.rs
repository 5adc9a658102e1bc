//! `[[discover]]` entries: a Redis Cluster or a Sentinel set whose nodes
//! are watched, as written in `lookout.toml` and resolved, with their
//! checks (the source, credentials, TLS, where found nodes may be and how
//! many are watched).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::{Value, json};

use super::address_key;
use crate::checks::{IntKey, Origin, SecondsKey, check_url, own_tls_needs_rediss};
use crate::redis::allow::Allow;
use crate::redis::endpoint::{Auth, Endpoint};
use crate::redis::redact::redact_url;
use crate::redis::tls::Tls;

/// One `[[discover]]` table of `lookout.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoverFile {
    /// A node of a Redis Cluster.
    pub cluster: Option<String>,
    /// A sentinel (with `master`).
    pub sentinel: Option<String>,
    /// The master's name in Sentinel.
    pub master: Option<String>,
    /// Seconds between discoveries, 30 by default.
    pub refresh_s: Option<f64>,
    /// Labels of every node found.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The watchers that run on the nodes found; all by default.
    pub watchers: Option<Vec<String>>,
    /// TLS settings of this entry and the nodes it finds, over `[tls]`.
    pub tls: Option<Tls>,
    /// Where found nodes may be: networks, addresses, host names and
    /// `*.suffix` patterns; by default the seed's host, names under its
    /// parent domain and the loopback, private and link-local ranges.
    pub allow: Option<Vec<String>>,
    /// Most nodes watched, 1000 by default.
    pub max_nodes: Option<i64>,
    /// ACL user of the seed or sentinel (and of a cluster's nodes).
    pub username: Option<String>,
    /// File holding the password of the seed or sentinel (and of a
    /// cluster's nodes).
    pub password_file: Option<PathBuf>,
    /// ACL user of the nodes a sentinel names.
    pub node_username: Option<String>,
    /// File holding the password of the nodes a sentinel names.
    pub node_password_file: Option<PathBuf>,
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

    /// This entry as resolved, in the keys of a `[[discover]]` table that
    /// apply to its source, as `lookout config` shows it: the URL without
    /// its password, its TLS keys when it is a `rediss://` URL.
    #[must_use]
    pub fn shown(&self) -> Value {
        let mut table = json!({
            "refresh_s": self.refresh.as_secs_f64(),
            "labels": self.labels,
            "watchers": self.watchers,
            "tls": self.url.starts_with("rediss:").then_some(&self.tls),
            "allow": self.allow.entries(),
            "max_nodes": self.max_nodes,
            "username": self.auth.username,
            "password_file": self.auth.password_file,
        });
        let url = redact_url(&self.url);
        let own = match &self.source {
            Source::Cluster => json!({ "cluster": url }),
            Source::Sentinel { master } => json!({
                "sentinel": url,
                "master": master,
                "node_username": self.node_auth.username,
                "node_password_file": self.node_auth.password_file,
            }),
        };
        if let (Value::Object(table), Value::Object(own)) = (&mut table, own) {
            table.extend(own);
        }
        table
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

/// `refresh_s` of a `[[discover]]` entry (messages name it with the
/// entry, `discover[0].refresh_s`).
pub(crate) const REFRESH_S: SecondsKey = SecondsKey::new("refresh_s", 30.0);

/// `max_nodes` of a `[[discover]]` entry.
pub(crate) const MAX_NODES: IntKey = IntKey::new("max_nodes", 1000, 1..=100_000);

/// The `[[discover]]` entries, each over the `[tls]` table `tls`.
///
/// # Errors
/// An entry that fails its checks, or that an earlier entry already
/// discovers; the message names the key (`discover[1].cluster`) at
/// `origin`.
pub(crate) fn resolve(
    entries: &[DiscoverFile],
    tls: &Tls,
    origin: &Origin,
) -> Result<Vec<Discover>> {
    let discover = entries
        .iter()
        .enumerate()
        .map(|(i, entry)| entry.resolve(&format!("discover[{i}]"), tls, origin))
        .collect::<Result<Vec<_>>>()?;
    for (i, d) in discover.iter().enumerate() {
        if discover[..i]
            .iter()
            .any(|o| o.url == d.url && o.source == d.source)
        {
            bail!(
                "{}: {} is already discovered by an earlier entry",
                origin.key(&format!("discover[{i}]")),
                d.describe()
            );
        }
    }
    Ok(discover)
}

impl DiscoverFile {
    /// Checks this entry, named `name` (`discover[0]`) in messages.
    fn resolve(&self, name: &str, tls: &Tls, origin: &Origin) -> Result<Discover> {
        let key = |suffix: &str| origin.key(&format!("{name}{suffix}"));
        let at = key("");
        let (url, source) = match (&self.cluster, &self.sentinel, &self.master) {
            (Some(url), None, None) => (url, Source::Cluster),
            (None, Some(url), Some(master)) if !master.trim().is_empty() => (
                url,
                Source::Sentinel {
                    master: master.clone(),
                },
            ),
            (None, Some(_), _) => {
                bail!(
                    "{at}: a sentinel entry needs `master`, the name Sentinel knows the master by"
                )
            }
            (Some(_), None, Some(_)) => {
                bail!("{at}: `master` is for Sentinel; a cluster entry has only `cluster`")
            }
            (Some(_), Some(_), _) => {
                bail!("{at}: `cluster` and `sentinel` both given; one entry discovers one set")
            }
            (None, None, _) => bail!(
                "{at}: needs `cluster = \"redis://NODE:PORT\"` or \
                 `sentinel = \"redis://HOST:26379\"` with `master = \"NAME\"`"
            ),
        };
        let url_key = if matches!(source, Source::Cluster) {
            ".cluster"
        } else {
            ".sentinel"
        };
        check_url(url).with_context(|| key(url_key))?;
        let refresh = crate::checks::seconds(self.refresh_s.unwrap_or(REFRESH_S.default))
            .with_context(|| key(".refresh_s"))?;
        if let Some(k) = self.labels.keys().find(|k| k.is_empty()) {
            bail!("{}: a label has an empty name `{k}`", key(".labels"));
        }
        if self.tls.is_some() {
            own_tls_needs_rediss(url).with_context(|| key(".tls"))?;
        }
        let tls = self
            .tls
            .as_ref()
            .map_or_else(|| tls.clone(), |own| own.over(tls));
        tls.check(url).with_context(|| key(".tls"))?;
        let auth = Auth {
            username: self.username.clone(),
            password_file: self.password_file.clone(),
        };
        auth.check(url, name).with_context(|| key(""))?;
        let node_auth = Auth {
            username: self.node_username.clone(),
            password_file: self.node_password_file.clone(),
        };
        if !node_auth.is_empty() {
            if source == Source::Cluster {
                bail!(
                    "{}: `node_username` and `node_password_file` are for the nodes a sentinel \
                     names; a cluster's nodes take the entry's own credentials",
                    key("")
                );
            }
            node_auth
                .password(&format!("{name}.node_password_file"))
                .with_context(|| key(""))?;
        }
        let seed_host = url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        let allow = match &self.allow {
            Some(entries) => Allow::parse(entries, &seed_host).with_context(|| key(".allow"))?,
            None => Allow::default_for(&seed_host),
        };
        let max_nodes = MAX_NODES
            .check(self.max_nodes)
            .with_context(|| key(".max_nodes"))?;
        Ok(Discover {
            source,
            url: url.clone(),
            refresh,
            labels: self.labels.clone(),
            watchers: self.watchers.clone(),
            tls,
            auth,
            node_auth,
            allow: Arc::new(allow),
            max_nodes: usize::try_from(max_nodes)?,
        })
    }
}
