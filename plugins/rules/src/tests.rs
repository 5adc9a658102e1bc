//! Unit tests of the `rules` watcher: parsing and validating rules, each
//! measure, entering and leaving, and the shipped example rules.

use lookout_watcher::testing::{SnapshotBuilder, fields, setting};
use lookout_watcher::{Guest, Reading as ProbeData};

use super::*;

/// The shipped example file.
const EXAMPLE: &str = include_str!("../rules.example.toml");

/// The `rules` string out of the example file, as the host hands it over.
fn example_rules() -> String {
    let doc = DeTable::parse(EXAMPLE).expect("rules.example.toml is TOML");
    match doc.get_ref().get("rules").map(|v| v.get_ref()) {
        Some(DeValue::String(s)) => s.to_string(),
        other => panic!("rules.example.toml has no `rules` string: {other:?}"),
    }
}

fn rules(text: &str) -> Rules {
    Rules::new(Config {
        rules: parse_rules(text).unwrap(),
    })
}

fn err(text: &str) -> String {
    parse_rules(text).unwrap_err()
}

fn state(e: &Event) -> &str {
    e.get("state").and_then(Value::as_str).unwrap()
}

/// A snapshot at `secs` seconds with the given INFO fields.
fn snap(secs: i64, info: &[(&str, &str)]) -> Snapshot {
    let mut b = SnapshotBuilder::new().taken_at_ms(secs * 1000);
    for (name, value) in info {
        b = b.info("any", name, value);
    }
    b.build()
}

/// A snapshot with CLUSTER INFO fields.
fn cluster(pairs: &[(&str, &str)]) -> Snapshot {
    SnapshotBuilder::new()
        .probe(
            Probe::ClusterInfo,
            "",
            ProbeData::Cluster(
                pairs
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
            ),
        )
        .build()
}

/// Runs `polls` snapshots; for each, the states of its events.
fn states(w: &mut Rules, polls: &[Snapshot]) -> Vec<Vec<String>> {
    polls
        .iter()
        .map(|s| w.observe(s).iter().map(|e| state(e).to_string()).collect())
        .collect()
}

const MEM: &str = r#"
[[rule]]
name = "mem"
field = "used_memory"
divide_by = "maxmemory"
op = ">"
threshold = 0.7
for = 2
level = "error"
"#;

#[test]
fn manifest_declares_needs_and_config() {
    let m = Rules::manifest();
    assert_eq!(m.name, "rules");
    assert_eq!(m.version, "0.1.0");
    assert_eq!(m.cadence, Cadence::EveryPoll);
    assert_eq!(m.needs.info_fields, ["run_id"]);
    assert_eq!(
        m.needs.info_sections,
        [
            "server",
            "clients",
            "memory",
            "persistence",
            "stats",
            "replication",
            "cpu",
            "cluster",
            "keyspace",
            "errorstats"
        ]
    );
    assert_eq!(m.needs.probes, [Probe::ClusterInfo]);
    assert!(!m.needs.slowlog);
    assert_eq!(m.config.len(), 1);
    assert_eq!(m.config[0].name, "rules");
    assert_eq!(m.config[0].default, Value::Text(String::new()));
}

#[test]
fn parses_every_key_with_defaults() {
    let r = parse_rules(
        r#"
[[rule]]
name = "link"
field = "master_link_status"
op = "!="
threshold = "up"

[[rule]]
name = "mem"
field = "used_memory"
divide_by = "maxmemory"
measure = "value"
op = ">="
threshold = 1
for = 3
level = "info"
message = "{{{name}}} {polls}"
"#,
    )
    .unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].name, "link");
    assert_eq!(r[0].measure, Measure::Value);
    assert_eq!(r[0].op, Op::Ne);
    assert_eq!(r[0].threshold, Threshold::Text("up".into()));
    assert_eq!(r[0].for_polls, 1);
    assert_eq!(r[0].level, Level::Warn);
    assert_eq!(r[0].divide_by, None);
    assert_eq!(r[0].message, Template::parse(DEFAULT_MESSAGE).unwrap());
    assert_eq!(r[1].divide_by.as_deref(), Some("maxmemory"));
    assert_eq!(r[1].threshold, Threshold::Number(1.0));
    assert_eq!(r[1].for_polls, 3);
    assert_eq!(r[1].level, Level::Info);
    assert_eq!(r[1].subject(), "used_memory/maxmemory");
    for (m, want) in [
        ("delta", Measure::Delta),
        ("rate", Measure::Rate),
        ("age", Measure::Age),
    ] {
        let r = parse_rules(&format!(
            "[[rule]]\nname = \"x\"\nfield = \"f\"\nmeasure = \"{m}\"\nop = \"<\"\nthreshold = 0"
        ))
        .unwrap();
        assert_eq!(r[0].measure, want);
    }
}

