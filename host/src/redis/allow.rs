//! Which addresses a discovered node may have: a `[[discover]]` entry's
//! `allow` list of networks (CIDRs or single addresses), host names and
//! `*.suffix` patterns. A node outside it is never dialled, so a server
//! that announces a stranger's address cannot send Lookout's credentials
//! there.
//!
//! A node announced by address is checked by address. A node announced by
//! host name is checked by name, and again on every address the name
//! resolves to when it is dialled, so a name that passes cannot be pointed
//! at an address that does not (DNS rebinding). The seed's (or
//! sentinel's) own host, configured by the operator, is always allowed.

use std::net::IpAddr;

use anyhow::{Result, bail};
use ipnet::IpNet;

/// Networks allowed when an entry sets no `allow`: loopback, private
/// (RFC 1918, IPv6 unique local) and link-local ranges.
pub(crate) const DEFAULT_NETS: [&str; 8] = [
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
    "169.254.0.0/16",
    "fe80::/10",
];

/// One `allow` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    /// A network; a single address is a /32 or /128.
    Net(IpNet),
    /// A host name, compared without case.
    Name(String),
    /// `*.example.com`: any name ending in `.example.com`.
    Suffix(String),
}

/// An `allow` list, with the seed's host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allow {
    rules: Vec<Rule>,
    /// The seed's or sentinel's host, lower-case, without brackets.
    seed_host: String,
}

impl Allow {
    /// The list an entry gets without `allow`: its seed's host, names
    /// under the seed's parent domain (`*.cache.example.com` for the seed
    /// `node-1.cache.example.com`; none for a seed of two labels or fewer,
    /// or an address), and [`DEFAULT_NETS`].
    #[must_use]
    pub fn default_for(seed_host: &str) -> Self {
        let seed_host = normal(seed_host);
        let mut rules: Vec<Rule> = DEFAULT_NETS
            .iter()
            .map(|n| Rule::Net(n.parse().expect("valid default network")))
            .collect();
        if let Some(parent) = parent_domain(&seed_host) {
            rules.push(Rule::Suffix(format!(".{parent}")));
        }
        Self { rules, seed_host }
    }

    /// The list written in `allow`, with the seed's host.
    ///
    /// # Errors
    /// An entry is neither an address, a CIDR network, a host name nor
    /// `*.suffix`; the message quotes it.
    pub fn parse(entries: &[String], seed_host: &str) -> Result<Self> {
        let mut rules = Vec::with_capacity(entries.len());
        for entry in entries {
            let e = entry.trim();
            let rule = if let Ok(net) = e.parse::<IpNet>() {
                Rule::Net(net.trunc())
            } else if let Ok(ip) = e.trim_matches(['[', ']']).parse::<IpAddr>() {
                Rule::Net(IpNet::from(ip))
            } else if let Some(suffix) = e.strip_prefix("*.") {
                if !is_name(suffix) || !suffix.contains('.') {
                    bail!(
                        "`{entry}` is not a pattern: write `*.` and a domain of at least two \
                         labels, as in `*.cache.example.com`"
                    );
                }
                Rule::Suffix(format!(".{}", suffix.to_ascii_lowercase()))
            } else if is_name(e) {
                Rule::Name(e.to_ascii_lowercase())
            } else {
                bail!(
                    "`{entry}` is not an address, a network (10.0.0.0/8), a host name or a \
                     pattern (*.cache.example.com)"
                );
            };
            rules.push(rule);
        }
        Ok(Self {
            rules,
            seed_host: normal(seed_host),
        })
    }

    /// Whether a node announced at `host` (an address or a name) may be
    /// dialled.
    #[must_use]
    pub fn host(&self, host: &str) -> bool {
        let host = normal(host);
        if host == self.seed_host {
            return true;
        }
        // An IPv6 address with a zone (`fe80::1%eth0`) is its address.
        let address = host.split_once('%').map_or(host.as_str(), |(a, _zone)| a);
        match address.parse::<IpAddr>() {
            Ok(ip) => self.address(ip),
            Err(_) => self.rules.iter().any(|r| match r {
                Rule::Name(n) => *n == host,
                Rule::Suffix(s) => host.ends_with(s.as_str()) && host.len() > s.len(),
                Rule::Net(_) => false,
            }),
        }
    }

