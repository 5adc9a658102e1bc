//! The `[alerts]` table of `lookout.toml` as written, and its resolve: how
//! long a host condition must hold before it fires.

use std::time::Duration;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::checks::{Origin, seconds};

/// `[alerts]` table of `lookout.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsFile {
    /// Seconds a host condition (target unreachable, configuration
    /// refused, discovery failed, bus unreachable, envelopes dropped) must
    /// hold before it fires; two poll intervals by default.
    pub for_s: Option<f64>,
}

/// `[alerts]` as resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertsSettings {
    /// How long a host condition holds before it fires.
    pub for_s: Duration,
}

impl AlertsFile {
    /// The settings, `for_s` defaulting to two `poll_interval`s.
    ///
    /// # Errors
    /// `for_s` out of range; the message names the key at `origin`.
    pub fn resolve(&self, poll_interval: Duration, origin: &Origin) -> Result<AlertsSettings> {
        let for_s = match self.for_s {
            Some(s) => seconds(s).with_context(|| origin.key("alerts.for_s"))?,
            None => poll_interval * 2,
        };
        Ok(AlertsSettings { for_s })
    }
}

impl AlertsSettings {
    /// The `[alerts]` table as resolved, as `lookout config` shows it.
    pub(crate) fn shown(&self) -> (&'static str, serde_json::Value) {
        (
            "alerts",
            serde_json::json!({"for_s": self.for_s.as_secs_f64()}),
        )
    }
}
