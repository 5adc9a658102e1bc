//! The `[alertmanager]` table of `lookout.toml` as written, and its
//! resolve: the Alertmanager URLs, the resend cadence and timeout, the
//! generator URL, the table's own TLS and the credentials.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::checks::{Origin, SecondsKey};
use crate::redis::tls::Tls;

/// `[alertmanager]` table of `lookout.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerFile {
    /// Alertmanager base URLs, each sent every alert (an HA pair); none:
    /// nothing is sent.
    pub urls: Option<Vec<String>>,
    /// Seconds between re-sends of the active alerts.
    pub resend_s: Option<f64>,
    /// Seconds one send may take, connecting included.
    pub timeout_s: Option<f64>,
    /// Base of every alert's `generatorURL`.
    pub external_url: Option<String>,
    /// TLS of `https://` URLs; the `[tls]` table does not apply here.
    pub tls: Option<Tls>,
    /// Basic-auth user; needs `password_file`.
    pub username: Option<String>,
    /// File holding the basic-auth password, read at every send.
    pub password_file: Option<PathBuf>,
    /// File holding a bearer token, read at every send.
    pub bearer_token_file: Option<PathBuf>,
    /// Send an always-firing `Watchdog` alert too.
    pub watchdog: Option<bool>,
}

/// `alertmanager.resend_s`.
pub(crate) const RESEND_S: SecondsKey = SecondsKey::new("alertmanager.resend_s", 60.0);

/// `alertmanager.timeout_s`.
pub(crate) const TIMEOUT_S: SecondsKey = SecondsKey::new("alertmanager.timeout_s", 10.0);

/// How a send proves who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Credentials {
    /// Nothing.
    None,
    /// `Authorization: Basic`, the password read from its file.
    Basic {
        /// `alertmanager.username`.
        username: String,
        /// `alertmanager.password_file`.
        password_file: PathBuf,
    },
    /// `Authorization: Bearer`, the token read from its file.
    Bearer(PathBuf),
}

/// Where and how alerts are sent.
#[derive(Debug, Clone)]
pub struct AlertmanagerSettings {
    /// Base URLs, without a trailing `/`: alerts go to
    /// `{url}/api/v2/alerts`.
    pub(crate) urls: Vec<url::Url>,
    /// Time between re-sends while an alert is active; `endsAt` lies four
    /// of these ahead.
    pub(crate) resend: Duration,
    /// Longest a send may take.
    pub(crate) timeout: Duration,
    /// Every alert's `generatorURL`.
    pub(crate) external_url: Option<String>,
    /// TLS of `https://` URLs.
    pub(crate) tls: Tls,
    /// Credentials of every send.
    pub(crate) credentials: Credentials,
    /// Whether the `Watchdog` alert is sent.
    pub(crate) watchdog: bool,
}

impl AlertmanagerFile {
    /// The sender's settings, `None` when no URL is set.
    ///
    /// # Errors
    /// A URL that is not `http://` or `https://`, a value out of range, a
    /// `tls` table with no `https://` URL, unreadable TLS files, a
    /// username without its password file or both kinds of credentials;
    /// the message names the key at `origin`.
    pub fn resolve(&self, origin: &Origin) -> Result<Option<AlertmanagerSettings>> {
        let resend = RESEND_S.resolve(self.resend_s, origin)?;
        let timeout = TIMEOUT_S.resolve(self.timeout_s, origin)?;
        let mut urls = Vec::new();
        for (i, text) in self.urls.iter().flatten().enumerate() {
            let key = origin.key(&format!("alertmanager.urls[{i}]"));
            urls.push(base_url(text).with_context(|| key)?);
        }
        if let Some(text) = &self.external_url {
            match url::Url::parse(text) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => bail!(
                    "{}: `{text}` is not an http:// or https:// URL; write the address \
                     operators open to see this Lookout (it becomes every alert's generatorURL)",
                    origin.key("alertmanager.external_url")
                ),
            }
        }
        let tls = self.tls.clone().unwrap_or_default();
        if self.tls.is_some() {
            if !urls.is_empty() && !urls.iter().any(|u| u.scheme() == "https") {
                bail!(
                    "{}: a `tls` table is set but no URL is https://, so it would not be used; \
                     write https:// URLs or remove the table",
                    origin.key("alertmanager.tls")
                );
            }
            // Checked as the table of a TLS URL: every file must be PEM.
            tls.check("rediss://check")
                .with_context(|| origin.key("alertmanager.tls"))?;
        }
        let credentials = match (&self.username, &self.password_file, &self.bearer_token_file) {
            (None, None, None) => Credentials::None,
            (Some(username), Some(password_file), None) => Credentials::Basic {
                username: username.clone(),
                password_file: password_file.clone(),
            },
            (None, None, Some(token)) => Credentials::Bearer(token.clone()),
            (_, _, Some(_)) => bail!(
                "{}: basic auth (username, password_file) and a bearer token are both set; \
                 keep one",
                origin.key("alertmanager.bearer_token_file")
            ),
            (Some(_), None, None) => bail!(
                "{}: username is set without password_file; basic auth needs both",
                origin.key("alertmanager.username")
            ),
            (None, Some(_), None) => bail!(
                "{}: password_file is set without username; basic auth needs both",
                origin.key("alertmanager.password_file")
            ),
        };
        for (key, file) in [
            ("alertmanager.password_file", &self.password_file),
            ("alertmanager.bearer_token_file", &self.bearer_token_file),
        ] {
            if let Some(path) = file {
                std::fs::metadata(path)
                    .with_context(|| format!("reading {}", path.display()))
                    .with_context(|| origin.key(key))?;
            }
        }
        if urls.is_empty() {
            return Ok(None);
        }
        Ok(Some(AlertmanagerSettings {
            urls,
            resend,
            timeout,
            external_url: self.external_url.clone(),
            tls,
            credentials,
            watchdog: self.watchdog.unwrap_or(false),
        }))
    }
}

