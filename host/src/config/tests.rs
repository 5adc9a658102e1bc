//! Unit tests of the layering: defaults, file, environment and flags,
//! every key's checks through the whole resolve, and random values.

use super::*;
use crate::targets::Source;

fn parse(text: &str) -> Result<Settings> {
    let file: FileConfig = toml::from_str(text)?;
    Settings::resolve(file, Some(Path::new("lookout.toml")), Overrides::default())
}

#[test]
fn defaults_match_the_shell_sidecar() {
    let s = parse("").unwrap();
    assert_eq!(s.redis_url, DEFAULT_REDIS_URL);
    assert_eq!(s.poll_interval, Duration::from_secs(5));
    assert_eq!(s.publish.channel_prefix, "logs.redis");
    assert_eq!(s.publish.stream_key, "logs:stream:redis");
    assert_eq!(s.publish.stream_maxlen, 10_000);
    assert_eq!(s.publish.url, s.redis_url);
    assert_eq!(s.slowlog_count, 128);
    assert_eq!(s.service, "redis");
}

#[test]
fn unknown_key_is_named() {
    let err = toml::from_str::<FileConfig>("pol_interval = 3").unwrap_err();
    assert!(err.to_string().contains("pol_interval"), "{err}");
    let err = toml::from_str::<FileConfig>("[publish]\nstream = 'x'").unwrap_err();
    assert!(err.to_string().contains("stream"), "{err}");
}

#[test]
fn metrics_addr_is_checked_and_the_flag_wins() {
    let file: FileConfig = toml::from_str("metrics_addr = '127.0.0.1:9121'").unwrap();
    let s = Settings::resolve(file, None, Overrides::default()).unwrap();
    assert_eq!(s.metrics_addr, Some("127.0.0.1:9121".parse().unwrap()));
    let file: FileConfig = toml::from_str("metrics_addr = 'localhost'").unwrap();
    let err = format!(
        "{:#}",
        Settings::resolve(file, Some(Path::new("l.toml")), Overrides::default()).unwrap_err()
    );
    assert!(
        err.contains("`metrics_addr` in l.toml") && err.contains("IP:PORT"),
        "{err}"
    );
    let o = Overrides {
        metrics_addr: Some("[::1]:9".to_owned()),
        ..Overrides::default()
    };
    let s = Settings::resolve(FileConfig::default(), None, o).unwrap();
    assert_eq!(s.metrics_addr, Some("[::1]:9".parse().unwrap()));
    assert_eq!(
        Settings::resolve(FileConfig::default(), None, Overrides::default())
            .unwrap()
            .metrics_addr,
        None
    );
}

#[test]
fn overrides_win_over_file() {
    let file: FileConfig =
        toml::from_str("poll_interval = 9\nredis_url = 'redis://10.0.0.1:1'").unwrap();
    let o = Overrides {
        poll_interval: Some(0.25),
        ..Overrides::default()
    };
    let s = Settings::resolve(file, None, o).unwrap();
    assert_eq!(s.poll_interval, Duration::from_millis(250));
    assert_eq!(s.redis_url, "redis://10.0.0.1:1");
}

