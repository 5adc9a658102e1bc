//! One `[[discover]]` entry's answers: the nodes it finds now, screened
//! by its `allow` and `max_nodes` and made targets; asked at start and
//! every `refresh` by a task of its own.

use std::future::Future;
use std::pin::Pin;

use anyhow::Result;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::discovery::{self, Node};
use crate::redis::endpoint::Endpoint;
use crate::targets::{Discover, Source, Target};

/// The label a discovered node's role goes into.
pub(crate) const ROLE_LABEL: &str = "role";

/// What one discover entry found this time, after its `allow` and
/// `max_nodes`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Found {
    /// The nodes to watch.
    pub targets: Vec<Target>,
    /// Announced nodes outside `allow` (`host:port`), never contacted.
    pub refused: Vec<String>,
    /// Announced nodes inside `allow`.
    pub allowed: usize,
    /// Of those, how many `max_nodes` left out.
    pub cut: usize,
    /// Announced nodes that cannot be watched as announced, with why.
    pub skipped: Vec<String>,
}

/// The targets one discover entry finds now; `known` are the nodes it
/// found last time, asked when the configured seed does not answer.
///
/// # Errors
/// No seed or sentinel answered; the message names them (redacted).
pub(crate) fn discover<'a>(
    entry: &'a Discover,
    known: &'a [Endpoint],
    settings: &'a Settings,
) -> Pin<Box<dyn Future<Output = Result<Found>> + Send + 'a>> {
    Box::pin(discover_now(entry, known, settings))
}

async fn discover_now(entry: &Discover, known: &[Endpoint], settings: &Settings) -> Result<Found> {
    let (connect, response) = (settings.connect_timeout, settings.response_timeout);
    let sentinel = matches!(entry.source, Source::Sentinel { .. });
    let discovered = match &entry.source {
        Source::Cluster => {
            let mut seeds = vec![entry.endpoint()];
            seeds.extend(known.iter().filter(|k| k.url != entry.url).cloned());
            discovery::cluster_at(&seeds, connect, response).await?
        }
        Source::Sentinel { master } => {
            discovery::sentinel_at(&[entry.endpoint()], master, connect, response).await?
        }
    };
    let screened = discovery::screen(discovered.nodes, &entry.allow, entry.max_nodes);
    let mut found = Found {
        refused: screened.refused.iter().map(Node::address).collect(),
        allowed: screened.kept.len() + screened.cut,
        cut: screened.cut,
        skipped: discovered.skipped,
        targets: Vec::new(),
    };
    for node in &screened.kept {
        // A sentinel's credentials stay with the sentinel.
        let url = match discovery::node_url_with(&entry.url, node, !sentinel) {
            Ok(url) => url,
            Err(e) => {
                found
                    .skipped
                    .push(format!("node {}: {e:#}", node.address()));
                continue;
            }
        };
        let mut labels = entry.labels.clone();
        labels.insert(ROLE_LABEL.to_owned(), node.role.as_str().to_owned());
        let mut tls = entry.tls.clone();
        if tls.server_name.is_none() {
            tls.server_name.clone_from(&node.tls_name);
        }
        found.targets.push(Target {
            url,
            name: None,
            labels,
            watchers: entry.watchers.clone(),
            tls,
            auth: if sentinel {
                entry.node_auth.clone()
            } else {
                entry.auth.clone()
            },
            allow: Some(entry.allow.clone()),
        });
    }
    Ok(found)
}

/// One discover entry's answers, sent to the daemon: at once, then every
/// `refresh` until `stop` is cancelled (or only once, with `once`).
pub(super) async fn refresh(
    entry_index: usize,
    settings: Settings,
    once: bool,
    answers: mpsc::Sender<(usize, Result<Found>)>,
    stop: CancellationToken,
) {
    let entry = settings.discover[entry_index].clone();
    let mut known: Vec<Endpoint> = Vec::new();
    loop {
        let answer = tokio::select! {
            () = stop.cancelled() => return,
            answer = discover(&entry, &known, &settings) => answer,
        };
        if let Ok(found) = &answer {
            known = found.targets.iter().map(Target::endpoint).collect();
        }
        let sent = tokio::select! {
            () = stop.cancelled() => return,
            sent = answers.send((entry_index, answer)) => sent,
        };
        if sent.is_err() || once {
            return;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(entry.refresh) => {}
        }
    }
}