    /// Whether `ip`, an address a node's name resolved to, may be dialled.
    #[must_use]
    pub fn address(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if self.seed_host.parse::<IpAddr>().ok() == Some(ip) {
            return true;
        }
        self.rules.iter().any(|r| match r {
            Rule::Net(net) => net.contains(&ip),
            _ => false,
        })
    }

    /// Whether `host` is the seed's own host, dialled without checks.
    #[must_use]
    pub fn is_seed(&self, host: &str) -> bool {
        normal(host) == self.seed_host
    }

    /// The list as it would be written in `allow` (the seed's host, always
    /// allowed, not among them).
    #[must_use]
    pub fn entries(&self) -> Vec<String> {
        self.rules
            .iter()
            .map(|r| match r {
                Rule::Net(net) => net.to_string(),
                Rule::Name(name) => name.clone(),
                Rule::Suffix(suffix) => format!("*{suffix}"),
            })
            .collect()
    }
}

/// Lower-case, without IPv6 brackets or a trailing dot.
fn normal(host: &str) -> String {
    host.trim_matches(['[', ']'])
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// Whether `text` is a DNS host name: dot-separated labels of letters,
/// digits, `-` and `_`.
fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `cache.example.com` for `node-1.cache.example.com`; `None` for an
/// address, or a name whose parent would have fewer than two labels.
fn parent_domain(host: &str) -> Option<&str> {
    if host.parse::<IpAddr>().is_ok() || !is_name(host) {
        return None;
    }
    let (_, parent) = host.split_once('.')?;
    parent.contains('.').then_some(parent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str], seed: &str) -> Allow {
        let entries: Vec<String> = entries.iter().map(|s| (*s).to_owned()).collect();
        Allow::parse(&entries, seed).unwrap()
    }

    #[test]
    fn defaults_are_local_ranges_and_the_seed_domain() {
        let allow = Allow::default_for("node-1.cache.example.com");
        assert_eq!(
            allow.entries()[DEFAULT_NETS.len()..],
            ["*.cache.example.com".to_owned()]
        );
        for ok in [
            "127.0.0.2",
            "10.1.2.3",
            "172.31.0.1",
            "192.168.7.7",
            "fd00::7",
            "fe80::1",
            "fe80::1%eth0",
            "169.254.1.1",
            "::1",
            "node-4.cache.example.com",
            "NODE-5.Cache.Example.com.",
            "node-1.cache.example.com",
        ] {
            assert!(allow.host(ok), "{ok}");
        }
        for no in [
            "8.8.8.8",
            "172.32.0.1",
            "2001:db8::1",
            "2001:db8::1%eth0",
            "cache.example.com.evil.net",
            "evilcache.example.com",
            "other.example.com",
            "cache.example.com",
        ] {
            assert!(!allow.host(no), "{no}");
        }
        assert!(allow.address("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!allow.address("::ffff:8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn no_parent_domain_for_short_names_or_addresses() {
        assert_eq!(parent_domain("example.com"), None);
        assert_eq!(parent_domain("redis"), None);
        assert_eq!(parent_domain("10.0.0.1"), None);
        assert_eq!(parent_domain("a.b.c"), Some("b.c"));
        let allow = Allow::default_for("203.0.113.9");
        assert!(allow.host("203.0.113.9"));
        assert!(allow.address("203.0.113.9".parse().unwrap()));
        assert!(!allow.host("203.0.113.10"));
    }

    #[test]
    fn written_lists_replace_the_defaults_but_keep_the_seed() {
        let allow = list(
            &[
                "10.0.0.0/24",
                "203.0.113.7",
                "[2001:db8::9]",
                "*.redis.internal",
                "cache-9",
            ],
            "127.0.0.1",
        );
        for ok in [
            "10.0.0.200",
            "203.0.113.7",
            "2001:db8::9",
            "a.redis.internal",
            "CACHE-9",
            "127.0.0.1",
        ] {
            assert!(allow.host(ok), "{ok}");
        }
        for no in ["10.0.1.1", "127.0.0.2", "redis.internal", "192.168.0.1"] {
            assert!(!allow.host(no), "{no}");
        }
        assert!(allow.is_seed("127.0.0.1"));
        assert!(!allow.address("192.168.0.1".parse().unwrap()));
    }

    #[test]
    fn bad_entries_are_quoted() {
        for bad in ["10.0.0.0/33", "*.com", "*", "a b", "http://x", ""] {
            let e = Allow::parse(&[bad.to_owned()], "h")
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("`{bad}`")), "{bad}: {e}");
        }
    }
}