#[test]
fn empty_text_is_no_rules() {
    assert!(parse_rules("").unwrap().is_empty());
    assert!(parse_rules("# nothing yet\n").unwrap().is_empty());
    let mut w = rules("");
    assert!(w.observe(&snap(0, &[("used_memory", "1")])).is_empty());
    assert_eq!(Config::from_settings(&[]).unwrap(), Config::default());
}

#[test]
fn configure_errors_name_the_rule_and_key() {
    let base = "[[rule]]\nname = \"mem\"\nfield = \"used_memory\"\nop = \">\"\nthreshold = 1\n";
    let with = |extra: &str| err(&format!("{base}{extra}"));
    let replaced = |from: &str, to: &str| err(&base.replace(from, to));
    assert_eq!(
        replaced("op = \">\"", "op = \"=>\""),
        "rule `mem` key `op`: expected one of >, >=, <, <=, ==, !=, got `=>`"
    );
    assert_eq!(
        replaced("op = \">\"\n", ""),
        "rule `mem` key `op`: required: one of >, >=, <, <=, ==, !="
    );
    assert_eq!(
        replaced("op = \">\"", "op = 1"),
        "rule `mem` key `op`: expected one of >, >=, <, <=, ==, !=, got the integer 1"
    );
    assert_eq!(
        with("tresh = 2"),
        "rule `mem` key `tresh`: unknown key; expected one of name, field, divide_by, measure, op, threshold, for, level, message, runbook"
    );
    assert_eq!(
        replaced("name = \"mem\"\n", ""),
        "rule #1 key `name`: required: a non-empty text, the rule's unique name"
    );
    assert_eq!(
        replaced("name = \"mem\"", "name = \" \""),
        "rule #1 key `name`: expected a non-empty text, the rule's unique name, got the text \" \""
    );
    assert_eq!(
        replaced("field = \"used_memory\"\n", ""),
        "rule `mem` key `field`: required: a non-empty text, an INFO or CLUSTER INFO field name"
    );
    assert_eq!(
        replaced("field = \"used_memory\"", "field = 5"),
        "rule `mem` key `field`: expected a non-empty text, an INFO or CLUSTER INFO field name, got the integer 5"
    );
    assert_eq!(
        with("measure = \"avg\""),
        "rule `mem` key `measure`: expected one of value, delta, rate, age, got `avg`"
    );
    assert_eq!(
        replaced("threshold = 1\n", ""),
        "rule `mem` key `threshold`: required: a number, or a text for == and !="
    );
    assert_eq!(
        replaced("threshold = 1", "threshold = true"),
        "rule `mem` key `threshold`: expected a number, or a text for == and !=, got the boolean true"
    );
    assert_eq!(
        replaced("threshold = 1", "threshold = nan"),
        "rule `mem` key `threshold`: expected a number, or a text for == and !=, got the number nan"
    );
    assert_eq!(
        replaced("threshold = 1", "threshold = \"high\""),
        "rule `mem` key `threshold`: a text threshold (\"high\") works only with == or !=, not >; write a number to compare numbers"
    );
    assert_eq!(
        err(&base
            .replace("op = \">\"", "op = \"==\"")
            .replace("threshold = 1", "threshold = \"x\"\nmeasure = \"delta\"")),
        "rule `mem` key `threshold`: a text threshold (\"x\") works only with measure \"value\", not \"delta\""
    );
    assert_eq!(
        with("for = 0"),
        "rule `mem` key `for`: expected an integer >= 1 (polls), got the integer 0"
    );
    assert_eq!(
        with("for = 2.5"),
        "rule `mem` key `for`: expected an integer >= 1 (polls), got the number 2.5"
    );
    assert_eq!(
        with("level = \"critical\""),
        "rule `mem` key `level`: expected one of info, warn, error, got `critical`"
    );
    assert_eq!(
        with("level = \"debug\""),
        "rule `mem` key `level`: expected one of info, warn, error, got `debug`"
    );
    assert_eq!(
        with("message = 3"),
        "rule `mem` key `message`: expected a text, got the integer 3"
    );
    assert_eq!(
        with("divide_by = \"maxmemory\"\nmeasure = \"rate\""),
        "rule `mem` key `divide_by`: works only with measure \"value\", not \"rate\"; drop one of them"
    );
    assert_eq!(
        err(&base.replace("op = \">\"", "op = \"!=\"").replace(
            "threshold = 1",
            "threshold = \"x\"\ndivide_by = \"maxmemory\""
        )),
        "rule `mem` key `divide_by`: needs a number threshold, not a text"
    );
    assert_eq!(
        err(&format!("{base}{base}")),
        "rule `mem` key `name`: used by two rules; give each rule its own name"
    );
}

