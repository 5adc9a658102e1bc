//! Alerts through a real Alertmanager (Debian package
//! prometheus-alertmanager, `make alertmanager`) to a webhook receiver
//! served by the test: a consumer group far behind fires and, drained,
//! resolves; a killed target fires and, restarted, resolves; the daemon's
//! watchdog alert arrives, and arrives again within `resend_s` from an
//! Alertmanager restarted with empty storage; `lookout config` shows the `[alertmanager]` table without a
//! secret and names a bad key. The sender's own tests (firing, resolving,
//! a resolution kept while Alertmanager does not answer) are in
//! host/src/alerts/alertmanager/tests.rs, on this harness.

// Shared with the sender's own tests in the host crate.
#[allow(dead_code)]
mod harness;

use std::path::Path;
use std::time::{Duration, Instant};

use harness::{Alertmanager, Webhook};

use crate::support::*;

const WAIT: Duration = Duration::from_secs(60);

/// The daemon watching `watched`, publishing to it too, sending to `am`
/// with `extra` keys of `[alertmanager]`.
fn daemon(tmp: &Path, watched: &Redis, am: &Alertmanager, extra: &str) -> Lookout {
    let config = config_file(
        tmp,
        &format!(
            "[[targets]]\nurl = '{}'\nname = 'cache-1'\n\
             [alertmanager]\nurls = ['{}']\n{extra}\n",
            watched.url(),
            am.url()
        ),
    );
    let plugins = plugins_with(tmp, &[], &["ticker"]);
    let lookout = run_config(tmp, &plugins, &config, &[]);
    lookout.wait_started();
    lookout
}

/// `watchdog = true`: the always-firing alert reaches the receiver with
/// the service label; Alertmanager killed and started again with empty
/// storage on the same port shows it again within `resend_s`.
#[test]
fn the_watchdog_arrives_and_arrives_again_after_alertmanager_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let watched = Redis::start(&[]);
    let hook = Webhook::start();
    let am = Alertmanager::start(&hook);
    let port = am.port;
    let started = Instant::now();
    let mut lookout = daemon(tmp.path(), &watched, &am, "resend_s = 2\nwatchdog = true");
    let first = hook.wait(
        started,
        "Watchdog",
        Some(("service", "redis")),
        "firing",
        WAIT,
    );
    eprintln!(
        "daemon start to firing Watchdog webhook: {:?}",
        first - started
    );
    am.kill();
    let restarted = Instant::now();
    let _am = Alertmanager::start_on(port, &hook);
    let again = hook.wait(restarted, "Watchdog", None, "firing", WAIT);
    eprintln!(
        "Alertmanager restarted with empty storage to firing Watchdog webhook: {:?} \
         (resend_s = 2)",
        again - restarted
    );
    lookout.terminate();
}

/// A consumer group 500 entries behind (`max_lag` 100) fires
/// `stream-lag/over-max-lag` for `jobs/workers` at the webhook; drained,
/// it resolves there. The times from the backlog to the firing webhook and
/// from the drain to the resolved one are printed.
#[test]
fn a_group_behind_fires_and_drained_resolves() {
    let tmp = tempfile::tempdir().unwrap();
    let watched = Redis::start(&[]);
    let bus = Redis::start(&[]);
    let hook = Webhook::start();
    let am = Alertmanager::start(&hook);
    let mut conn = watched.conn();
    let _: () = redis::cmd("XGROUP")
        .arg(&["CREATE", "jobs", "workers", "$", "MKSTREAM"][..])
        .query(&mut conn)
        .unwrap();
    let config = config_file(
        tmp.path(),
        &format!(
            "[[targets]]\nurl = '{}'\nname = 'queue'\n\
             [publish]\nurl = '{}'\n\
             [watchers.stream-lag]\nstreams = 'jobs'\nmax_lag = 100\n\
             [alertmanager]\nurls = ['{}']\nresend_s = 2\n",
            watched.url(),
            bus.url(),
            am.url()
        ),
    );
    let plugins = plugins_with(tmp.path(), &["stream-lag"], &[]);
    let mut lookout = run_config(tmp.path(), &plugins, &config, &[]);
    lookout.wait_started();
    let name = "stream-lag/over-max-lag";
    let behind = Instant::now();
    let mut pipe = redis::pipe();
    for i in 0..500 {
        pipe.cmd("XADD")
            .arg(&["jobs", "*", "n"][..])
            .arg(i)
            .ignore();
    }
    let _: () = pipe.query(&mut conn).unwrap();
    let fired = hook.wait(
        behind,
        name,
        Some(("condition", "jobs/workers")),
        "firing",
        WAIT,
    );
    let drained = Instant::now();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg(
            &[
                "GROUP", "workers", "w1", "COUNT", "1000", "STREAMS", "jobs", ">",
            ][..],
        )
        .query(&mut conn)
        .unwrap();
    let resolved = hook.wait(
        drained,
        name,
        Some(("condition", "jobs/workers")),
        "resolved",
        WAIT,
    );
    eprintln!(
        "group 500 behind to firing webhook: {:?}; drained to resolved webhook: {:?} \
         (poll 0.2 s, group_wait and group_interval 1 s)",
        fired - behind,
        resolved - drained
    );
    lookout.terminate();
}

