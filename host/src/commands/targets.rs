//! `lookout targets`: every target the configuration names and discovery
//! finds now, each once, with its labels, where it came from and whether
//! this process's shard watches it; printed as a table or JSON lines.

use std::collections::BTreeSet;

use anyhow::{Result, bail};

use crate::config::Settings;
use crate::daemon::discover::discover;
use crate::daemon::events::{cut_message, refused_message, unwatchable_message};
use crate::redis::redact::redact_url;
use crate::targets::Target;

/// A target as `lookout targets` lists it.
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    /// The target.
    pub target: Target,
    /// `config`, or the discover entry that found it.
    pub source: String,
    /// Whether this process's shard watches it.
    pub watched: bool,
}

/// Everything the configuration names and discovery finds now.
#[derive(Debug, Clone, Default)]
pub(crate) struct Resolved {
    /// The targets, configured ones first, each once.
    pub targets: Vec<Listed>,
    /// Discover entries that did not answer, with why.
    pub errors: Vec<String>,
    /// What discovery left out (nodes outside `allow`, beyond
    /// `max_nodes`, or that cannot be watched), for stderr.
    pub warnings: Vec<String>,
}

/// Resolves the targets once: the configured ones, then each discover
/// entry's (a target both configured and discovered is listed once).
pub(crate) async fn resolve(settings: &Settings) -> Resolved {
    let mut resolved = Resolved::default();
    let mut seen = BTreeSet::new();
    let mut push = |resolved: &mut Resolved, target: Target, source: String| {
        let (key, address) = (target.key(), target.address());
        if !seen.contains(&key) && !seen.contains(&address) {
            seen.insert(key.clone());
            seen.insert(address);
            resolved.targets.push(Listed {
                watched: settings.shard.owns(&key),
                target,
                source,
            });
        }
    };
    for target in &settings.targets {
        push(&mut resolved, target.clone(), "config".to_owned());
    }
    for (i, entry) in settings.discover.iter().enumerate() {
        match discover(entry, &[], settings).await {
            Ok(found) => {
                let how = entry.describe();
                for node in &found.refused {
                    resolved.warnings.push(refused_message(i, &how, node));
                }
                for why in &found.skipped {
                    resolved.warnings.push(unwatchable_message(&how, why));
                }
                if found.cut > 0 {
                    resolved
                        .warnings
                        .push(cut_message(i, &how, found.allowed, entry.max_nodes));
                }
                for target in found.targets {
                    push(&mut resolved, target, entry.describe());
                }
            }
            Err(e) => resolved
                .errors
                .push(format!("discovery failed for {}: {e:#}", entry.describe())),
        }
    }
    resolved
}

/// Prints `resolved` as a table (or JSON lines with `json`); discovery
/// failures go to the end.
///
/// # Errors
/// Writing failed, or a discover entry did not answer (after printing the
/// rest).
pub(crate) fn print(
    settings: &Settings,
    resolved: &Resolved,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<()> {
    let labels = |t: &Target| {
        t.labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    if json {
        for l in &resolved.targets {
            let line = serde_json::json!({
                "target": l.target.key(),
                "url": redact_url(&l.target.url),
                "labels": l.target.labels,
                "watchers": l.target.watchers,
                "source": l.source,
                "watched": l.watched,
                "shard": settings.shard.to_string(),
            });
            writeln!(out, "{line}")?;
        }
    } else {
        let rows: Vec<[String; 5]> = resolved
            .targets
            .iter()
            .map(|l| {
                [
                    l.target.key(),
                    if l.watched { "yes" } else { "no" }.to_owned(),
                    l.source.clone(),
                    labels(&l.target),
                    redact_url(&l.target.url),
                ]
            })
            .collect();
        let head = [
            "TARGET".to_owned(),
            format!("SHARD {}", settings.shard),
            "SOURCE".to_owned(),
            "LABELS".to_owned(),
            "URL".to_owned(),
        ];
        super::write_table(out, &head, &rows, [usize::MAX; 5])?;
        let watched = resolved.targets.iter().filter(|l| l.watched).count();
        writeln!(
            out,
            "{} targets, {watched} watched by shard {}",
            resolved.targets.len(),
            settings.shard
        )?;
    }
    for warning in &resolved.warnings {
        eprintln!("lookout: warning: {warning}");
    }
    if !resolved.errors.is_empty() {
        bail!("{}", resolved.errors.join("; "));
    }
    Ok(())
}