#[test]
fn bad_values_are_rejected_with_the_key() {
    let err = parse("poll_interval = -1").unwrap_err();
    assert!(format!("{err:#}").contains("poll_interval"), "{err:#}");
    let err = parse("redis_url = 'http://x'").unwrap_err();
    assert!(format!("{err:#}").contains("scheme `http`"), "{err:#}");
    let err = parse("[publish]\nurl = 'redis://:hunter2@[bad'").unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("publish.url"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn every_integer_key_is_range_checked_by_name() {
    use crate::delivery::settings::{FAILURES, MAX_ENVELOPES, MAX_MIB, STREAM_MAXLEN};
    for IntKey { key, min, max, .. } in [
        SLOWLOG_COUNT,
        MAX_ENVELOPES,
        MAX_MIB,
        FAILURES,
        STREAM_MAXLEN,
        MAX_CALLS_IN_FLIGHT,
    ] {
        let (table, leaf) = key.split_once('.').map_or(("", key), |(t, l)| (t, l));
        for bad in [min - 1, max + 1, i64::MIN, i64::MAX] {
            let text = if table.is_empty() {
                format!("{leaf} = {bad}")
            } else {
                format!("[{table}]\n{leaf} = {bad}")
            };
            let err = format!("{:#}", parse(&text).unwrap_err());
            assert!(
                err.contains(key) && err.contains(&format!("from {min} to {max}")),
                "{text}: {err}"
            );
        }
    }
    for key in ["connect_timeout", "response_timeout", "shutdown_grace"] {
        let err = format!("{:#}", parse(&format!("{key} = 1e300")).unwrap_err());
        assert!(err.contains(key) && err.contains("below 86400"), "{err}");
    }
    let err = format!("{:#}", parse("[breaker]\nrecovery_s = nan").unwrap_err());
    assert!(err.contains("breaker.recovery_s"), "{err}");
    let o = Overrides {
        poll_interval: Some(f64::INFINITY),
        ..Overrides::default()
    };
    let err = format!(
        "{:#}",
        Settings::resolve(FileConfig::default(), None, o).unwrap_err()
    );
    assert!(
        err.contains("POLL_INTERVAL") && err.contains("below 86400"),
        "{err}"
    );
}

#[test]
fn discover_entries_are_checked() {
    let s = parse(
        "[publish]\nurl = 'redis://bus:6379'\n\
         [[discover]]\ncluster = 'redis://:pw@10.0.0.1:7000'\nlabels = { c = 'a' }\n\
         [[discover]]\nsentinel = 'redis://10.0.0.9:26379'\nmaster = 'm'\nrefresh_s = 5",
    )
    .unwrap();
    assert!(s.targets.is_empty());
    assert_eq!(s.redis_url, "redis://bus:6379");
    assert_eq!(s.discover.len(), 2);
    assert_eq!(s.discover[0].source, Source::Cluster);
    assert_eq!(s.discover[0].refresh, Duration::from_secs(30));
    assert_eq!(s.discover[0].describe(), "cluster 10.0.0.1:7000");
    assert_eq!(s.discover[1].refresh, Duration::from_secs(5));
    assert_eq!(s.discover[1].describe(), "sentinel 10.0.0.9:26379 master m");
    let cases = [
        ("[[discover]]\ncluster = 'redis://a:1'", "set [publish] url"),
        (
            "[publish]\nurl = 'redis://b:1'\n[[discover]]\nsentinel = 'redis://a:1'",
            "needs `master`",
        ),
        (
            "[publish]\nurl = 'redis://b:1'\n[[discover]]\ncluster = 'redis://a:1'\nmaster = 'm'",
            "`master` is for Sentinel",
        ),
        (
            "[publish]\nurl = 'redis://b:1'\n[[discover]]\nrefresh_s = 3",
            "needs `cluster",
        ),
        (
            "[publish]\nurl = 'redis://b:1'\n[[discover]]\ncluster = 'http://a:1'",
            "discover[0].cluster",
        ),
        (
            "[publish]\nurl = 'redis://b:1'\n[[discover]]\ncluster = 'redis://a:1'\nrefresh_s = 0",
            "discover[0].refresh_s",
        ),
        (
            "[publish]\nurl = 'redis://b:1'\n[[discover]]\ncluster = 'redis://a:1'\n\
             [[discover]]\ncluster = 'redis://a:1'",
            "already discovered",
        ),
        ("shard = '2/2'", "expected I/N"),
        ("max_calls_in_flight = 0", "max_calls_in_flight"),
    ];
    for (text, want) in cases {
        let err = format!("{:#}", parse(text).unwrap_err());
        assert!(err.contains(want), "{text}: {err}");
    }
}

#[test]
fn credentials_tls_and_allow_are_checked_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "s3cret\n").unwrap();
    let pw = pw.display();
    let s = parse(&format!(
        "[[targets]]\nurl = 'redis://10.0.0.1:6379'\nusername = 'ops'\npassword_file = '{pw}'\n\
         [publish]\nurl = 'redis://bus:6379'\npassword_file = '{pw}'\n\
         [[discover]]\nsentinel = 'redis://10.0.0.9:26379'\nmaster = 'm'\n\
         node_username = 'ops'\nnode_password_file = '{pw}'\n\
         allow = ['10.0.0.0/8', '*.redis.internal']\nmax_nodes = 5"
    ))
    .unwrap();
    assert_eq!(s.targets[0].auth.username.as_deref(), Some("ops"));
    assert!(s.publish.auth.password_file.is_some());
    let d = &s.discover[0];
    assert_eq!(d.max_nodes, 5);
    assert!(d.auth.is_empty() && !d.node_auth.is_empty());
    assert!(d.allow.host("a.redis.internal") && !d.allow.host("192.168.1.1"));
    let defaults = parse(
        "[publish]\nurl = 'redis://b:1'\n[[discover]]\ncluster = 'redis://n1.c.example.com:7000'",
    )
    .unwrap();
    assert_eq!(defaults.discover[0].max_nodes, 1000);
    assert!(defaults.discover[0].allow.host("n2.c.example.com"));
    assert!(!defaults.discover[0].allow.host("8.8.8.8"));
    let cases = [
        (
            "[[targets]]\nurl = 'redis://h:1'\ntls = { insecure = true }".to_owned(),
            "targets[0].tls",
        ),
        (
            "[publish]\nurl = 'redis://h:1'\ntls = { insecure = true }".to_owned(),
            "publish.tls",
        ),
        (
            "[publish]\nurl = 'redis://b:1'\n[[discover]]\ncluster = 'redis://a:1'\n\
             tls = { insecure = true }"
                .to_owned(),
            "discover[0].tls",
        ),
        (
            format!("[[targets]]\nurl = 'redis://:pw@h:1'\npassword_file = '{pw}'"),
            "targets[0].password_file",
        ),
        (
            "[[targets]]\nurl = 'redis://h:1'\npassword_file = '/nonexistent/pw'".to_owned(),
            "/nonexistent/pw",
        ),
        (
            format!(
                "[publish]\nurl = 'redis://b:1'\n[[discover]]\ncluster = 'redis://a:1'\n\
                 node_password_file = '{pw}'"
            ),
            "for the nodes a sentinel names",
        ),
        (
            "[publish]\nurl = 'redis://b:1'\n[[discover]]\ncluster = 'redis://a:1'\n\
             allow = ['10.0.0.0/33']"
                .to_owned(),
            "discover[0].allow",
        ),
        (
            "[publish]\nurl = 'redis://b:1'\n[[discover]]\ncluster = 'redis://a:1'\n\
             max_nodes = 0"
                .to_owned(),
            "discover[0].max_nodes",
        ),
    ];
    for (text, want) in cases {
        let err = format!("{:#}", parse(&text).unwrap_err());
        assert!(err.contains(want), "{text}: {err}");
        assert!(!err.contains("s3cret"), "{err}");
    }
    // The global [tls] applies to rediss:// URLs only and is no error
    // beside redis:// ones.
    parse("[tls]\ninsecure = true\n[[targets]]\nurl = 'redis://h:1'").unwrap();
}

