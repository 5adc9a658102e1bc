//! Hostile watchers beside a healthy one: the host stays up, the healthy
//! watcher keeps its cadence, faults are reported once per transition,
//! quarantine follows repeated failures, output and memory stay bounded.

use std::time::Duration;

use serde_json::Value;

use crate::support::{
    Redis, assert_counts_up, by_target, lookout_cmd, plugins_with, run_lookout, run_to_end,
    wait_for,
};

const HOSTILE: [&str; 10] = [
    "looper",
    "memory-bomb",
    "recurse",
    "panicker",
    "event-flood",
    "huge-string",
    "chatty",
    "file-open",
    "env-read",
    "slow-ticker",
];

fn notices(all: &[Value], watcher: &str, state: &str) -> Vec<Value> {
    by_target(all, "lookout")
        .into_iter()
        .filter(|e| e["fields"]["watcher"] == watcher && e["fields"]["state"] == state)
        .collect()
}

fn events(all: &[Value], target: &str) -> Vec<Value> {
    by_target(all, target)
}

/// Every hostile fixture runs beside `ticker` in one daemon; each is
/// contained and reported, and the ticker never misses a poll.
#[test]
fn hostile_watchers_are_contained() {
    let redis = Redis::start(&[]);
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[], &[&["ticker"][..], &HOSTILE[..]].concat());
    let config = tmp.path().join("lookout.toml");
    // memory-bomb's and huge-string's deadlines are long: their memory cap
    // must be what stops them, and filling 16 MiB on a loaded machine can
    // take more than 50 ms.
    std::fs::write(
        &config,
        format!(
            "poll_interval = 0.25\n\
             [publish]\nurl = '{}'\n\
             [limits]\nquarantine_after = 3\n\
             [limits.watchers.event-flood]\nmemory_mib = 128\ncall_deadline_ms = 5000\n\
             [limits.watchers.chatty]\ncall_deadline_ms = 5000\n\
             [limits.watchers.memory-bomb]\ncall_deadline_ms = 2000\n\
             [limits.watchers.huge-string]\ncall_deadline_ms = 2000\n\
             [watchers.event-flood]\ncount = 100000\n\
             [watchers.chatty]\nlines = 300\n",
            bus.url()
        ),
    )
    .unwrap();
    let args = ["--config", config.to_str().unwrap()];
    let mut lookout = run_lookout(tmp.path(), &redis.url(), &plugins, &args);
    lookout.wait_started();

    let stream = || bus.stream("logs:stream:redis");
    let all = wait_for(
        "the three crashers quarantined",
        Duration::from_secs(60),
        || {
            let all = stream();
            ["looper", "memory-bomb", "recurse", "huge-string"]
                .iter()
                .all(|w| !notices(&all, w, "quarantined").is_empty())
                .then_some(all)
        },
    );
    let rss = lookout.rss_kib();
    // Let a few more polls run after the quarantines.
    let ticks_then = events(&all, "ticker").len();
    let all = wait_for("more ticker events", Duration::from_secs(30), || {
        let all = stream();
        (events(&all, "ticker").len() >= ticks_then + 8).then_some(all)
    });

    for (w, reason) in [
        ("looper", "deadline"),
        ("memory-bomb", "memory"),
        ("recurse", "stack"),
        ("huge-string", "memory"),
    ] {
        let failed = notices(&all, w, "failed");
        let quarantined = notices(&all, w, "quarantined");
        let restarted = notices(&all, w, "restarted");
        assert_eq!(
            quarantined.len(),
            1,
            "{w} quarantined once: {quarantined:?}"
        );
        assert_eq!(
            failed.len(),
            2,
            "{w}: failures 1 and 2 reported, the 3rd quarantines"
        );
        assert_eq!(restarted.len(), 2, "{w}: restarted after each failure");
        for e in failed.iter().chain(&quarantined) {
            assert_eq!(e["level"], "error");
            let text = e["fields"]["reason"].as_str().unwrap().to_lowercase();
            assert!(text.contains(reason), "{w}: reason names {reason}: {text}");
        }
        assert!(events(&all, w).is_empty(), "{w} never produced an event");
    }

    // The panicker recovers after every restart: each transition reported.
    assert!(!notices(&all, "panicker", "failed").is_empty());
    assert!(!notices(&all, "panicker", "restarted").is_empty());
    let recovered = by_target(&all, "lookout")
        .into_iter()
        .filter(|e| {
            e["fields"]["watcher"] == "panicker" && e["msg"].as_str().unwrap().contains("recovered")
        })
        .count();
    assert!(recovered >= 1);

    // Output over the caps is cut and reported, never all published.
    let flood = events(&all, "event-flood");
    let cuts: Vec<Value> = by_target(&all, "lookout")
        .into_iter()
        .filter(|e| {
            e["fields"]["watcher"] == "event-flood" && e["fields"]["events_dropped"].is_u64()
        })
        .collect();
    assert!(!cuts.is_empty(), "the cut is reported");
    assert_eq!(cuts[0]["fields"]["events_dropped"], 100_000 - 100);
    // A read may land inside one poll's pipeline.
    assert!(
        flood.len() >= 100 * cuts.len() && flood.len() <= 100 * (cuts.len() + 1),
        "100 events kept per poll: {} events, {} cuts",
        flood.len(),
        cuts.len()
    );

    // No ambient authority.
    let file = &events(&all, "file-open")[0];
    for key in ["read_ok", "create_ok", "list_ok"] {
        assert_eq!(file["fields"][key], false, "{key}: {file}");
    }
    let env = &events(&all, "env-read")[0];
    assert_eq!(env["fields"]["vars"], 0);
    assert_eq!(env["fields"]["home_set"], false);

    // Stdout goes to the host log, tagged and rate-limited.
    let chatty_lines = lookout.stderr.matching("chatty line");
    assert!(
        !chatty_lines.is_empty(),
        "watcher stdout reaches the host log"
    );
    assert!(chatty_lines.iter().all(|l| l.contains("chatty")));
    assert!(!lookout.stderr.matching("lines dropped").is_empty() || chatty_lines.len() < 300);

    // The healthy ticker ran on every poll: n is contiguous from 1.
    let ns = assert_counts_up(&events(&all, "ticker"));

    // A watcher declaring "every 3 polls" runs on a third of them, counted
    // once both run (watchers join as each finishes loading).
    let first = |target: &str| events(&all, target)[0]["ts"].as_str().unwrap().to_owned();
    let since = first("slow-ticker").max(first("ticker"));
    let runs = |target: &str| {
        events(&all, target)
            .iter()
            .filter(|e| e["ts"].as_str().unwrap() >= since.as_str())
            .count()
    };
    let (slow, polls) = (runs("slow-ticker"), runs("ticker"));
    assert!(
        slow * 3 <= polls + 3 && slow * 3 + 6 >= polls,
        "{slow} slow-ticker runs vs {polls} ticker runs ({} in all)",
        ns.len()
    );

    assert!(rss < 400 * 1024, "host RSS bounded: {rss} KiB");
    assert!(lookout.alive());
    assert!(lookout.terminate().success());
}

