//! The sender against a real Alertmanager (when one is installed: `make
//! alertmanager`) and a webhook receiver: a condition put on the board
//! fires and, resolved, resolves; a restarted Alertmanager with empty
//! storage shows it again within `resend_s`; one that does not answer
//! for a while still gets the resolution. Times from the board to the
//! webhook are printed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use super::settings::AlertmanagerFile;
use super::*;
use crate::checks::Origin;

// The integration tests' harness, shared.
#[allow(unreachable_pub, dead_code)]
#[path = "../../../../tests/integration/alertmanager/harness.rs"]
mod harness;

use harness::{Alertmanager, Webhook};

const WAIT: Duration = Duration::from_secs(60);

fn alert(name: &str, key: &str) -> Alert {
    Alert {
        fingerprint: format!("{name}/{key}"),
        labels: BTreeMap::from([
            ("alertname".to_owned(), name.to_owned()),
            ("condition".to_owned(), key.to_owned()),
            ("severity".to_owned(), "warning".to_owned()),
            ("service".to_owned(), "redis".to_owned()),
        ]),
        summary: format!("{key} is behind"),
        description: format!("stream-lag: over-max-lag {key}"),
        runbook_url: Some("https://runbooks.example/lag".to_owned()),
        starts_at: SystemTime::now(),
        ends_at: None,
    }
}

/// The sender for `urls` with `extra` settings, on a runtime of its own.
fn start(
    urls: &[String],
    extra: &str,
    board: &Arc<Board>,
) -> (tokio::runtime::Runtime, CancellationToken) {
    let urls: Vec<String> = urls.iter().map(|u| format!("'{u}'")).collect();
    let text = format!("urls = [{}]\n{extra}", urls.join(", "));
    let file: AlertmanagerFile = toml::from_str(&text).unwrap();
    let settings = file.resolve(&Origin::default()).unwrap().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let stop = CancellationToken::new();
    let task = sender(settings, "redis".to_owned(), board.clone(), stop.clone()).unwrap();
    rt.spawn(task);
    (rt, stop)
}

fn installed() -> bool {
    let found = harness::binary().is_some();
    if !found {
        eprintln!("skipped: no alertmanager binary (make alertmanager installs it)");
    }
    found
}

fn resolved(mut a: Alert) -> Alert {
    a.ends_at = Some(SystemTime::now());
    a
}