#[test]
fn shard_from_file_or_flag() {
    assert_eq!(parse("").unwrap().shard, Shard::ALL);
    assert_eq!(
        parse("shard = '1/3'").unwrap().shard,
        Shard { index: 1, count: 3 }
    );
    let file: FileConfig = toml::from_str("shard = '1/3'").unwrap();
    let o = Overrides {
        shard: Some("0/2".to_owned()),
        ..Overrides::default()
    };
    let s = Settings::resolve(file, None, o).unwrap();
    assert_eq!(s.shard, Shard { index: 0, count: 2 });
    assert_eq!(s.max_calls_in_flight, 64);
}

mod random {
    use std::collections::BTreeMap;
    use std::time::Instant;

    use proptest::prelude::*;

    use super::super::*;
    use crate::checks::{MAX_SECONDS, MIN_SECONDS, parse_seconds};

    /// Every numeric key of `lookout.toml`, as `table.key`.
    const KEYS: [&str; 22] = [
        "poll_interval",
        "slowlog_count",
        "connect_timeout",
        "response_timeout",
        "shutdown_grace",
        "buffer.max_envelopes",
        "buffer.max_mib",
        "breaker.failures",
        "breaker.recovery_s",
        "publish.stream_maxlen",
        "limits.call_deadline_ms",
        "limits.memory_mib",
        "limits.max_events",
        "limits.max_msg_bytes",
        "limits.max_fields",
        "limits.max_field_bytes",
        "limits.max_wasm_mib",
        "limits.quarantine_after",
        "limits.every_polls",
        "limits.interval_s",
        "limits.watchers.w.memory_mib",
        "limits.watchers.w.interval_s",
    ];