/// SIGTERM ends the daemon with status 0 even while a watcher is looping.
#[test]
fn sigterm_while_a_watcher_loops() {
    let redis = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[], &["looper"]);
    let config = tmp.path().join("lookout.toml");
    std::fs::write(
        &config,
        "[limits.watchers.looper]\ncall_deadline_ms = 3000\n",
    )
    .unwrap();
    let args = [
        "--poll-interval",
        "0.1",
        "--config",
        config.to_str().unwrap(),
    ];
    let mut lookout = run_lookout(tmp.path(), &redis.url(), &plugins, &args);
    lookout.wait_started();
    assert!(lookout.terminate().success());
}

/// Reads an unsigned LEB128 number at `*at`, advancing past it.
fn leb(bytes: &[u8], at: &mut usize) -> u64 {
    let (mut value, mut shift) = (0u64, 0);
    loop {
        let byte = bytes[*at];
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return value;
        }
        shift += 7;
    }
}

fn put_leb(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The sections of a binary after its 8-byte header, as (id, payload).
fn sections(binary: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut at = 8;
    let mut out = Vec::new();
    while at < binary.len() {
        let id = binary[at];
        at += 1;
        let size = usize::try_from(leb(binary, &mut at)).unwrap();
        out.push((id, binary[at..at + size].to_vec()));
        at += size;
    }
    out
}

fn assemble(header: &[u8], sections: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = header[..8].to_vec();
    for (id, payload) in sections {
        out.push(*id);
        put_leb(&mut out, payload.len() as u64);
        out.extend_from_slice(payload);
    }
    out
}

/// A real fixture component (ticker, built from Rust) with the sections of
/// its main core module (the one defining a memory) changed by `edit`.
fn splice_main(edit: impl FnOnce(&mut Vec<(u8, Vec<u8>)>)) -> Vec<u8> {
    const CORE_MODULE: u8 = 1;
    const MEMORY: u8 = 5;
    let component = std::fs::read(crate::support::fixture("ticker")).unwrap();
    let mut top = sections(&component);
    let (_, main) = top
        .iter_mut()
        .find(|(sid, module)| *sid == CORE_MODULE && sections(module).iter().any(|s| s.0 == MEMORY))
        .expect("the component holds a core module with a memory");
    let mut inner = sections(main);
    edit(&mut inner);
    *main = assemble(main, &inner);
    assemble(&component, &top)
}

/// Appends `entries` to the vector that section `id` holds (creating the
/// section before the memory section if absent); returns the index of the
/// first new entry.
fn append(inner: &mut Vec<(u8, Vec<u8>)>, id: u8, entries: &[Vec<u8>]) -> u64 {
    if !inner.iter().any(|s| s.0 == id) {
        let at = inner.iter().position(|s| s.0 == 5).unwrap();
        inner.insert(at, (id, vec![0]));
    }
    let section = inner.iter_mut().find(|s| s.0 == id).unwrap();
    let mut at = 0;
    let before = leb(&section.1, &mut at);
    let mut payload = Vec::new();
    put_leb(&mut payload, before + entries.len() as u64);
    payload.extend_from_slice(&section.1[at..]);
    for entry in entries {
        payload.extend_from_slice(entry);
    }
    section.1 = payload;
    before
}

/// The ticker with `count` more entries `extra` in section `id` of its main
/// module (4: tables, 5: memories): the same watcher, declaring more than
/// the store allows.
fn spliced(id: u8, count: usize, extra: &[u8]) -> Vec<u8> {
    splice_main(|inner| {
        append(inner, id, &vec![extra.to_vec(); count]);
    })
}

fn put_sleb(out: &mut Vec<u8>, mut value: i64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        let done = (value == 0 && byte & 0x40 == 0) || (value == -1 && byte & 0x40 != 0);
        out.push(if done { byte } else { byte | 0x80 });
        if done {
            return;
        }
    }
}