/// A watched Redis killed fires `lookout/target-unreachable` (labels
/// `target`, `severity`, the target's labels) at the webhook; started
/// again, the alert resolves there. The times from the kill to the firing
/// webhook and from the restart to the resolved one are printed.
#[test]
fn a_killed_target_fires_and_restarted_resolves() {
    let tmp = tempfile::tempdir().unwrap();
    let mut watched = Redis::start(&[]);
    let bus = Redis::start(&[]);
    let hook = Webhook::start();
    let am = Alertmanager::start(&hook);
    let config = config_file(
        tmp.path(),
        &format!(
            "[[targets]]\nurl = '{}'\nname = 'cache-1'\nlabels = {{ zone = 'eu-1' }}\n\
             [publish]\nurl = '{}'\n\
             [alertmanager]\nurls = ['{}']\nresend_s = 2\n",
            watched.url(),
            bus.url(),
            am.url()
        ),
    );
    let plugins = plugins_with(tmp.path(), &[], &["ticker"]);
    let mut lookout = run_config(tmp.path(), &plugins, &config, &[]);
    lookout.wait_started();
    let name = "lookout/target-unreachable";
    let killed = Instant::now();
    watched.kill();
    let fired = hook.wait(killed, name, Some(("target", "cache-1")), "firing", WAIT);
    let firing = hook
        .notifications()
        .into_iter()
        .find(|n| n.at == fired)
        .unwrap();
    let alert = firing.body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == name)
        .unwrap()
        .clone();
    assert_eq!(alert["labels"]["zone"], "eu-1", "{alert}");
    assert!(alert["labels"]["severity"].is_string(), "{alert}");
    assert!(
        alert["annotations"]["summary"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{alert}"
    );
    let restarted = Instant::now();
    watched.restart();
    let resolved = hook.wait(
        restarted,
        name,
        Some(("target", "cache-1")),
        "resolved",
        WAIT,
    );
    eprintln!(
        "target killed to firing webhook: {:?} (poll 0.2 s, for_s 0.4 s, group_wait 1 s); \
         target back to resolved webhook: {:?} (reconnect backoff, group_interval 1 s)",
        fired - killed,
        resolved - restarted
    );
    lookout.terminate();
}

/// `lookout config` shows every key of the table, the credential files by
/// their paths and never their contents; a value out of range names its
/// key.
#[test]
fn config_shows_the_table_and_names_a_bad_key() {
    let tmp = tempfile::tempdir().unwrap();
    let token = tmp.path().join("am.token");
    std::fs::write(&token, "am-token-secret\n").unwrap();
    let file = config_file(
        tmp.path(),
        &format!(
            "[alertmanager]\nurls = ['http://127.0.0.1:1', 'http://127.0.0.1:2/']\n\
             resend_s = 30\nbearer_token_file = '{}'\nwatchdog = true\n\
             external_url = 'http://lookout.example/'\n",
            token.display()
        ),
    );
    let mut cmd = lookout_cmd(tmp.path());
    cmd.args(["config", "--json", "--config"]).arg(&file);
    let (status, out, err) = run_to_end(cmd, Duration::from_secs(30));
    assert!(status.success(), "{err}");
    assert!(!out.contains("am-token-secret") && !err.contains("am-token-secret"));
    for key in [
        "alertmanager.urls",
        "alertmanager.resend_s",
        "alertmanager.timeout_s",
        "alertmanager.external_url",
        "alertmanager.bearer_token_file",
        "alertmanager.watchdog",
    ] {
        assert!(
            out.contains(&format!("\"{key}\"")),
            "{key} not shown: {out}"
        );
    }
    assert!(out.contains("http://127.0.0.1:2/"), "{out}");

    std::fs::write(
        &file,
        "[alertmanager]\nurls = ['http://127.0.0.1:1']\nresend_s = 0\n",
    )
    .unwrap();
    let mut cmd = lookout_cmd(tmp.path());
    cmd.args(["config", "--config"]).arg(&file);
    let (status, _, err) = run_to_end(cmd, Duration::from_secs(30));
    assert!(!status.success());
    assert!(err.contains("alertmanager.resend_s"), "{err}");
}