#[test]
fn message_placeholders_are_checked() {
    let base = "[[rule]]\nname = \"m\"\nfield = \"f\"\nop = \">\"\nthreshold = 1\n";
    assert_eq!(
        err(&format!("{base}message = \"{{name}} is {{vaule}}\"")),
        "rule `m` key `message`: unknown placeholder `{vaule}`; use {name} {field} {value} {threshold} {op} {polls}"
    );
    assert_eq!(
        err(&format!("{base}message = \"{{name\"")),
        "rule `m` key `message`: `{name` is not closed; write `{{` for a literal brace"
    );
    assert_eq!(
        err(&format!("{base}message = \"a }} b\"")),
        "rule `m` key `message`: a lone `}`; write `}}` for a literal brace"
    );
    let t = Template::parse("{{x}} {name}={value} {op}{threshold} after {polls} {field}").unwrap();
    let out = t.render(|p| p.to_uppercase());
    assert_eq!(out, "{x} NAME=VALUE OPTHRESHOLD after POLLS FIELD");
    assert_eq!(Template::parse("").unwrap().render(|_| "x".into()), "");
}

#[test]
fn toml_syntax_errors_name_the_line() {
    let e = err("[[rule]]\nname = \"a\"\nfield = used_memory\n");
    assert!(
        e.starts_with("key `rules`: TOML syntax error at line 3, column 9 of the rules: "),
        "{e}"
    );
    let e = err("[[rule]]\nname = \"a\"\nname = \"b\"\n");
    assert!(
        e.starts_with("key `rules`: TOML syntax error at line 3,"),
        "{e}"
    );
    assert!(!e.contains('\n'), "one line: {e}");
}

#[test]
fn document_shape_errors() {
    assert_eq!(
        err("threshold = 3\n"),
        "key `rules`: unknown top-level key `threshold`; write each rule as a [[rule]] table"
    );
    assert_eq!(
        err("rule = 3\n"),
        "key `rules`: `rule` must be a list of [[rule]] tables, got the integer 3"
    );
    assert_eq!(
        err("rule = [1]\n"),
        "rule #1: expected a table, got the integer 1; write each rule under a [[rule]] header"
    );
    assert_eq!(
        Config::from_settings(&[setting("rules", 3i64)]).unwrap_err(),
        "key `rules` must be a text, got an integer 3"
    );
}

#[test]
fn needs_narrow_to_the_sections_the_rules_read() {
    // used_memory / maxmemory: memory, and server for run_id.
    assert_eq!(
        rules(MEM).needs(),
        Some(Needs::info(&["run_id"]).with_sections(&["server", "memory"]))
    );
    let w = rules(
        r#"
[[rule]]
name = "cluster"
field = "cluster_state"
op = "!="
threshold = "ok"

[[rule]]
name = "link"
field = "master_link_status"
op = "!="
threshold = "up"
"#,
    );
    assert_eq!(
        w.needs(),
        Some(
            Needs::info(&["run_id"])
                .with_sections(&["server", "replication"])
                .with_probe(Probe::ClusterInfo)
        )
    );
    // A field the watcher does not place: every section, as declared.
    let w =
        rules("[[rule]]\nname = \"x\"\nfield = \"some_new_field\"\nop = \">\"\nthreshold = 1\n");
    assert_eq!(
        w.needs(),
        Some(Needs::info(&["run_id"]).with_sections(&SECTIONS))
    );
    // No rules: run_id only.
    assert_eq!(
        rules("").needs(),
        Some(Needs::info(&["run_id"]).with_sections(&["server"]))
    );
    // The shipped example reads its sections and CLUSTER INFO, never more
    // than the manifest.
    let example = Config::from_settings(&[setting("rules", example_rules().as_str())]).unwrap();
    let needs = Rules::new(example).needs().unwrap();
    assert!(
        needs
            .info_sections
            .iter()
            .all(|s| SECTIONS.contains(&s.as_str()))
    );
    assert!(needs.info_sections.len() < SECTIONS.len(), "{needs:?}");
}