/// How many functions a module imports, from its import section.
fn imported_functions(inner: &[(u8, Vec<u8>)]) -> u64 {
    let Some((_, imports)) = inner.iter().find(|s| s.0 == 2) else {
        return 0;
    };
    let mut at = 0;
    let mut functions = 0;
    let limits = |at: &mut usize| {
        let flags = imports[*at];
        *at += 1;
        leb(imports, at);
        if flags & 1 != 0 {
            leb(imports, at);
        }
    };
    for _ in 0..leb(imports, &mut at) {
        for _ in 0..2 {
            let len = usize::try_from(leb(imports, &mut at)).unwrap();
            at += len;
        }
        let kind = imports[at];
        at += 1;
        match kind {
            0x00 => {
                functions += 1;
                leb(imports, &mut at);
            }
            0x01 => {
                at += 1;
                limits(&mut at);
            }
            0x02 => limits(&mut at),
            0x03 => at += 2,
            0x04 => {
                at += 1;
                leb(imports, &mut at);
            }
            other => panic!("unexpected import kind {other}"),
        }
    }
    functions
}

/// The ticker whose main module, when instantiated, runs a start function
/// doing `table.grow` of table 0 by `elements` (and dropping the result).
fn grows_table(elements: i64) -> Vec<u8> {
    splice_main(|inner| {
        assert!(!inner.iter().any(|s| s.0 == 8), "no start function yet");
        let ty = append(inner, 1, &[vec![0x60, 0x00, 0x00]]);
        let mut entry = Vec::new();
        put_leb(&mut entry, ty);
        let index = imported_functions(inner) + append(inner, 3, &[entry]);
        // ref.null func; i32.const elements; table.grow 0; drop; end
        let mut body = vec![0x00, 0xd0, 0x70, 0x41];
        put_sleb(&mut body, elements);
        body.extend_from_slice(&[0xfc, 0x0f, 0x00, 0x1a, 0x0b]);
        let mut code = Vec::new();
        put_leb(&mut code, body.len() as u64);
        code.extend_from_slice(&body);
        append(inner, 10, &[code]);
        let mut start = Vec::new();
        put_leb(&mut start, index);
        let at = inner.iter().position(|s| matches!(s.0, 9..=12)).unwrap();
        inner.insert(at, (8, start));
    })
}