#[test]
fn fires_and_resolves_through_alertmanager() {
    if !installed() {
        return;
    }
    let hook = Webhook::start();
    let am = Alertmanager::start(&hook);
    let board = Board::new();
    let (_rt, stop) = start(
        &[am.url()],
        "resend_s = 30\nexternal_url = 'http://lookout.example/'",
        &board,
    );
    let lag = alert("StreamLagOverMaxLag", "jobs/workers");
    let fired = Instant::now();
    board.put(lag.clone());
    let start = Instant::now();
    while !am
        .get("/api/v2/alerts")
        .is_some_and(|(_, body)| body.contains("StreamLagOverMaxLag"))
    {
        assert!(
            start.elapsed() < WAIT,
            "Alertmanager never listed the alert"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let listed = Instant::now();
    let firing = hook.wait(fired, "StreamLagOverMaxLag", None, "firing", WAIT);
    let resolving = Instant::now();
    board.put(resolved(lag));
    let done = hook.wait(resolving, "StreamLagOverMaxLag", None, "resolved", WAIT);
    eprintln!(
        "board to Alertmanager's API: {:?}; board to firing webhook: {:?}; board to resolved \
         webhook: {:?} (group_wait and group_interval 1 s)",
        listed - fired,
        firing - fired,
        done - resolving
    );
    let first = hook
        .notifications()
        .into_iter()
        .find(|n| n.body["status"] == "firing")
        .unwrap();
    let sent = &first.body["alerts"][0];
    assert_eq!(sent["labels"]["condition"], "jobs/workers");
    assert_eq!(sent["annotations"]["summary"], "jobs/workers is behind");
    assert_eq!(
        sent["annotations"]["runbook_url"],
        "https://runbooks.example/lag"
    );
    assert_eq!(sent["generatorURL"], "http://lookout.example/");
    // Delivered to the only Alertmanager: off the board.
    let start = Instant::now();
    while !board.snapshot().is_empty() {
        assert!(start.elapsed() < WAIT, "the resolution stays on the board");
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.cancel();
}

#[test]
fn a_restarted_alertmanager_gets_the_alert_again_within_resend_s() {
    if !installed() {
        return;
    }
    let hook = Webhook::start();
    let am = Alertmanager::start(&hook);
    let port = am.port;
    let board = Board::new();
    let (_rt, stop) = start(&[am.url()], "resend_s = 2\nwatchdog = true", &board);
    board.put(alert("ReplicaLinkDown", "link"));
    let t0 = Instant::now();
    hook.wait(t0, "ReplicaLinkDown", None, "firing", WAIT);
    hook.wait(t0, WATCHDOG, Some(("service", "redis")), "firing", WAIT);
    am.kill();
    let restarted = Instant::now();
    let _am = Alertmanager::start_on(port, &hook);
    let again = hook.wait(restarted, "ReplicaLinkDown", None, "firing", WAIT);
    hook.wait(restarted, WATCHDOG, None, "firing", WAIT);
    eprintln!(
        "restarted Alertmanager (empty storage) to firing webhook again: {:?} (resend_s = 2)",
        again - restarted
    );
    stop.cancel();
}

#[test]
fn a_resolution_waits_for_an_alertmanager_that_does_not_answer() {
    if !installed() {
        return;
    }
    let hook = Webhook::start();
    let am = Alertmanager::start(&hook);
    let board = Board::new();
    let (_rt, stop) = start(&[am.url()], "resend_s = 2\ntimeout_s = 0.5", &board);
    let down = alert("TargetUnreachable", "cache-1");
    let t0 = Instant::now();
    board.put(down.clone());
    hook.wait(t0, "TargetUnreachable", None, "firing", WAIT);
    am.pause();
    let paused = Instant::now();
    board.put(resolved(down));
    // Several sends time out and back off meanwhile.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(board.snapshot().len(), 1, "the resolution is still pending");
    assert!(
        hook.notifications()
            .iter()
            .all(|n| n.at < paused || n.body["status"] != "resolved"),
        "resolved while Alertmanager was frozen"
    );
    let resumed = Instant::now();
    am.resume();
    let done = hook.wait(resumed, "TargetUnreachable", None, "resolved", WAIT);
    eprintln!(
        "Alertmanager answering again to resolved webhook: {:?}",
        done - resumed
    );
    let start = Instant::now();
    while !board.snapshot().is_empty() {
        assert!(start.elapsed() < WAIT, "the resolution stays on the board");
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.cancel();
}

#[test]
fn an_alert_alertmanager_refuses_is_not_retried() {
    if !installed() {
        return;
    }
    let hook = Webhook::start();
    let am = Alertmanager::start(&hook);
    let board = Board::new();
    let (_rt, stop) = start(&[am.url()], "resend_s = 30", &board);
    let mut bad = alert("Unreadable", "k");
    bad.labels.insert("not-a-label".to_owned(), "x".to_owned());
    board.put(bad.clone());
    let good = alert("Readable", "k");
    let t0 = Instant::now();
    board.put(good);
    // The 400 for the bad one does not hold the good one back.
    hook.wait(t0, "Readable", None, "firing", WAIT);
    // Its resolution is refused too, and not retried: off the board.
    board.put(resolved(bad));
    let start = Instant::now();
    while board.snapshot().len() != 1 {
        assert!(start.elapsed() < WAIT, "a refused resolution is retried");
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.cancel();
}

#[test]
fn wire_format_has_the_api_v2_fields() {
    let a = alert("X", "k");
    let ends = SystemTime::UNIX_EPOCH + Duration::from_secs(60);
    let v = wire(&a, ends, None);
    assert_eq!(v["endsAt"], "1970-01-01T00:01:00.000Z");
    assert!(v.get("generatorURL").is_none());
    assert_eq!(v["labels"]["alertname"], "X");
    let r = Alert {
        ends_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1)),
        ..a
    };
    assert_eq!(
        wire(&r, ends, Some("http://g/"))["endsAt"],
        "1970-01-01T00:00:01.000Z"
    );
}