#[test]
fn a_rule_fires_its_condition_when_entered_and_resolves_it_when_left() {
    use lookout_watcher::ConditionState::{Firing, Resolved};
    let mut w = rules(MEM);
    let at = |used: &str| snap(0, &[("used_memory", used), ("maxmemory", "100")]);
    let condition = |e: &Event| {
        let c = e.condition.clone().expect("a condition");
        (c.kind, c.key, c.state)
    };
    assert!(w.observe(&at("80")).is_empty());
    let on = w.observe(&at("75"));
    assert_eq!(condition(&on[0]), ("rule".into(), "mem".into(), Firing));
    assert!(w.observe(&at("90")).is_empty());
    let off = w.observe(&at("10"));
    assert_eq!(condition(&off[0]), ("rule".into(), "mem".into(), Resolved));
    assert_eq!(off[0].condition.as_ref().unwrap().runbook, None);
}

#[test]
fn a_runbook_goes_on_the_rule_condition() {
    let url = "https://runbooks.example/mem";
    let mut w = rules(&format!("{MEM}runbook = \"{url}\"\n"));
    let at = |used: &str| snap(0, &[("used_memory", used), ("maxmemory", "100")]);
    w.observe(&at("80"));
    let on = w.observe(&at("75"));
    assert_eq!(
        on[0].condition.as_ref().unwrap().runbook.as_deref(),
        Some(url)
    );
    let off = w.observe(&at("10"));
    assert_eq!(
        off[0].condition.as_ref().unwrap().runbook.as_deref(),
        Some(url)
    );
    assert_eq!(
        err(&format!("{MEM}runbook = \"ftp://x\"\n")),
        "rule `mem` key `runbook`: expected an http:// or https:// URL of at most 1024 bytes, got `ftp://x`"
    );
}

#[test]
fn value_rule_enters_after_for_polls_and_leaves_once() {
    let mut w = rules(MEM);
    let at = |used: &str| snap(0, &[("used_memory", used), ("maxmemory", "100")]);
    assert!(w.observe(&at("80")).is_empty()); // holds 1 of 2
    let events = w.observe(&at("75"));
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.level, Level::Error);
    assert_eq!(e.msg, "mem: used_memory/maxmemory is 0.75 (> 0.7)");
    assert_eq!(
        fields(e),
        [
            ("rule", &Value::Text("mem".into())),
            ("field", &Value::Text("used_memory".into())),
            ("divide_by", &Value::Text("maxmemory".into())),
            ("value", &Value::Float(0.75)),
            ("threshold", &Value::Float(0.7)),
            ("op", &Value::Text(">".into())),
            ("measure", &Value::Text("value".into())),
            ("polls", &Value::Integer(2)),
            ("state", &Value::Text("entered".into())),
        ]
    );
    assert_eq!(w.active(), ["mem"]);
    for _ in 0..5 {
        assert!(w.observe(&at("90")).is_empty());
    }
    let left = w.observe(&at("50"));
    assert_eq!(left.len(), 1);
    let e = &left[0];
    assert_eq!(e.level, Level::Info);
    assert_eq!(
        e.msg,
        "rule mem cleared after 7 polls: used_memory/maxmemory is 0.5, no longer > 0.7"
    );
    assert_eq!(state(e), "left");
    assert_eq!(e.get("polls"), Some(&Value::Integer(7)));
    assert_eq!(e.get("value"), Some(&Value::Float(0.5)));
    assert!(w.active().is_empty());
    assert!(w.observe(&at("50")).is_empty());
}

#[test]
fn a_break_before_for_polls_starts_the_count_over() {
    let mut w = rules(MEM);
    let at = |used: &str| snap(0, &[("used_memory", used), ("maxmemory", "100")]);
    let polls: Vec<_> = ["80", "60", "80", "70", "80", "80"]
        .into_iter()
        .map(at)
        .collect();
    // Exactly 0.7 does not hold `> 0.7`.
    assert_eq!(
        states(&mut w, &polls),
        [
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec!["entered".to_string()]
        ]
    );
}

#[test]
fn divisor_zero_or_missing_and_missing_fields_change_nothing() {
    let mut w = rules(MEM);
    let at = |used: &str, max: &str| snap(0, &[("used_memory", used), ("maxmemory", max)]);
    w.observe(&at("80", "100"));
    // maxmemory 0 (no limit), missing, or not a number: skipped, state kept.
    assert!(w.observe(&at("80", "0")).is_empty());
    assert!(w.observe(&snap(0, &[("used_memory", "80")])).is_empty());
    assert!(w.observe(&at("80", "lots")).is_empty());
    assert!(w.observe(&snap(0, &[])).is_empty());
    // The second poll that holds enters it.
    assert_eq!(state(&w.observe(&at("80", "100"))[0]), "entered");
    assert!(w.observe(&snap(0, &[])).is_empty());
    assert_eq!(w.active(), ["mem"]);
}

