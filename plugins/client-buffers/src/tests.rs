//! Unit tests of client-buffers, natively, on snapshots built with the
//! SDK's `testing` helpers.

use lookout_watcher::testing::{SnapshotBuilder, fields, setting};
use lookout_watcher::{Client, ConditionState, Event, Level, Probe, Snapshot, Value, Watch};

use super::*;

const MIB: u64 = 1 << 20;

fn watcher(settings: &[(&str, i64)]) -> ClientBuffers {
    let settings: Vec<_> = settings.iter().map(|&(k, v)| setting(k, v)).collect();
    ClientBuffers::from_settings(&settings).unwrap()
}

fn snap(clients: Vec<Client>) -> Snapshot {
    SnapshotBuilder::new().clients(clients).build()
}

/// A pub/sub subscriber (flag `P`) holding `omem` bytes of replies.
fn subscriber(id: u64, omem: u64) -> Client {
    Client::new(id, &format!("10.0.0.{id}:5000"))
        .name("feed")
        .flags("P")
        .cmd("subscribe")
        .field("sub", 1)
        .field("omem", omem)
}

/// `(kind, key, state)` of the event's condition.
fn condition(e: &Event) -> (&str, &str, ConditionState) {
    let c = e.condition.as_ref().expect("a condition");
    (&c.kind, &c.key, c.state)
}

fn msgs(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.msg.as_str()).collect()
}

#[test]
fn manifest_declares_the_settings_and_client_list() {
    let m = ClientBuffers::manifest();
    assert_eq!(m.name, NAME);
    let names: Vec<&str> = m.config.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "max_omem_normal",
            "max_omem_replica",
            "max_omem_pubsub",
            "max_qbuf",
            "max_tot_mem",
            "for_polls"
        ]
    );
    assert_eq!(m.config[2].default, Value::Integer(4 << 20));
    assert_eq!(m.needs.probes, [Probe::ClientList]);
    assert!(m.needs.info_fields.is_empty());
}

#[test]
fn a_negative_setting_is_refused_by_name() {
    let err = ClientBuffers::from_settings(&[setting("max_qbuf", -1i64)]).unwrap_err();
    assert_eq!(err, "key `max_qbuf` must be >= 0, got -1");
    assert!(ClientBuffers::from_settings(&[]).is_ok());
}

#[test]
fn classes_follow_client_output_buffer_limit() {
    let c = |flags: &str| Client::new(1, "a:1").flags(flags);
    assert_eq!(CLASSES[class(&c("N"))], "normal");
    assert_eq!(CLASSES[class(&c("S"))], "replica");
    assert_eq!(CLASSES[class(&c("P"))], "pubsub");
    assert_eq!(CLASSES[class(&c("M"))], "normal", "a master link");
    assert_eq!(CLASSES[class(&c("O"))], "normal", "a monitor");
    // A RESP3 subscriber has no P flag: its subscriptions tell.
    assert_eq!(CLASSES[class(&c("N").field("psub", 2))], "pubsub");
    assert_eq!(CLASSES[class(&c("N").field("ssub", 1))], "pubsub");
}

