//! What one process watches: the targets named in the configuration
//! (`[[targets]]`, as written and resolved), the `[[discover]]` entries
//! that find more ([`discover`]), and the shard of them this process owns
//! ([`shard`]).

pub(crate) mod discover;
pub(crate) mod shard;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::{Value, json};

pub(crate) use discover::{Discover, DiscoverFile, Source};
pub(crate) use shard::{Shard, hashmod};

use crate::checks::{Origin, check_url, own_tls_needs_rediss};
use crate::redis::allow::Allow;
use crate::redis::endpoint::{Auth, Endpoint};
use crate::redis::redact::redact_url;
use crate::redis::tls::Tls;

/// One `[[targets]]` table of `lookout.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetFile {
    /// Redis URL.
    pub url: String,
    /// A name for messages; the `host:port` by default.
    pub name: Option<String>,
    /// Labels copied into every envelope about this target.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The watchers that run on it (file names); all by default.
    pub watchers: Option<Vec<String>>,
    /// TLS settings of this target, over `[tls]`.
    pub tls: Option<Tls>,
    /// ACL user, when the URL names none.
    pub username: Option<String>,
    /// File holding the password, instead of the URL.
    pub password_file: Option<PathBuf>,
}

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

    /// This target as resolved, in the keys of a `[[targets]]` table, as
    /// `lookout config` shows it: the URL without its password, its name
    /// or key, its TLS keys when it is a `rediss://` URL.
    #[must_use]
    pub fn shown(&self) -> Value {
        json!({
            "url": redact_url(&self.url),
            "name": self.key(),
            "labels": self.labels,
            "watchers": self.watchers,
            "tls": self.url.starts_with("rediss:").then_some(&self.tls),
            "username": self.auth.username,
            "password_file": self.auth.password_file,
        })
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
        return redact_url(url);
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

/// The `[[targets]]` tables, each over the `[tls]` table `tls`.
///
/// # Errors
/// A bad URL, a name or URL given twice, an empty label or watcher name,
/// a `tls` table beside a URL that is not `rediss://`, unusable TLS files
/// or credentials; the message names the key (`targets[1].url`) at
/// `origin`.
pub(crate) fn resolve(entries: &[TargetFile], tls: &Tls, origin: &Origin) -> Result<Vec<Target>> {
    let mut targets: Vec<Target> = Vec::with_capacity(entries.len());
    for (i, t) in entries.iter().enumerate() {
        let key = format!("targets[{i}]");
        let at = |suffix: &str| origin.key(&format!("{key}{suffix}"));
        check_url(&t.url).with_context(|| at(".url"))?;
        if let Some(name) = &t.name
            && targets.iter().any(|o| o.name.as_ref() == Some(name))
        {
            bail!("{}: the name `{name}` is used twice", at(".name"));
        }
        if targets.iter().any(|o| o.url == t.url) {
            bail!(
                "{}: `{}` is already a target",
                at(".url"),
                redact_url(&t.url)
            );
        }
        if let Some(k) = t.labels.keys().find(|k| k.is_empty()) {
            bail!("{}: a label has an empty name `{k}`", at(".labels"));
        }
        if let Some(w) = &t.watchers
            && let Some(bad) = w.iter().find(|n| n.is_empty())
        {
            bail!("{}: `{bad}` is not a watcher name", at(".watchers"));
        }
        if t.tls.is_some() {
            own_tls_needs_rediss(&t.url).with_context(|| at(".tls"))?;
        }
        let tls = t
            .tls
            .as_ref()
            .map_or_else(|| tls.clone(), |own| own.over(tls));
        let auth = Auth {
            username: t.username.clone(),
            password_file: t.password_file.clone(),
        };
        auth.check(&t.url, &key).with_context(|| at(""))?;
        targets.push(Target {
            url: t.url.clone(),
            name: t.name.clone(),
            labels: t.labels.clone(),
            watchers: t.watchers.clone(),
            tls,
            auth,
            allow: None,
        });
    }
    for (i, t) in targets.iter().enumerate() {
        t.tls
            .check(&t.url)
            .with_context(|| origin.key(&format!("targets[{i}].tls")))?;
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

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