#[test]
fn text_rules_compare_text() {
    let mut w = rules(
        "[[rule]]\nname = \"link\"\nfield = \"master_link_status\"\nop = \"!=\"\nthreshold = \"up\"\n\
         [[rule]]\nname = \"role\"\nfield = \"role\"\nop = \"==\"\nthreshold = \"slave\"\nlevel = \"info\"\n",
    );
    let at = |link: &str| snap(0, &[("role", "slave"), ("master_link_status", link)]);
    let events = w.observe(&at("down"));
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].msg, "link: master_link_status is down (!= up)");
    assert_eq!(events[0].get("value"), Some(&Value::Text("down".into())));
    assert_eq!(events[0].get("threshold"), Some(&Value::Text("up".into())));
    assert_eq!(events[1].msg, "role: role is slave (== slave)");
    assert_eq!(events[1].level, Level::Info);
    let left = w.observe(&at("up"));
    assert_eq!(left.len(), 1);
    assert_eq!(
        left[0].msg,
        "rule link cleared after 1 poll: master_link_status is up, no longer != up"
    );
    // A primary prints no master_link_status: the rule stays as it is.
    assert!(w.observe(&snap(0, &[("role", "master")])).len() == 1);
    assert_eq!(w.active(), Vec::<&str>::new());
}

#[test]
fn delta_rule_sees_falls_and_rebaselines_on_restart() {
    let mut w = rules(
        "[[rule]]\nname = \"replicas\"\nfield = \"connected_slaves\"\nmeasure = \"delta\"\nop = \"<\"\nthreshold = 0\n",
    );
    let at = |run: &str, n: &str| snap(0, &[("run_id", run), ("connected_slaves", n)]);
    assert!(w.observe(&at("a", "3")).is_empty()); // baseline
    assert!(w.observe(&at("a", "3")).is_empty());
    let events = w.observe(&at("a", "1"));
    assert_eq!(
        events[0].msg,
        "replicas: connected_slaves change is -2 (< 0)"
    );
    assert_eq!(events[0].get("value"), Some(&Value::Float(-2.0)));
    assert_eq!(events[0].get("measure"), Some(&Value::Text("delta".into())));
    let left = w.observe(&at("a", "1"));
    assert_eq!(
        left[0].msg,
        "rule replicas cleared after 1 poll: connected_slaves change is 0, no longer < 0"
    );
    // A restart with fewer replicas is a new baseline, not a fall.
    assert!(w.observe(&at("b", "0")).is_empty());
    assert!(w.observe(&at("b", "0")).is_empty());
    assert!(w.active().is_empty());
}

#[test]
fn rate_rule_follows_a_counter() {
    let mut w = rules(
        "[[rule]]\nname = \"errors\"\nfield = \"total_error_replies\"\nmeasure = \"rate\"\nop = \">\"\nthreshold = 1\n",
    );
    let at =
        |secs: i64, run: &str, n: &str| snap(secs, &[("run_id", run), ("total_error_replies", n)]);
    assert!(w.observe(&at(0, "a", "100")).is_empty());
    assert!(w.observe(&at(10, "a", "110")).is_empty()); // 1/s: not > 1
    let events = w.observe(&at(20, "a", "135"));
    assert_eq!(
        events[0].msg,
        "errors: total_error_replies per second is 2.5 (> 1)"
    );
    assert_eq!(events[0].get("value"), Some(&Value::Float(2.5)));
    // CONFIG RESETSTAT: a new baseline, the rule stays entered.
    assert!(w.observe(&at(30, "a", "0")).is_empty());
    assert_eq!(w.active(), ["errors"]);
    // Same timestamp: no rate, nothing changes.
    assert!(w.observe(&at(30, "a", "5")).is_empty());
    let left = w.observe(&at(40, "a", "5"));
    assert_eq!(
        left[0].msg,
        "rule errors cleared after 1 poll: total_error_replies per second is 0, no longer > 1"
    );
}

#[test]
fn age_rule_uses_the_snapshot_time() {
    let mut w = rules(
        "[[rule]]\nname = \"backup\"\nfield = \"rdb_last_save_time\"\nmeasure = \"age\"\nop = \">\"\nthreshold = 86400\nmessage = \"last save {value} s ago\"\n",
    );
    let now = 1_700_000_000;
    let at = |secs: i64, saved: i64| snap(secs, &[("rdb_last_save_time", &saved.to_string())]);
    assert!(w.observe(&at(now, now - 86_400)).is_empty());
    let events = w.observe(&at(now, now - 90_000));
    assert_eq!(events[0].msg, "last save 90000 s ago");
    assert_eq!(events[0].get("value"), Some(&Value::Float(90_000.0)));
    assert_eq!(state(&w.observe(&at(now + 10, now))[0]), "left");
}

