//! `lookout alerts`: the active conditions of a running daemon, read from
//! its `GET /api/v1/status` at `metrics_addr` and printed as an aligned
//! table or as JSON lines.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::ArgMatches;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::args::{AlertsArgs, SettingsArgs};
use super::run::authoring_runtime;
use crate::untrusted::{clip, escape, json_c1};

/// How long the daemon has to answer, connection included.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Most bytes of a status answer read (every active condition is in it).
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// The API's path; one target per page is enough, the conditions are not
/// paged.
const STATUS_PATH: &str = "/api/v1/status?per_page=1";

/// `lookout alerts`: the daemon's address from `--metrics-addr` or the
/// config's `metrics_addr`, its active conditions printed on stdout.
pub(crate) fn alerts(args: AlertsArgs, given: &ArgMatches) -> Result<()> {
    let addr = match args.metrics_addr {
        Some(addr) => addr,
        None => match args.config {
            None => bail!(
                "no daemon to ask: give --metrics-addr IP:PORT, or a lookout.toml with \
                 `metrics_addr` (-c FILE or LOOKOUT_CONFIG)"
            ),
            Some(path) => {
                let shown = path.display().to_string();
                let settings = SettingsArgs {
                    config: Some(path),
                    ..SettingsArgs::default()
                }
                .load(given)?;
                let addr = settings.metrics_addr.ok_or_else(|| {
                    anyhow!(
                        "{shown} sets no `metrics_addr`, so its daemon serves no status: set \
                         it there, or give --metrics-addr IP:PORT"
                    )
                })?;
                dialable(addr).to_string()
            }
        },
    };
    let status = authoring_runtime()?.block_on(fetch(&addr))?;
    let conditions = status
        .get("conditions")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("http://{addr}/api/v1/status: the answer has no `conditions`"))?;
    let mut out = std::io::stdout().lock();
    print(&status, conditions, args.json, &mut out)?;
    Ok(())
}

/// `addr` to connect to: a daemon listening on every address (`0.0.0.0`
/// or `::`) is reached on loopback.
fn dialable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

/// `GET /api/v1/status` on `addr` within [`TIMEOUT`], parsed.
///
/// # Errors
/// No connection, no answer in time, a status other than 200, or a body
/// that is not JSON; each naming the address.
async fn fetch(addr: &str) -> Result<Value> {
    let url = format!("http://{addr}/api/v1/status");
    let body = tokio::time::timeout(TIMEOUT, get(addr))
        .await
        .map_err(|_| anyhow!("no answer from {url} within {TIMEOUT:?}"))?
        .with_context(|| format!("no answer from {url} (is `lookout run` serving there?)"))?;
    let (status, body) = body;
    if status != 200 {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        bail!(
            "{url} answered {status}: {} (a daemon older than this lookout serves no status)",
            escape(text.trim())
        );
    }
    serde_json::from_slice(&body).with_context(|| format!("{url}: the answer is not JSON"))
}

/// One HTTP/1.1 GET of [`STATUS_PATH`]: the status code and the body.
async fn get(addr: &str) -> Result<(u16, bytes::Bytes)> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    let driving = tokio::spawn(connection);
    let request = hyper::Request::get(STATUS_PATH)
        .header(hyper::header::HOST, addr)
        .header(
            hyper::header::USER_AGENT,
            concat!("lookout/", env!("CARGO_PKG_VERSION")),
        )
        .header(hyper::header::ACCEPT, "application/json")
        .body(Empty::<bytes::Bytes>::new())?;
    let result = async {
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| anyhow!("reading the answer: {e}"))?
            .to_bytes();
        Ok((status, body))
    }
    .await;
    driving.abort();
    result
}

/// Prints `conditions` (the API's, newest first) as a table `AGE LEVEL
/// TARGET WATCHER/KIND KEY MESSAGE` with a closing count, or with `json`
/// as one JSON object per line as the API gave it.
///
/// # Errors
/// Writing to `out` failed.
pub(crate) fn print(
    status: &Value,
    conditions: &[Value],
    json: bool,
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    if json {
        for condition in conditions {
            writeln!(out, "{}", json_c1(&condition.to_string()))?;
        }
        return Ok(());
    }
    let text = |c: &Value, key: &str| match &c[key] {
        Value::String(s) => escape(s),
        Value::Null => "-".to_owned(),
        other => escape(&other.to_string()),
    };
    let rows: Vec<[String; 6]> = conditions
        .iter()
        .map(|c| {
            [
                c["age_s"].as_u64().map_or_else(|| "-".to_owned(), age),
                text(c, "level"),
                text(c, "target"),
                format!("{}/{}", text(c, "watcher"), text(c, "kind")),
                text(c, "key"),
                c["message"].as_str().map_or_else(String::new, clip),
            ]
        })
        .collect();
    let head = ["AGE", "LEVEL", "TARGET", "WATCHER/KIND", "KEY", "MESSAGE"].map(str::to_owned);
    super::write_table(out, &head, &rows, [8, 5, 40, 48, 40, usize::MAX])?;
    let summary = &status["summary"];
    let count = |key: &str| summary[key].as_u64().unwrap_or(0);
    writeln!(
        out,
        "{} active conditions; {} targets, {} down, {} quarantined watchers",
        conditions.len(),
        count("targets"),
        count("down"),
        count("quarantined"),
    )
}

/// `age_s` seconds as the largest whole unit: `42s`, `5m`, `3h`, `2d`.
fn age(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_escapes_what_daemons_and_watchers_said() {
        let status = serde_json::json!({
            "summary": {"targets": 2, "down": 1, "quarantined": 0},
        });
        let conditions = [serde_json::json!({
            "fingerprint": "0123456789abcdef", "watcher": "stream-lag",
            "kind": "over-max-lag", "key": "jobs\u{1b}[2J", "level": "warn",
            "message": "lag 12\nforged line", "target": "orders",
            "instance": "10.0.0.7:6379", "age_s": 4000, "runbook_url": null,
        })];
        let mut out = Vec::new();
        print(&status, &conditions, false, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].starts_with("AGE  LEVEL  TARGET  WATCHER/KIND"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("1h   warn   orders  stream-lag/over-max-lag"),
            "{text}"
        );
        assert!(lines[1].contains(r"jobs\u{1b}[2J") && lines[1].ends_with(r"lag 12\nforged line"));
        assert_eq!(
            lines[2],
            "1 active conditions; 2 targets, 1 down, 0 quarantined watchers"
        );
        let mut out = Vec::new();
        print(&status, &conditions, true, &mut out).unwrap();
        let line: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(line, conditions[0]);
    }

    #[test]
    fn ages_and_addresses() {
        assert_eq!(
            [0, 59, 60, 3599, 3600, 86_400].map(age),
            ["0s", "59s", "1m", "59m", "1h", "1d"]
        );
        assert_eq!(
            dialable("0.0.0.0:9121".parse().unwrap()),
            "127.0.0.1:9121".parse().unwrap()
        );
        assert_eq!(
            dialable("[::]:9".parse().unwrap()),
            "[::1]:9".parse().unwrap()
        );
    }
}