#[test]
fn warns_once_after_for_polls_and_resolves_once_back_under() {
    let mut w = watcher(&[]);
    assert!(
        w.observe(&snap(vec![subscriber(7, 5 * MIB)])).is_empty(),
        "1 poll over"
    );
    let on = w.observe(&snap(vec![subscriber(7, 6 * MIB)]));
    assert_eq!(
        msgs(&on),
        [r#"pubsub client 10.0.0.7:5000 (id 7, name "feed"): output buffer 6.0MiB over 4.0MiB"#]
    );
    assert_eq!(on[0].level, Level::Warn);
    assert_eq!(
        condition(&on[0]),
        (
            "client-output-buffer",
            "id=7 addr=10.0.0.7:5000",
            ConditionState::Firing
        )
    );
    assert_eq!(
        fields(&on[0]),
        [
            ("client_id", &Value::Integer(7)),
            ("addr", &Value::Text("10.0.0.7:5000".into())),
            ("class", &Value::Text("pubsub".into())),
            ("measure", &Value::Text("omem".into())),
            ("bytes", &Value::Integer(6 << 20)),
            ("limit", &Value::Integer(4 << 20)),
            ("state", &Value::Text("entered".into())),
        ]
    );
    assert!(
        w.observe(&snap(vec![subscriber(7, 9 * MIB)])).is_empty(),
        "said once"
    );
    let off = w.observe(&snap(vec![subscriber(7, 0)]));
    assert_eq!(
        msgs(&off),
        [r#"pubsub client 10.0.0.7:5000 (id 7, name "feed"): output buffer 0B back under 4.0MiB"#]
    );
    assert_eq!(off[0].level, Level::Info);
    assert_eq!(condition(&off[0]).2, ConditionState::Resolved);
    assert_eq!(off[0].get("state"), Some(&Value::Text("left".into())));
    assert!(w.observe(&snap(vec![subscriber(7, 0)])).is_empty());
}

#[test]
fn a_client_gone_while_over_resolves() {
    let mut w = watcher(&[("for_polls", 1)]);
    assert_eq!(w.observe(&snap(vec![subscriber(7, 5 * MIB)])).len(), 1);
    let gone = w.observe(&snap(vec![Client::new(8, "10.0.0.8:5000")]));
    assert_eq!(
        msgs(&gone),
        ["client 10.0.0.7:5000 (id 7) gone while its output buffer was over"]
    );
    assert_eq!(
        condition(&gone[0]),
        (
            "client-output-buffer",
            "id=7 addr=10.0.0.7:5000",
            ConditionState::Resolved
        )
    );
    assert_eq!(gone[0].get("measure"), Some(&Value::Text("omem".into())));
    assert!(w.observe(&snap(vec![])).is_empty());
}

#[test]
fn each_class_has_its_own_output_buffer_limit() {
    let mut w = watcher(&[("for_polls", 1), ("max_omem_replica", 0)]);
    let normal = Client::new(1, "a:1").field("omem", 5 * MIB);
    let replica = Client::new(2, "b:1")
        .flags("S")
        .cmd("psync")
        .field("omem", 500 * MIB);
    let events = w.observe(&snap(vec![normal.clone(), replica, subscriber(3, 5 * MIB)]));
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(condition(&events[0]).1, "id=3 addr=10.0.0.3:5000");
    let big = normal.field("omem", 33 * MIB);
    assert_eq!(
        msgs(&w.observe(&snap(vec![big, subscriber(3, 5 * MIB)]))),
        [r#"normal client a:1 (id 1, name ""): output buffer 33.0MiB over 32.0MiB"#]
    );
}

#[test]
fn query_buffer_and_memory_have_their_own_conditions() {
    let mut w = watcher(&[
        ("for_polls", 1),
        ("max_qbuf", MIB as i64),
        ("max_tot_mem", 0),
    ]);
    let c = Client::new(4, "c:1")
        .field("qbuf", 3 * MIB)
        .field("tot-mem", 900 * MIB);
    let events = w.observe(&snap(vec![c]));
    assert_eq!(events.len(), 1, "tot-mem is off: {events:?}");
    assert_eq!(condition(&events[0]).0, "client-query-buffer");
    assert_eq!(events[0].get("measure"), Some(&Value::Text("qbuf".into())));

    let mut w = watcher(&[("for_polls", 1)]);
    let c = Client::new(5, "d:1").field("tot-mem", 65 * MIB);
    let events = w.observe(&snap(vec![c]));
    assert_eq!(
        msgs(&events),
        [r#"normal client d:1 (id 5, name ""): memory 65.0MiB over 64.0MiB"#]
    );
    assert_eq!(condition(&events[0]).0, "client-memory");
}

#[test]
fn an_unreadable_client_list_is_said_once_and_keeps_the_conditions() {
    let mut w = watcher(&[("for_polls", 1)]);
    assert_eq!(w.observe(&snap(vec![subscriber(7, 5 * MIB)])).len(), 1);
    let refused = SnapshotBuilder::new()
        .unavailable(Probe::ClientList, "", "CLIENT LIST: NOPERM")
        .build();
    let said = w.observe(&refused);
    assert_eq!(
        msgs(&said),
        ["cannot read CLIENT LIST: CLIENT LIST: NOPERM"]
    );
    assert_eq!(
        condition(&said[0]),
        (
            "client-list-unavailable",
            "client-list",
            ConditionState::Firing
        )
    );
    assert!(w.observe(&refused).is_empty());
    // Back: the subscriber still over makes no new warning.
    let back = w.observe(&snap(vec![subscriber(7, 5 * MIB)]));
    assert_eq!(msgs(&back), ["CLIENT LIST readable again"]);
    assert_eq!(condition(&back[0]).2, ConditionState::Resolved);
}

#[test]
fn fields_an_older_redis_does_not_print_count_as_nothing() {
    let mut w = watcher(&[("for_polls", 1)]);
    let mut old = Client::new(9, "e:1").flags("P");
    old.fields
        .retain(|(n, _)| n != "omem" && n != "ssub" && n != "tot-mem");
    assert!(w.observe(&snap(vec![old])).is_empty());
}