/// Watchers that declare or do what the store does not allow (a second
/// linear memory, a table of two million elements, 65 tables, `table.grow`
/// by two million elements) are refused when instantiated, with the
/// reason; nothing is allocated for them.
#[test]
fn extra_memories_and_large_tables_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut big_table = vec![0x70, 0x00];
    put_leb(&mut big_table, 2_000_000);
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "two-memories",
            spliced(5, 1, &[0x00, 0x01]),
            "cannot instantiate: resource limit exceeded: memory count too high",
        ),
        ("big-table", spliced(4, 1, &big_table), "table cap reached"),
        (
            "many-tables",
            spliced(4, 65, &[0x70, 0x00, 0x00]),
            "cannot instantiate: resource limit exceeded: table count too high",
        ),
        ("table-grow", grows_table(2_000_000), "table cap reached"),
    ];
    for (name, wasm, reason) in cases {
        let path = tmp.path().join(format!("{name}.wasm"));
        std::fs::write(&path, wasm).unwrap();
        let mut cmd = lookout_cmd(tmp.path());
        cmd.arg("check").arg(&path);
        let (status, out, err) = run_to_end(cmd, Duration::from_secs(60));
        assert!(!status.success(), "{name} refused: {out}");
        assert!(
            err.contains(&format!("{name}.wasm: ")) && err.contains(reason),
            "{name}: {err}"
        );
    }
    // The unchanged fixture loads, and so does one growing its table
    // within the cap: the refusals are the caps' doing.
    let small_grow = tmp.path().join("small-grow.wasm");
    std::fs::write(&small_grow, grows_table(1000)).unwrap();
    for wasm in [crate::support::fixture("ticker"), small_grow] {
        let mut cmd = lookout_cmd(tmp.path());
        cmd.arg("check").arg(&wasm);
        let (status, out, err) = run_to_end(cmd, Duration::from_secs(60));
        assert!(status.success() && out.contains("ok: configured"), "{err}");
    }
}