    fn float(x: f64) -> String {
        if x.is_nan() {
            "nan".to_owned()
        } else if x.is_infinite() {
            if x > 0.0 { "inf" } else { "-inf" }.to_owned()
        } else {
            format!("{x:?}")
        }
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            (-3i64..200_000).prop_map(|n| n.to_string()),
            any::<f64>().prop_map(float),
            (-1.0f64..100_000.0).prop_map(float),
            Just("1e300".to_owned()),
            Just("17592186044416".to_owned()),
            "[a-z0-9]{0,4}".prop_map(|s| format!("'{s}'")),
            Just("true".to_owned()),
        ]
    }

    fn render(pairs: &[(usize, String)]) -> String {
        let mut tables: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
        for (i, v) in pairs {
            let key = KEYS[*i];
            let (table, leaf) = key.rsplit_once('.').unwrap_or(("", key));
            tables.entry(table).or_default().insert(leaf, v);
        }
        let mut text = String::new();
        for (table, keys) in tables {
            if !table.is_empty() {
                text.push_str(&format!("[{table}]\n"));
            }
            for (k, v) in keys {
                text.push_str(&format!("{k} = {v}\n"));
            }
        }
        text
    }

    fn sane(s: &Settings) {
        let now = Instant::now();
        let day = Duration::from_secs(86_400);
        for d in [
            s.poll_interval,
            s.connect_timeout,
            s.response_timeout,
            s.shutdown_grace,
            s.breaker.recovery,
        ] {
            assert!(d >= Duration::from_millis(1) && d < day, "{d:?}");
        }
        assert!(s.slowlog_count >= 1 && s.buffer.envelopes >= 1 && s.buffer.bytes >= 1);
        assert!(s.breaker.failures >= 1 && s.publish.stream_maxlen >= 1);
        for l in std::iter::once(&s.limits.defaults).chain(s.limits.watchers.values()) {
            assert!(now.checked_add(l.call_deadline).is_some());
            assert!(l.memory_bytes >= 1 << 20 && l.memory_bytes <= 4 << 30);
            assert!(l.max_wasm_bytes >= 1 << 20 && l.quarantine_after >= 1);
            if let Some(crate::sandbox::limits::Cadence::Interval(d)) = l.cadence {
                assert!(d > Duration::ZERO && now.checked_add(d).is_some());
            }
        }
    }

    proptest! {
        /// Random values for every numeric key, through the file parser
        /// and the flag/env override: an error naming a key, or a
        /// config whose every duration and size is usable; never a
        /// panic.
        #[test]
        fn random_values_give_an_error_or_a_valid_config(
            pairs in proptest::collection::vec((0..KEYS.len(), value()), 0..8),
            poll in proptest::option::of(any::<f64>()),
        ) {
            let text = render(&pairs);
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("lookout.toml");
            std::fs::write(&path, &text).unwrap();
            let o = Overrides { poll_interval: poll, ..Overrides::default() };
            match Settings::load(Some(&path), o) {
                Ok(s) => sane(&s),
                Err(e) => {
                    let e = format!("{e:#}");
                    prop_assert!(
                        e.contains("lookout.toml") || e.contains("POLL_INTERVAL"),
                        "{text}: {e}"
                    );
                }
            }
        }

        /// Any text given to a seconds flag or variable is refused or
        /// in range.
        #[test]
        fn seconds_flags_never_panic(text in "\\PC{0,12}", x in any::<f64>()) {
            for t in [text, float(x), format!("{x}")] {
                if let Ok(v) = parse_seconds(&t) {
                    prop_assert!((MIN_SECONDS..MAX_SECONDS).contains(&v));
                }
            }
        }
    }
}

