//! The shard of the fleet one process watches.
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

use anyhow::{Result, bail};
use md5::{Digest, Md5};

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
pub(crate) fn hashmod(key: &str, modulus: u64) -> u64 {
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
}