#[test]
fn cluster_info_fields_are_addressable() {
    let mut w = rules(
        "[[rule]]\nname = \"state\"\nfield = \"cluster_state\"\nop = \"!=\"\nthreshold = \"ok\"\nlevel = \"error\"\n\
         [[rule]]\nname = \"slots\"\nfield = \"cluster_slots_fail\"\nop = \">\"\nthreshold = 0\n",
    );
    let events = w.observe(&cluster(&[
        ("cluster_state", "fail"),
        ("cluster_slots_fail", "16"),
    ]));
    let msgs: Vec<_> = events.iter().map(|e| e.msg.as_str()).collect();
    assert_eq!(
        msgs,
        [
            "state: cluster_state is fail (!= ok)",
            "slots: cluster_slots_fail is 16 (> 0)"
        ]
    );
    // Not a cluster: the probe is unavailable; nothing is said, nothing changes.
    let standalone = SnapshotBuilder::new()
        .unavailable(
            Probe::ClusterInfo,
            "",
            "ERR This instance has cluster support disabled",
        )
        .build();
    for _ in 0..3 {
        assert!(w.observe(&standalone).is_empty());
    }
    assert_eq!(w.active(), ["state", "slots"]);
    let events = w.observe(&cluster(&[
        ("cluster_state", "ok"),
        ("cluster_slots_fail", "0"),
    ]));
    assert_eq!(events.len(), 2);
    assert!(
        events
            .iter()
            .all(|e| state(e) == "left" && e.level == Level::Info)
    );
}

#[test]
fn info_fields_win_over_cluster_fields_of_the_same_name() {
    let mut w = rules("[[rule]]\nname = \"x\"\nfield = \"f\"\nop = \"==\"\nthreshold = 1\n");
    let s = SnapshotBuilder::new()
        .info("any", "f", "2")
        .probe(
            Probe::ClusterInfo,
            "",
            ProbeData::Cluster(vec![("f".into(), "1".into())]),
        )
        .build();
    assert!(w.observe(&s).is_empty());
}

#[test]
fn not_a_number_is_said_once_until_it_reads_as_one() {
    let mut w = rules(
        "[[rule]]\nname = \"human\"\nfield = \"used_memory_human\"\nop = \">\"\nthreshold = 1000\n",
    );
    let at = |v: &str| snap(0, &[("used_memory_human", v)]);
    let events = w.observe(&at("1.5M"));
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.level, Level::Warn);
    assert_eq!(
        e.msg,
        "rule human cannot compare: used_memory_human is `1.5M`, not a number"
    );
    assert_eq!(
        fields(e),
        [
            ("rule", &Value::Text("human".into())),
            ("field", &Value::Text("used_memory_human".into())),
            ("value", &Value::Text("1.5M".into())),
            ("state", &Value::Text("changed".into())),
        ]
    );
    assert!(w.observe(&at("1.6M")).is_empty());
    assert!(w.observe(&snap(0, &[])).is_empty());
    assert!(w.observe(&at("10")).is_empty());
    assert_eq!(w.observe(&at("2M")).len(), 1);
    // A rate over a field that is not an unsigned integer.
    let mut w = rules(
        "[[rule]]\nname = \"r\"\nfield = \"mem_fragmentation_ratio\"\nmeasure = \"rate\"\nop = \">\"\nthreshold = 0\n",
    );
    assert_eq!(
        w.observe(&snap(0, &[("mem_fragmentation_ratio", "1.5")]))
            .len(),
        1
    );
}

#[test]
fn rules_report_in_order_and_independently() {
    let mut w = rules(&format!(
        "{MEM}\n[[rule]]\nname = \"clients\"\nfield = \"connected_clients\"\nop = \">=\"\nthreshold = 10\nmessage = \"{{name}} {{value}} after {{polls}}\"\n"
    ));
    let at = |used: &str, clients: &str| {
        snap(
            0,
            &[
                ("used_memory", used),
                ("maxmemory", "100"),
                ("connected_clients", clients),
            ],
        )
    };
    let e = w.observe(&at("80", "10"));
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].msg, "clients 10 after 1");
    let e = w.observe(&at("80", "9"));
    let names: Vec<_> = e
        .iter()
        .map(|e| (e.get("rule").and_then(Value::as_str).unwrap(), state(e)))
        .collect();
    assert_eq!(names, [("mem", "entered"), ("clients", "left")]);
}