/// The layer of each key: the environment or a flag over the file, the
/// file over the default; `[tls]` and `[limits]` count as the file where
/// a table inherits them; targets from the flags or the environment are
/// theirs whole, whatever the file's `[[targets]]` said.
#[test]
fn each_key_knows_its_layer() {
    use super::shown::{Layer, explain};
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "-----BEGIN EXAMPLE-----\n").unwrap();
    let path = dir.path().join("lookout.toml");
    std::fs::write(
        &path,
        format!(
            "poll_interval = 3\nservice = 'file'\n[tls]\nca_file = '{}'\n\
         [limits]\nmax_events = 7\n[limits.watchers.w]\nmax_fields = 3\n\
         [[targets]]\nurl = 'rediss://a:1'\nname = 'a'\n\
         [[targets]]\nurl = 'rediss://:pw@b:1'\ntls = {{ server_name = 'b' }}\n",
            ca.display()
        ),
    )
    .unwrap();
    let layers = |o: Overrides| -> BTreeMap<String, (serde_json::Value, Layer)> {
        explain(Some(&path), o)
            .unwrap()
            .into_iter()
            .map(|s| (s.key, (s.value, s.layer)))
            .collect()
    };
    let file = layers(Overrides::default());
    for (key, layer) in [
        ("poll_interval", Layer::File),
        ("slowlog_count", Layer::Default),
        ("targets[0].name", Layer::File),
        ("targets[1].name", Layer::Default),
        ("targets[0].tls.ca_file", Layer::File),
        ("targets[1].tls.server_name", Layer::File),
        ("targets[1].tls.insecure", Layer::Default),
        ("limits.watchers.w.max_events", Layer::File),
        ("limits.watchers.w.max_fields", Layer::File),
        ("limits.watchers.w.max_msg_bytes", Layer::Default),
    ] {
        assert_eq!(file[key].1, layer, "{key}");
    }
    assert_eq!(file["targets[1].url"].0, "rediss://:***@b:1");
    assert!(!file.contains_key("redis_url"));
    let o = Overrides {
        redis_urls: vec!["redis://c:1".to_owned(), "redis://d:1".to_owned()],
        poll_interval: Some(0.5),
        service: Some("flag".to_owned()),
        environment: ["redis_url", "poll_interval"].into(),
        ..Overrides::default()
    };
    let given = layers(o);
    for (key, layer) in [
        ("poll_interval", Layer::Environment),
        ("service", Layer::Flag),
        ("targets[0].url", Layer::Environment),
        ("targets[0].name", Layer::Default),
        ("targets[1].url", Layer::Environment),
    ] {
        assert_eq!(given[key].1, layer, "{key}");
    }
    assert_eq!(given["targets[0].name"].0, "c:1");
    assert_eq!(given["targets[0].tls"].0, serde_json::Value::Null);
    let one = layers(Overrides {
        redis_urls: vec!["redis://c:1".to_owned()],
        ..Overrides::default()
    });
    assert_eq!(one["redis_url"], ("redis://c:1".into(), Layer::Flag));
    assert!(!one.keys().any(|k| k.starts_with("targets")));
}
