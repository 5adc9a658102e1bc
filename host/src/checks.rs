//! What every settings section checks alike, whichever module owns it:
//! integer and seconds keys, each typed with its default and accepted
//! range, Redis URLs, and a `tls` table only beside a `rediss://` URL.
//! Errors name the key, and the file through [`Origin`].

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::redis::redact::{redact_text, redact_url};

/// Where a section was written, for messages: ``key `publish.url` in
/// /etc/lookout/lookout.toml``, or `` `publish.url` `` without a file.
#[derive(Debug, Clone, Copy, Default)]
pub struct Origin<'a> {
    file: Option<&'a Path>,
}

impl<'a> Origin<'a> {
    /// Keys of the file at `file`, or of no file.
    #[must_use]
    pub fn new(file: Option<&'a Path>) -> Self {
        Self { file }
    }

    /// `key` (`publish.url`, `targets[2].tls`) for a message.
    #[must_use]
    pub fn key(&self, key: &str) -> String {
        match self.file {
            Some(path) => format!("key `{key}` in {}", path.display()),
            None => format!("`{key}`"),
        }
    }

    /// The file for messages that name it first: its path, or `config`.
    #[must_use]
    pub fn file_name(&self) -> String {
        self.file
            .map_or_else(|| "config".to_owned(), |p| p.display().to_string())
    }
}

/// An integer key: its default and the values it accepts, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IntKey {
    /// The key as messages name it, `table.key` below the top level.
    pub key: &'static str,
    /// The value when the key is not set.
    pub default: i64,
    /// Smallest accepted value.
    pub min: i64,
    /// Largest accepted value.
    pub max: i64,
}

impl IntKey {
    /// The key `key`, `default` when unset, accepting `range`.
    #[must_use]
    pub(crate) const fn new(
        key: &'static str,
        default: i64,
        range: std::ops::RangeInclusive<i64>,
    ) -> Self {
        Self {
            key,
            default,
            min: *range.start(),
            max: *range.end(),
        }
    }

    /// `value` (or the default) when it lies in the range; the caller
    /// names the key.
    ///
    /// # Errors
    /// The value is out of range; the message gives the range.
    pub(crate) fn check(&self, value: Option<i64>) -> Result<i64> {
        let Self { min, max, .. } = *self;
        let v = value.unwrap_or(self.default);
        if v < min || v > max {
            bail!("{v} is out of range: expected an integer from {min} to {max}");
        }
        Ok(v)
    }

    /// [`IntKey::check`] with the message naming this key at `origin`, as
    /// a `T`.
    ///
    /// # Errors
    /// The value is out of range (or does not fit `T`).
    pub(crate) fn resolve<T>(&self, value: Option<i64>, origin: &Origin) -> Result<T>
    where
        T: TryFrom<i64, Error = std::num::TryFromIntError>,
    {
        let v = self.check(value).with_context(|| origin.key(self.key))?;
        Ok(T::try_from(v)?)
    }
}

/// A key in seconds, with its default; every one accepts
/// [`MIN_SECONDS`] to below [`MAX_SECONDS`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SecondsKey {
    /// The key as messages name it.
    pub key: &'static str,
    /// Seconds when the key is not set.
    pub default: f64,
}

impl SecondsKey {
    /// The key `key`, `default` seconds when unset.
    #[must_use]
    pub(crate) const fn new(key: &'static str, default: f64) -> Self {
        Self { key, default }
    }

    /// `value` (or the default) as a duration, the message naming this
    /// key at `origin`.
    ///
    /// # Errors
    /// Not a number of seconds in range.
    pub(crate) fn resolve(&self, value: Option<f64>, origin: &Origin) -> Result<Duration> {
        seconds(value.unwrap_or(self.default)).with_context(|| origin.key(self.key))
    }
}

/// Every seconds setting (`poll_interval`, `connect_timeout`,
/// `response_timeout`, `shutdown_grace`, `breaker.recovery_s`,
/// `discover.refresh_s`, and `POLL_INTERVAL`, `--poll-interval`,
/// `record --every`) is at least this (one millisecond: less would round
/// to nothing)...
pub(crate) const MIN_SECONDS: f64 = 0.001;
/// ...and below this: one day.
pub(crate) const MAX_SECONDS: f64 = 86_400.0;

/// `value` seconds as a duration.
///
/// # Errors
/// Not finite or out of range; the caller names the key.
pub(crate) fn seconds(value: f64) -> Result<Duration> {
    if !(value.is_finite() && (MIN_SECONDS..MAX_SECONDS).contains(&value)) {
        bail!(
            "{value} is out of range: expected seconds from {MIN_SECONDS} to below {MAX_SECONDS} \
             (one day)"
        );
    }
    Ok(Duration::from_secs_f64(value))
}

/// Parses a seconds value from the environment or a flag.
///
/// # Errors
/// Text that is not a positive, finite number.
pub(crate) fn parse_seconds(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    seconds(value).map_err(|e| e.to_string())?;
    Ok(value)
}

/// Checks that a Redis URL parses, without echoing its password.
///
/// # Errors
/// The URL is malformed or not a `redis://`, `rediss://` or `unix://` URL.
pub(crate) fn check_url(url: &str) -> Result<()> {
    let shown = redact_url(url);
    let parsed =
        url::Url::parse(url).map_err(|e| anyhow::anyhow!("bad Redis URL `{shown}`: {e}"))?;
    match parsed.scheme() {
        "redis" | "rediss" | "redis+unix" | "unix" => {}
        other => bail!(
            "bad Redis URL `{shown}`: scheme `{other}` is not redis://, rediss:// (TLS), \
             redis+unix:// or unix://"
        ),
    }
    redis::Client::open(url).map_err(|e| {
        anyhow::anyhow!(
            "bad Redis URL `{shown}`: {}",
            redact_text(&e.to_string(), url)
        )
    })?;
    Ok(())
}

/// A `tls` table of a target, discover entry or the bus applies only to a
/// `rediss://` URL: on another it would be silently ignored.
///
/// # Errors
/// `url` is not a `rediss://` URL.
pub(crate) fn own_tls_needs_rediss(url: &str) -> Result<()> {
    if url.starts_with("rediss:") {
        return Ok(());
    }
    bail!(
        "a `tls` table is set but the URL `{}` is not rediss://, so it would not be used; \
         write rediss:// to connect over TLS, or remove the table",
        redact_url(url)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_parse() {
        assert_eq!(parse_seconds("0.5").unwrap(), 0.5);
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("abc").is_err());
        assert!(parse_seconds("1e300").is_err());
        assert!(parse_seconds("NaN").is_err());
    }

    #[test]
    fn integer_keys_name_their_range() {
        let key = IntKey::new("table.key", 7, 1..=10);
        assert_eq!(key.check(None).unwrap(), 7);
        assert_eq!(key.check(Some(10)).unwrap(), 10);
        let origin = Origin::new(Some(Path::new("l.toml")));
        let err = format!("{:#}", key.resolve::<u32>(Some(11), &origin).unwrap_err());
        assert_eq!(
            err,
            "key `table.key` in l.toml: 11 is out of range: expected an integer from 1 to 10"
        );
        assert_eq!(Origin::default().key("a"), "`a`");
    }
}