#[test]
fn numbers_in_messages() {
    assert_eq!(number(5.0), "5");
    assert_eq!(number(-2.0), "-2");
    assert_eq!(number(0.7), "0.7");
    assert_eq!(number(2.0 / 3.0), "0.6667");
    assert_eq!(number(1e20), "100000000000000000000");
    assert_eq!(number(0.00001), "0");
}

#[test]
fn every_example_rule_configures() {
    let text = example_rules();
    let parsed = parse_rules(&text).unwrap();
    let names: Vec<_> = parsed.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "connections_rejected",
            "bgsave_broken",
            "bgsave_slow",
            "master_link_down",
            "memory_high",
            "memory_critical",
            "replication_broken",
            "error_replies",
            "replicas_disconnected",
            "missing_master",
            "missing_backup",
            "rejected_connections_rate",
            "too_many_connections",
            "cluster_state",
            "cluster_slots_fail",
        ]
    );
    // And through `configure`, as the host hands the setting over.
    Rules::configure(vec![setting("rules", text.as_str())]).unwrap();
}

/// A healthy replica-less primary with a recent save, at `secs`.
fn healthy(secs: i64) -> Vec<(&'static str, String)> {
    vec![
        ("run_id", "a".into()),
        ("used_memory", "500".into()),
        ("maxmemory", "1000".into()),
        ("connected_clients", "10".into()),
        ("maxclients", "10000".into()),
        ("rejected_connections", "0".into()),
        ("total_error_replies", "0".into()),
        ("connected_slaves", "2".into()),
        ("rdb_last_bgsave_status", "ok".into()),
        ("rdb_current_bgsave_time_sec", "-1".into()),
        ("rdb_last_save_time", (secs - 60).to_string()),
    ]
}

fn build(secs: i64, info: &[(&'static str, String)]) -> Snapshot {
    let pairs: Vec<(&str, &str)> = info.iter().map(|(n, v)| (*n, v.as_str())).collect();
    snap(secs, &pairs)
}

fn set(info: &mut [(&'static str, String)], name: &str, value: &str) {
    if let Some(f) = info.iter_mut().find(|(n, _)| *n == name) {
        f.1 = value.to_string();
    }
}

/// The events of one poll as (rule, state).
fn fired(w: &mut Rules, s: &Snapshot) -> Vec<(String, String)> {
    w.observe(s)
        .iter()
        .map(|e| {
            (
                e.get("rule").and_then(Value::as_str).unwrap().to_string(),
                state(e).to_string(),
            )
        })
        .collect()
}

fn pair(rule: &str, state: &str) -> (String, String) {
    (rule.to_string(), state.to_string())
}

#[test]
fn example_rules_stay_quiet_on_a_healthy_primary() {
    let mut w = rules(&example_rules());
    for i in 0..40 {
        let t = 1_700_000_000 + i * 10;
        assert!(w.observe(&build(t, &healthy(t))).is_empty(), "poll {i}");
    }
}

#[test]
fn example_memory_rules_enter_after_five_minutes_and_leave() {
    let mut w = rules(&example_rules());
    let t0 = 1_700_000_000;
    let mut info = healthy(t0);
    set(&mut info, "used_memory", "950");
    let mut entered = Vec::new();
    for i in 0..35 {
        let t = t0 + i * 10;
        set(&mut info, "rdb_last_save_time", &(t - 60).to_string());
        for (rule, st) in fired(&mut w, &build(t, &info)) {
            entered.push((i, rule, st));
        }
    }
    // 30 polls of 10 s: both thresholds are crossed, both enter at once.
    assert_eq!(
        entered,
        [
            (29, "memory_high".to_string(), "entered".to_string()),
            (29, "memory_critical".to_string(), "entered".to_string()),
        ]
    );
    let t = t0 + 400;
    set(&mut info, "used_memory", "800");
    set(&mut info, "rdb_last_save_time", &(t - 60).to_string());
    let events = w.observe(&build(t, &info));
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].msg,
        "rule memory_critical cleared after 35 polls: used_memory/maxmemory is 0.8, no longer > 0.9"
    );
    set(&mut info, "used_memory", "100");
    assert_eq!(
        fired(&mut w, &build(t + 10, &info)),
        [pair("memory_high", "left")]
    );
}

#[test]
fn example_replica_and_backup_rules() {
    let mut w = rules(&example_rules());
    let t0 = 1_700_000_000;
    let mut info = healthy(t0);
    info.push(("master_link_status", "up".into()));
    assert!(w.observe(&build(t0, &info)).is_empty());
    // A replica drops and the link goes down.
    set(&mut info, "connected_slaves", "1");
    set(&mut info, "master_link_status", "down");
    assert_eq!(
        fired(&mut w, &build(t0 + 10, &info)),
        [
            pair("master_link_down", "entered"),
            pair("replicas_disconnected", "entered"),
        ]
    );
    let mut later = Vec::new();
    for i in 2..14 {
        later.extend(fired(&mut w, &build(t0 + i * 10, &info)));
    }
    assert_eq!(
        later,
        [
            // The replica count stopped falling.
            pair("replicas_disconnected", "left"),
            pair("replication_broken", "entered"),
            pair("missing_master", "entered"),
        ]
    );
    // The link comes back: each entered rule leaves once.
    set(&mut info, "master_link_status", "up");
    assert_eq!(
        fired(&mut w, &build(t0 + 140, &info)),
        [
            pair("master_link_down", "left"),
            pair("replication_broken", "left"),
            pair("missing_master", "left"),
        ]
    );
    // No save for over a day.
    set(&mut info, "rdb_last_save_time", &(t0 - 90_000).to_string());
    let events = w.observe(&build(t0 + 150, &info));
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].msg,
        "missing_backup: last successful save 90150 s ago (> 86400 s)"
    );
    set(&mut info, "rdb_last_bgsave_status", "err");
    set(&mut info, "rdb_last_save_time", &(t0 + 150).to_string());
    assert_eq!(
        fired(&mut w, &build(t0 + 160, &info)),
        [
            pair("bgsave_broken", "entered"),
            pair("missing_backup", "left")
        ]
    );
}