/// A watcher calling itself `lookout` (it would forge the host's own
/// events) or describing itself in 12 MB is refused at load, naming the
/// file and the fix, in a short message; so is a healthy watcher deployed
/// as `lookout.wasm` (its file name would be its events' target).
#[test]
fn forged_or_oversized_manifests_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("lookout.toml");
    // Room and time for the 12 MB string (a loaded machine may take
    // longer than the default deadline to build it), so the manifest
    // check is what refuses it.
    std::fs::write(
        &config,
        "[limits.watchers.long-manifest]\nmemory_mib = 64\ncall_deadline_ms = 10000\n",
    )
    .unwrap();
    for (fixture, says) in [
        ("impostor", "reserved for the host's own events"),
        ("long-manifest", "description \"dddd"),
    ] {
        let wasm = crate::support::fixture(fixture);
        let mut cmd = lookout_cmd(tmp.path());
        cmd.arg("check")
            .arg(&wasm)
            .arg("--lookout-config")
            .arg(&config);
        let (status, out, err) = run_to_end(cmd, Duration::from_secs(60));
        assert!(!status.success(), "{fixture} refused: {out}");
        assert!(
            err.contains(&format!("{fixture}.wasm: manifest refused"))
                && err.contains(says)
                && err.contains("fix what the watcher's describe() returns"),
            "{fixture}: {err}"
        );
        assert!(
            err.len() < 1024,
            "{fixture}: a short message: {} bytes",
            err.len()
        );
    }
    let renamed = tmp.path().join("lookout.wasm");
    std::fs::copy(crate::support::fixture("ticker"), &renamed).unwrap();
    let mut cmd = lookout_cmd(tmp.path());
    cmd.arg("check").arg(&renamed);
    let (status, out, err) = run_to_end(cmd, Duration::from_secs(60));
    assert!(!status.success(), "lookout.wasm refused: {out}");
    assert!(
        err.contains("lookout.wasm: the file name `lookout` is reserved for the host's own events")
            && err.contains("rename the file"),
        "{err}"
    );
}

/// Dropped into a running daemon, a watcher calling itself `lookout`, a
/// ticker deployed as `lookout.wasm` and one declaring a second memory are
/// refused with their reasons; nothing is published in the host's name by
/// a watcher, and the ticker beside them keeps its every-poll cadence.
#[test]
fn refused_watchers_added_at_run_time_are_contained() {
    let redis = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[], &["ticker"]);
    let mut lookout = run_lookout(tmp.path(), &redis.url(), &plugins, &[]);
    lookout.wait_started();
    let stream = || redis.stream("logs:stream:redis");
    wait_for("a first tick", Duration::from_secs(30), || {
        (!events(&stream(), "ticker").is_empty()).then_some(())
    });
    std::fs::copy(
        crate::support::fixture("impostor"),
        plugins.join("impostor.wasm"),
    )
    .unwrap();
    std::fs::copy(
        crate::support::fixture("ticker"),
        plugins.join("lookout.wasm"),
    )
    .unwrap();
    std::fs::write(
        plugins.join("two-memories.wasm"),
        spliced(5, 1, &[0x00, 0x01]),
    )
    .unwrap();
    let refusals = [
        "impostor.wasm: manifest refused: the name `lookout` is reserved",
        "lookout.wasm: the file name `lookout` is reserved",
        "memory count too high",
    ];
    wait_for("the refusals logged", Duration::from_secs(60), || {
        refusals
            .iter()
            .all(|r| !lookout.stderr.matching(r).is_empty())
            .then_some(())
    });
    let ticks_then = events(&stream(), "ticker").len();
    let all = wait_for("more ticks", Duration::from_secs(30), || {
        let all = stream();
        (events(&all, "ticker").len() >= ticks_then + 5).then_some(all)
    });
    assert_counts_up(&events(&all, "ticker"));
    let forged: Vec<&Value> = all
        .iter()
        .filter(|e| {
            let msg = e["msg"].as_str().unwrap_or_default();
            msg.contains("forged") || (e["target"] == "lookout" && msg.starts_with("tick "))
        })
        .collect();
    assert!(forged.is_empty(), "{forged:?}");
    assert!(lookout.alive());
    assert!(lookout.terminate().success());
}

/// A 1 MB `configure` error is cut to a few hundred bytes before it is
/// printed.
#[test]
fn long_configure_errors_are_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = lookout_cmd(tmp.path());
    cmd.arg("check").arg(crate::support::fixture("long-error"));
    let (status, _, err) = run_to_end(cmd, Duration::from_secs(60));
    assert!(!status.success());
    assert!(
        err.contains("long-error.wasm: watcher long-error rejected its settings: refused: eee")
            && err.contains("bytes cut)"),
        "{err}"
    );
    assert!(err.len() < 1024, "{} bytes", err.len());
}
