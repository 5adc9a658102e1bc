//! The model's ordering, paging and escaping, and the page's sections.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::history::{MINUTES, Minutes};
use super::*;

fn target(key: &str, up: Option<bool>, quarantined: bool) -> TargetSeen {
    TargetSeen {
        key: key.to_owned(),
        instance: format!("{key}:6379"),
        labels: BTreeMap::from([("role".to_owned(), "master".to_owned())]),
        up,
        last_poll: up.map(|_| SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        lateness_ms: 3,
        watchers: vec![("stream-lag".to_owned(), u64::from(quarantined), quarantined)],
    }
}

fn alert(target: &str, watcher: &str, kind: &str, age_s: u64, now: SystemTime) -> Alert {
    let labels = BTreeMap::from([
        ("alertname".to_owned(), format!("{watcher}/{kind}")),
        ("condition".to_owned(), "jobs/workers".to_owned()),
        ("instance".to_owned(), format!("{target}:6379")),
        ("target".to_owned(), target.to_owned()),
        ("severity".to_owned(), "warning".to_owned()),
        ("service".to_owned(), "redis".to_owned()),
        ("role".to_owned(), "master".to_owned()),
    ]);
    Alert {
        fingerprint: format!("{target}{kind}{age_s}"),
        labels,
        summary: "<b>\"lag\" & 'more'".to_owned(),
        description: String::new(),
        runbook_url: None,
        starts_at: now - Duration::from_secs(age_s),
        ends_at: None,
    }
}

fn inputs(targets: Vec<TargetSeen>, alerts: Vec<Alert>) -> Inputs {
    Inputs {
        targets,
        alerts,
        publisher: PublisherSeen {
            breaker: "closed",
            outbox: 0,
            dropped: 0,
        },
        peers: Vec::new(),
        minutes: Minutes {
            events: std::array::from_fn(|_| vec![0; MINUTES]),
            lateness_ms: vec![0; MINUTES],
        },
        spool_bytes: 0,
    }
}

fn bus() -> BusInfo {
    BusInfo {
        instance: "127.0.0.1:6380".to_owned(),
        outbox_max: 10_000,
        spool_dir: None,
    }
}

fn report(i: Inputs, paging: Paging) -> Report {
    let now = SystemTime::now();
    build(i, &bus(), now, now, paging)
}

#[test]
fn troubled_targets_come_first_then_by_key() {
    let now = SystemTime::now();
    let targets = vec![
        target("a", Some(true), false),
        target("b", Some(false), false),
        target("c", Some(true), true),
        target("d", None, false),
        target("e", Some(true), false),
        target("f", Some(true), false),
    ];
    let alerts = vec![
        alert("e", "stream-lag", "over-max-lag", 10, now),
        alert("f", HOST_TARGET, kinds::CONFIGURATION_REFUSED, 20, now),
    ];
    let r = report(inputs(targets, alerts), Paging::parse(None));
    let order: Vec<(&str, &str)> = r
        .targets
        .iter()
        .map(|t| (t.key.as_str(), t.state))
        .collect();
    assert_eq!(
        order,
        [
            ("b", "down"),
            ("c", "up"),
            ("e", "up"),
            ("f", "refused"),
            ("a", "up"),
            ("d", "starting"),
        ]
    );
    assert_eq!(r.summary.targets, 6);
    assert_eq!(r.summary.down, 2);
    assert_eq!(r.summary.quarantined, 1);
    assert_eq!(r.summary.watched, 5);
    assert_eq!(r.summary.conditions, 2);
}

#[test]
fn conditions_come_newest_first_with_their_labels() {
    let now = SystemTime::now();
    let alerts = vec![
        alert("a", "stream-lag", "old", 300, now),
        alert("a", "stream-lag", "new", 5, now),
        Alert {
            ends_at: Some(now),
            ..alert("a", "stream-lag", "resolved", 1, now)
        },
    ];
    let r = report(inputs(vec![], alerts), Paging::parse(None));
    let kinds: Vec<&str> = r.conditions.iter().map(|c| c.kind.as_str()).collect();
    assert_eq!(kinds, ["new", "old"], "resolutions are not active");
    let c = &r.conditions[0];
    assert_eq!(
        (
            c.watcher.as_str(),
            c.key.as_str(),
            c.level,
            c.target.as_str()
        ),
        ("stream-lag", "jobs/workers", "warn", "a")
    );
    assert_eq!(c.instance, "a:6379");
    assert_eq!(
        c.labels,
        BTreeMap::from([("role".to_owned(), "master".to_owned())])
    );
    assert!((5..7).contains(&c.age_s), "{}", c.age_s);
}

#[test]
fn targets_are_paged() {
    let targets: Vec<TargetSeen> = (0..10_000)
        .map(|i| target(&format!("t{i:05}"), Some(i % 1000 != 7), false))
        .collect();
    let i = inputs(targets, vec![]);
    let r = report(i.clone(), Paging::parse(None));
    assert_eq!((r.page, r.pages, r.per_page), (1, 100, 100));
    assert_eq!(r.targets.len(), 100);
    // The ten down ones first.
    assert_eq!(r.targets[0].key, "t00007");
    assert_eq!(r.targets[9].key, "t09007");
    assert_eq!(r.targets[10].key, "t00000");
    let r = report(i.clone(), Paging::parse(Some("page=3&per_page=1000")));
    assert_eq!((r.page, r.pages, r.per_page), (3, 10, 1000));
    // 2,000 before it: the ten down ones, then t00000.. skipping t00007 and t01007.
    assert_eq!(r.targets[0].key, "t01992");
    let r = report(i.clone(), Paging::parse(Some("page=99999&per_page=5000")));
    assert_eq!((r.page, r.pages, r.per_page), (10, 10, 1000), "clamped");
    let r = report(i, Paging::parse(Some("page=x&per_page=0")));
    assert_eq!((r.page, r.per_page), (1, 1));
    let html = page::render(&report(
        inputs(
            (0..10_000)
                .map(|i| target(&format!("t{i:05}"), Some(true), false))
                .collect(),
            vec![],
        ),
        Paging::parse(None),
    ));
    assert!(html.len() < 200_000, "{} bytes", html.len());
    assert!(html.contains("<a href=\"?page=2\">2</a>"), "pages linked");
    eprintln!("page of 10,000 targets, all up: {} bytes", html.len());
    // Every target down with a condition: the page lists the newest 200.
    let now = SystemTime::now();
    let worst = inputs(
        (0..10_000)
            .map(|i| target(&format!("t{i:05}"), Some(false), false))
            .collect(),
        (0..10_000)
            .map(|i| alert(&format!("t{i:05}"), "w", "k", i, now))
            .collect(),
    );
    let r = report(worst, Paging::parse(None));
    let html = page::render(&r);
    assert!(html.len() < 200_000, "{} bytes", html.len());
    eprintln!(
        "page of 10,000 targets, all down with a condition: {} bytes (JSON: {} bytes)",
        html.len(),
        serde_json::to_string(&r).unwrap().len()
    );
}

#[test]
fn json_has_the_documented_shape() {
    let now = SystemTime::now();
    let r = report(
        inputs(
            vec![target("a", Some(true), false)],
            vec![alert("a", "w", "k", 1, now)],
        ),
        Paging::parse(None),
    );
    let v = serde_json::to_value(&r).unwrap();
    for key in [
        "version",
        "started_at",
        "now",
        "summary",
        "page",
        "pages",
        "per_page",
        "targets",
        "conditions",
        "bus",
        "alertmanager",
        "events_per_minute",
        "lateness_per_minute_ms",
    ] {
        assert!(v.get(key).is_some(), "{key} missing: {v}");
    }
    assert_eq!(v["targets"][0]["watchers"][0]["name"], "stream-lag");
    assert_eq!(v["conditions"][0]["runbook_url"], serde_json::Value::Null);
    assert_eq!(v["bus"]["breaker"], "closed");
    assert_eq!(v["events_per_minute"]["minutes"], 60);
    assert_eq!(v["events_per_minute"]["warn"].as_array().unwrap().len(), 60);
    assert_eq!(v["alertmanager"], serde_json::json!([]));
}

#[test]
fn the_page_escapes_what_servers_and_watchers_say() {
    let now = SystemTime::now();
    let hostile = "<script>alert(1)</script>";
    let mut t = target(hostile, Some(false), false);
    t.labels.insert("x\"y".to_owned(), "<i>".to_owned());
    t.watchers[0].0 = "'w'".to_owned();
    let r = report(
        inputs(vec![t], vec![alert(hostile, "w", "k", 1, now)]),
        Paging::parse(None),
    );
    let html = page::render(&r);
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("<b>"), "{html}");
    assert!(!html.contains("<i>"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("&lt;b&gt;&quot;lag&quot; &amp; &#39;more&#39;"));
    assert!(html.contains("x&quot;y=&lt;i&gt;"));
    assert!(html.contains("&#39;w&#39;"));
}

#[test]
fn the_page_has_its_sections_and_refreshes() {
    let now = SystemTime::now();
    let mut i = inputs(
        vec![target("a", Some(true), false)],
        vec![alert("a", "w", "k", 1, now)],
    );
    i.minutes.events[2][59] = 5;
    i.minutes.lateness_ms[10] = 250;
    i.peers = vec![PeerState {
        url: "http://127.0.0.1:9093/".to_owned(),
        last_sent: None,
        down: true,
        pending_resolutions: 2,
    }];
    let r = report(i, Paging::parse(None));
    assert_eq!(r.alertmanager[0].state, "down");
    let html = page::render(&r);
    for id in [
        "summary",
        "conditions",
        "targets",
        "bus",
        "alertmanager",
        "events-chart",
        "lateness-chart",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "#{id} missing");
    }
    assert!(html.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
    assert!(html.contains("<svg"));
    assert!(html.contains("<title>5 warn</title>"));
    assert!(html.contains("<title>250 ms</title>"));
    assert!(!html.contains("<script"));
    assert!(!html.contains(" src="), "no external asset");
}