#[test]
fn example_rejections_errors_and_cluster_rules() {
    let mut w = rules(&example_rules());
    let t0 = 1_700_000_000;
    let mut info = healthy(t0);
    assert!(w.observe(&build(t0, &info)).is_empty());
    set(&mut info, "rejected_connections", "20");
    set(&mut info, "total_error_replies", "50");
    set(&mut info, "connected_clients", "9500");
    let events = w.observe(&build(t0 + 10, &info));
    let msgs: Vec<_> = events.iter().map(|e| e.msg.as_str()).collect();
    assert_eq!(
        msgs,
        [
            "connections_rejected: 20 connections rejected since the last poll (maxclients reached)",
            "error_replies: 5 error replies per second (> 1)",
            "rejected_connections_rate: 2 connections rejected per second",
            "too_many_connections: connected_clients/maxclients is 0.95 (> 0.9)",
        ]
    );
    assert_eq!(events[3].level, Level::Warn);
    assert_eq!(events[2].level, Level::Error);
    // Cluster rules read CLUSTER INFO.
    let s = SnapshotBuilder::new()
        .taken_at_ms((t0 + 20) * 1000)
        .probe(
            Probe::ClusterInfo,
            "",
            ProbeData::Cluster(vec![
                ("cluster_state".into(), "fail".into()),
                ("cluster_slots_fail".into(), "3".into()),
            ]),
        )
        .build();
    let events = w.observe(&s);
    let msgs: Vec<_> = events.iter().map(|e| e.msg.as_str()).collect();
    assert_eq!(
        msgs,
        [
            "cluster_state: cluster_state is fail",
            "cluster_slots_fail: 3 hash slots failing"
        ]
    );
}

#[test]
fn exported_glue_keeps_state_between_calls() {
    assert_eq!(Rules::describe().name, "rules");
    assert_eq!(
        Rules::configure(vec![setting(
            "rules",
            "[[rule]]\nname = \"x\"\nfield = \"f\"\nop = \"=>\"\nthreshold = 1"
        )])
        .unwrap_err(),
        "rule `x` key `op`: expected one of >, >=, <, <=, ==, !=, got `=>`"
    );
    Rules::configure(vec![setting(
        "rules",
        "[[rule]]\nname = \"x\"\nfield = \"f\"\nop = \">\"\nthreshold = 1\nfor = 2",
    )])
    .unwrap();
    let at = |v: &str| snap(0, &[("f", v)]);
    assert!(<Rules as Guest>::observe(at("2")).is_empty());
    assert_eq!(<Rules as Guest>::observe(at("2")).len(), 1);
    assert!(<Rules as Guest>::observe(at("2")).is_empty());
    assert_eq!(<Rules as Guest>::observe(at("0")).len(), 1);
}
