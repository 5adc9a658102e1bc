//! One Redis to dial, written once: its URL, TLS settings, credentials
//! kept out of the URL (a user name and a password file, read at every
//! dial so a rotated password is picked up), and for a discovered node the
//! addresses it may resolve to.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, anyhow, bail};

use super::allow::Allow;
use super::dial::{Dialer, Resolver};
use super::redact::redact_url;
use super::tls::{Tls, TlsDial};

/// Credentials given beside a URL rather than in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Auth {
    /// ACL user name (`username`); the URL's when unset.
    pub username: Option<String>,
    /// File holding the password (`password_file`), read at every dial;
    /// one trailing newline is not part of it.
    pub password_file: Option<PathBuf>,
}

impl Auth {
    /// Whether nothing is set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.username.is_none() && self.password_file.is_none()
    }

    /// The password in `password_file`, if one is set.
    ///
    /// # Errors
    /// The file cannot be read, is empty, or is not UTF-8; the message
    /// names `key` (the setting, as `targets[0].password_file`) and the
    /// file, never its content.
    pub fn password(&self, key: &str) -> Result<Option<String>> {
        let Some(path) = &self.password_file else {
            return Ok(None);
        };
        read_secret(key, path).map(Some)
    }

    /// Checks these credentials beside `url` (`key` names the table for
    /// messages, e.g. `targets[2]`): the password file is readable and not
    /// empty, and the URL does not carry a password or user of its own as
    /// well.
    ///
    /// # Errors
    /// Names the key, the file and the fix.
    pub fn check(&self, url: &str, key: &str) -> Result<()> {
        let parsed = url::Url::parse(url).ok();
        if self.password_file.is_some() {
            let in_url = parsed.as_ref().is_some_and(|u| u.password().is_some())
                || url.contains("pass=")
                || url.contains("password=");
            if in_url {
                bail!(
                    "{key}.password_file is set and the URL `{}` carries a password too; keep one \
                     (drop the password from the URL)",
                    redact_url(url)
                );
            }
            self.password(&format!("{key}.password_file"))?;
        }
        if let Some(user) = &self.username {
            if user.is_empty() {
                bail!("{key}.username is empty; remove it or name the ACL user");
            }
            if parsed.as_ref().is_some_and(|u| !u.username().is_empty()) {
                bail!(
                    "{key}.username is set and the URL `{}` names a user too; keep one",
                    redact_url(url)
                );
            }
        }
        Ok(())
    }
}

/// Reads a password file: its content without one trailing newline.
fn read_secret(key: &str, path: &Path) -> Result<String> {
    let bytes = std::fs::read(path)
        .map_err(|e| anyhow!("{key}: cannot read {}: {}", path.display(), e.kind()))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow!("{key}: {} is not UTF-8 text", path.display()))?;
    let text = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if text.is_empty() {
        bail!(
            "{key}: {} is empty; write the password in it",
            path.display()
        );
    }
    Ok(text.to_owned())
}

/// Where and how to dial one Redis.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// Redis URL (may hold a password: show it through
    /// [`redact_url`]).
    pub url: String,
    /// TLS settings, used for a `rediss://` URL.
    pub tls: Tls,
    /// Credentials beside the URL.
    pub auth: Auth,
    /// For a discovered node: the addresses its host may resolve to when
    /// dialled; `None` for a configured one.
    pub allow: Option<Arc<Allow>>,
}

impl Endpoint {
    /// An endpoint with only a URL.
    #[must_use]
    pub fn url(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            ..Self::default()
        }
    }

    /// A configured endpoint: a URL with its TLS settings and credentials
    /// (no address check: the operator named it).
    #[must_use]
    pub fn configured(url: &str, tls: &Tls, auth: &Auth) -> Self {
        Self {
            url: url.to_owned(),
            tls: tls.clone(),
            auth: auth.clone(),
            allow: None,
        }
    }

    /// An endpoint with a URL and TLS settings.
    #[must_use]
    pub fn with_tls(url: &str, tls: &Tls) -> Self {
        Self {
            url: url.to_owned(),
            tls: tls.clone(),
            ..Self::default()
        }
    }

    /// What a dial of this endpoint needs, reading the certificate, key
    /// and password files now.
    ///
    /// # Errors
    /// The URL does not parse, or a file cannot be read.
    pub fn dialer(&self) -> Result<Dialer> {
        let TlsDial {
            mut info,
            config,
            pin,
            client_cert,
        } = self.tls.client(&self.url)?;
        if !self.auth.is_empty() {
            let mut redis = info.redis_settings().clone();
            if let Some(user) = &self.auth.username {
                redis = redis.set_username(user);
            }
            if let Some(password) = self.auth.password("password_file")? {
                redis = redis.set_password(password);
            }
            info = info.set_redis_settings(redis);
        }
        Ok(Dialer {
            info,
            tls: config,
            client_cert,
            resolver: Resolver {
                pin,
                allow: self.allow.clone(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_files_are_read_without_the_newline() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let auth = Auth {
            username: Some("ops".into()),
            password_file: Some(file.clone()),
        };
        assert_eq!(
            auth.password("k.password_file").unwrap().as_deref(),
            Some("s3cret")
        );
        auth.check("redis://10.0.0.1:6379", "targets[0]").unwrap();
        let e = auth
            .check("redis://:other@10.0.0.1:6379", "targets[0]")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("targets[0].password_file") && !e.contains("other"),
            "{e}"
        );
        let e = auth
            .check("redis://app@10.0.0.1:6379", "targets[0]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("targets[0].username"), "{e}");
        std::fs::write(&file, "\n").unwrap();
        let e = auth.check("redis://h", "publish").unwrap_err().to_string();
        assert!(
            e.contains("publish.password_file") && e.contains("empty"),
            "{e}"
        );
        let missing = Auth {
            password_file: Some(dir.path().join("nope")),
            ..Auth::default()
        };
        let e = missing
            .check("redis://h", "publish")
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope") && e.contains("cannot read"), "{e}");
    }
}