/// `text` as an Alertmanager base URL: `http://` or `https://`, a host,
/// no credentials (they go in the credential keys), no trailing `/`.
fn base_url(text: &str) -> Result<url::Url> {
    let mut url = url::Url::parse(text)
        .map_err(|e| anyhow::anyhow!("`{text}` is not a URL ({e}); write http://HOST:9093"))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!(
            "`{}` is not an http:// or https:// URL; write http://HOST:9093",
            url.scheme()
        );
    }
    if url.host_str().is_none_or(str::is_empty) {
        bail!("`{text}` names no host; write http://HOST:9093");
    }
    if !url.username().is_empty() || url.password().is_some() {
        bail!(
            "the URL carries credentials; set alertmanager.username and password_file (or \
             bearer_token_file) instead"
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        bail!("`{text}` has a query or fragment; write the base URL, e.g. http://HOST:9093");
    }
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&path);
    Ok(url)
}

/// The table as resolved, in the file's keys and units, as `lookout
/// config` shows it (the credential files by their paths).
#[must_use]
pub(crate) fn shown(settings: Option<&AlertmanagerSettings>) -> (&'static str, Value) {
    let Some(s) = settings else {
        return (
            "alertmanager",
            json!({
                "urls": [],
                "resend_s": RESEND_S.default,
                "timeout_s": TIMEOUT_S.default,
            }),
        );
    };
    let (username, password_file, bearer_token_file) = match &s.credentials {
        Credentials::None => (None, None, None),
        Credentials::Basic {
            username,
            password_file,
        } => (Some(username), Some(password_file), None),
        Credentials::Bearer(file) => (None, None, Some(file)),
    };
    let https = s.urls.iter().any(|u| u.scheme() == "https");
    (
        "alertmanager",
        json!({
            "urls": s.urls.iter().map(url::Url::as_str).collect::<Vec<_>>(),
            "resend_s": s.resend.as_secs_f64(),
            "timeout_s": s.timeout.as_secs_f64(),
            "external_url": s.external_url,
            "tls": https.then_some(&s.tls),
            "username": username,
            "password_file": password_file,
            "bearer_token_file": bearer_token_file,
            "watchdog": s.watchdog,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str) -> Result<Option<AlertmanagerSettings>> {
        let file: AlertmanagerFile = toml::from_str(text).unwrap();
        file.resolve(&Origin::new(Some(std::path::Path::new("l.toml"))))
    }

    fn error(text: &str) -> String {
        format!("{:#}", resolve(text).unwrap_err())
    }

    #[test]
    fn no_url_is_off_and_defaults_apply() {
        assert!(resolve("").unwrap().is_none());
        let s = resolve("urls = ['http://am:9093/']").unwrap().unwrap();
        assert_eq!(s.urls[0].as_str(), "http://am:9093/");
        assert_eq!(s.resend, Duration::from_secs(60));
        assert_eq!(s.timeout, Duration::from_secs(10));
        assert!(!s.watchdog);
        assert_eq!(s.credentials, Credentials::None);
        let s = resolve("urls = ['https://h/prefix/']").unwrap().unwrap();
        assert_eq!(s.urls[0].as_str(), "https://h/prefix");
    }

    #[test]
    fn bad_values_name_the_key() {
        assert!(error("urls = ['redis://am']").contains("key `alertmanager.urls[0]` in l.toml"));
        assert!(error("urls = ['http://u:p@am']").contains("credentials"));
        assert!(!error("urls = ['http://u:secret@am']").contains("secret"));
        assert!(error("urls = ['http://am']\nresend_s = 0").contains("alertmanager.resend_s"));
        assert!(error("urls = ['http://am']\ntimeout_s = -1").contains("alertmanager.timeout_s"));
        assert!(
            error("urls = ['http://am']\nexternal_url = 'x'").contains("alertmanager.external_url")
        );
        assert!(error("urls = ['http://am']\ntls = { insecure = true }").contains("https://"));
        assert!(error("urls = ['http://am']\nusername = 'u'").contains("password_file"));
        assert!(
            error("urls = ['http://am']\nbearer_token_file = '/nonexistent/token'")
                .contains("alertmanager.bearer_token_file")
        );
        assert!(
            error("urls = ['http://am']\nusername = 'u'\npassword_file = '/p'\nbearer_token_file = '/t'")
                .contains("keep one")
        );
    }
}
