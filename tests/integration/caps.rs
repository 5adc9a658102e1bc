//! Output caps in bytes after encoding, measured on a real bus: a watcher
//! at every cap in control characters (six bytes of JSON each) stays within
//! `max_envelope_bytes` per envelope and `max_call_bytes` per call, the
//! rest replaced by one cut report; and names cannot be forged: a watcher's
//! events carry its file name as `target`.

use std::time::Duration;

use serde_json::Value;

use crate::support::{
    Redis, STREAM, bus_config, by_target, fixture, plugins_dir, plugins_with, run_lookout, stop,
    wait_for,
};

/// Bytes of an envelope's JSON, rebuilt from its stream entry (the same
/// length as the published JSON: key order does not change it).
fn json_len(envelope: &Value) -> usize {
    serde_json::to_string(envelope).unwrap().len()
}

/// The runs of `target`'s envelopes, each with the host's cut report that
/// closes it, in stream order.
fn calls(all: &[Value], target: &str) -> Vec<(Vec<Value>, Value)> {
    let mut calls = Vec::new();
    let mut run = Vec::new();
    for e in all {
        if e["target"] == target {
            run.push(e.clone());
        } else if e["target"] == "lookout"
            && e["fields"]["key"] == "max_call_bytes"
            && e["fields"]["watcher"] == target
        {
            calls.push((std::mem::take(&mut run), e.clone()));
        }
    }
    calls
}

/// `encoder` at every default output cap (100 events of a 4 KiB message
/// and 32 fields of 64-byte names and 1 KiB values, all U+0001: about
/// 240 KiB of JSON each) and a copy of it deployed as `encoder-small` with
/// its own caps in `[limits.watchers.encoder-small]`. On the bus every
/// envelope is within its watcher's `max_envelope_bytes`, shortened rather
/// than dropped; every call's envelopes with their cut report are within
/// `max_call_bytes`, and the report names the watcher, the events and
/// bytes cut and the key.
#[test]
fn a_watcher_at_every_cap_stays_within_its_bytes() {
    let watched = Redis::start(&[]);
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[], &["encoder"]);
    std::fs::copy(fixture("encoder"), plugins.join("encoder-small.wasm")).unwrap();
    // Long deadlines and room in memory: building 3.6 MB of output on a
    // busy machine is not what is tested.
    let config = bus_config(
        tmp.path(),
        &bus,
        "",
        "[limits]\ncall_deadline_ms = 10000\nmemory_mib = 64\n\
         [limits.watchers.encoder-small]\nmax_envelope_bytes = 8192\nmax_call_bytes = 65536\n",
    );
    let mut lookout = run_lookout(
        tmp.path(),
        &watched.url(),
        &plugins,
        &["--config", config.to_str().unwrap(), "--poll-interval", "1"],
    );
    lookout.wait_started();
    let all = wait_for(
        "two cut calls of each encoder",
        Duration::from_secs(120),
        || {
            let all = bus.stream(STREAM);
            (calls(&all, "encoder").len() >= 2 && calls(&all, "encoder-small").len() >= 2)
                .then_some(all)
        },
    );
    let _ = stop(&mut lookout);

    for (target, max_envelope, max_call) in [
        ("encoder", 64 << 10, 1 << 20),
        ("encoder-small", 8192, 65536),
    ] {
        let events = by_target(&all, target);
        let largest = events.iter().map(json_len).max().unwrap();
        assert!(
            largest <= max_envelope,
            "{target}: an envelope of {largest} bytes"
        );
        for e in &events {
            // Cut, not dropped: every field is there, its value marked.
            let fields = e["fields"].as_object().unwrap();
            let own = fields.keys().filter(|k| k.starts_with('f')).count();
            assert_eq!(own, 32, "{target}: every field kept");
            assert!(e["msg"].as_str().unwrap().ends_with(" bytes cut)"));
            let first = format!("f{}", "0".repeat(63));
            assert!(fields[&first].as_str().unwrap().ends_with(" bytes cut)"));
        }
        // The copy says what its manifest calls it; the original does not.
        let watcher = &events[0]["fields"]["watcher"];
        match target {
            "encoder" => assert!(watcher.is_null(), "{watcher}"),
            _ => assert_eq!(watcher, "encoder"),
        }
        let calls = calls(&all, target);
        let mut per_call = Vec::new();
        for (run, report) in &calls {
            let bytes = run.iter().map(json_len).sum::<usize>() + json_len(report);
            assert!(
                bytes <= max_call,
                "{target}: a call of {bytes} bytes of JSON"
            );
            assert_eq!(report["level"], "warn");
            let cut = report["fields"]["events_cut"].as_u64().unwrap();
            assert_eq!(run.len() as u64 + cut, 100, "{target}: every event counted");
            assert!(report["fields"]["bytes_cut"].as_u64().unwrap() > cut * 4000);
            let msg = report["msg"].as_str().unwrap();
            assert!(
                msg.contains(&format!("watcher {target} "))
                    && msg.contains("max_call_bytes")
                    && msg.contains(&format!("{cut} events")),
                "{msg}"
            );
            per_call.push(bytes);
        }
        // The measure, for the record: `--nocapture` shows it.
        eprintln!(
            "{target}: largest envelope {largest} bytes of JSON (cap {max_envelope}); \
             bytes per call {per_call:?} (cap {max_call})"
        );
    }
}

/// A renamed copy of a bundled watcher (`cp plugins/slowlog.wasm
/// evil.wasm`) publishes under its own file name, with its manifest's name
/// in `fields.watcher`: its events never pass for the real slowlog's.
#[test]
fn a_renamed_copy_publishes_under_its_file_name() {
    let watched = Redis::start(&["--slowlog-log-slower-than", "0"]);
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &["slowlog"], &[]);
    std::fs::copy(
        plugins_dir().join("slowlog.wasm"),
        plugins.join("evil.wasm"),
    )
    .unwrap();
    let config = bus_config(tmp.path(), &bus, "", "");
    let mut lookout = run_lookout(
        tmp.path(),
        &watched.url(),
        &plugins,
        &["--config", config.to_str().unwrap()],
    );
    lookout.wait_started();
    redis::cmd("SET")
        .arg("renamed:key")
        .arg(1)
        .exec(&mut watched.conn())
        .unwrap();
    let is_set = |e: &Value| e["fields"]["args"] == "SET renamed:key 1";
    let (real, copy) = wait_for("the SET from both", Duration::from_secs(30), || {
        let all = bus.stream(STREAM);
        let real = by_target(&all, "slowlog").into_iter().find(is_set)?;
        let copy = by_target(&all, "evil").into_iter().find(is_set)?;
        Some((real, copy))
    });
    let _ = stop(&mut lookout);
    assert_eq!(copy["fields"]["watcher"], "slowlog", "{copy}");
    assert!(real["fields"]["watcher"].is_null(), "{real}");
    assert_eq!(real["msg"], copy["msg"]);
}
