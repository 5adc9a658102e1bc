//! client-buffers in the daemon against a real redis-server: a pub/sub
//! subscriber with a small socket receive buffer stops reading while large
//! messages are published to its channel; its output buffer (CLIENT LIST
//! `omem`) grows over the pubsub limit and the watcher warns once, then
//! resolves once when it reads again, and once when it goes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    Redis, daemon_with_plugins, events_of, plugins_with, polls_pass, wait_event, wait_for,
};

const WATCHER: &str = "client-buffers";
const CHANNEL: &str = "news";
/// The watcher's pubsub limit in this test.
const LIMIT: u64 = 1 << 20;

/// A connection to `redis` whose socket receive buffer is 4 KiB (set before
/// connecting, so the window Redis may fill stays small).
fn small_buffer_connection(redis: &Redis) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], redis.port));
        socket.connect(addr).await.unwrap().into_std().unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

/// Sends `command` (inline) and reads until the reply is `expected` bytes.
fn ask(stream: &mut TcpStream, command: &str, expected: usize) -> String {
    stream
        .write_all(format!("{command}\r\n").as_bytes())
        .unwrap();
    let mut reply = vec![0; expected];
    stream.read_exact(&mut reply).unwrap();
    String::from_utf8(reply).unwrap()
}

/// Subscribes `stream` to [`CHANNEL`] and returns its client id; the caller
/// then stops reading.
fn subscribe(stream: &mut TcpStream) -> u64 {
    stream.write_all(b"CLIENT ID\r\n").unwrap();
    let mut id = Vec::new();
    let mut byte = [0];
    while !id.ends_with(b"\r\n") {
        stream.read_exact(&mut byte).unwrap();
        id.push(byte[0]);
    }
    let id = String::from_utf8(id).unwrap();
    let confirmation = format!(
        "*3\r\n$9\r\nsubscribe\r\n${}\r\n{CHANNEL}\r\n:1\r\n",
        CHANNEL.len()
    );
    let got = ask(stream, &format!("SUBSCRIBE {CHANNEL}"), confirmation.len());
    assert_eq!(got, confirmation);
    id.trim_start_matches(':').trim_end().parse().unwrap()
}

/// Field `field` of client `id` in `CLIENT LIST ID`, `None` once it is gone.
fn client_field(redis: &Redis, id: u64, field: &str) -> Option<u64> {
    let line: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("ID")
        .arg(id)
        .query(&mut redis.conn())
        .unwrap();
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{field}=")))
        .map(|v| v.parse().unwrap())
}

/// Publishes 64 KiB messages on [`CHANNEL`] until subscriber `id`'s output
/// buffer holds twice [`LIMIT`].
fn stall(redis: &Redis, id: u64) -> u64 {
    let payload = "x".repeat(64 * 1024);
    let mut publisher = redis.conn();
    wait_for(
        "the subscriber's output buffer to grow",
        Duration::from_secs(30),
        || {
            let omem = client_field(redis, id, "omem").expect("the subscriber is connected");
            if omem > 2 * LIMIT {
                return Some(omem);
            }
            let mut batch = redis::pipe();
            for _ in 0..16 {
                batch.cmd("PUBLISH").arg(CHANNEL).arg(&payload);
            }
            batch.exec(&mut publisher).unwrap();
            None
        },
    )
}

/// Reads what Redis sends `stream` until subscriber `id`'s output buffer is
/// empty.
fn drain(redis: &Redis, stream: &mut TcpStream, id: u64) {
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = vec![0; 1 << 16];
    wait_for(
        "the subscriber's output buffer to empty",
        Duration::from_secs(30),
        || {
            while stream.read(&mut buf).is_ok_and(|n| n > 0) {}
            (client_field(redis, id, "omem") == Some(0)).then_some(())
        },
    );
}

/// The watcher's event about client `id` whose condition is in `state`.
fn wait_condition(bus: &Redis, id: u64, state: &str, what: &str) -> Value {
    wait_event(bus, WATCHER, what, |e| {
        e["fields"]["client_id"] == id && e["condition"]["state"] == state
    })
}

/// A subscriber that stops reading: its output buffer grows over the pubsub
/// limit and client-buffers warns once (pubsub class, omem, the limit, the
/// condition `client-output-buffer` keyed by id and address); reading again
/// resolves it once; stalled again and closed, the client's going resolves
/// it once more. Every condition the watcher fired in the run is about the
/// subscriber.
#[test]
fn a_subscriber_that_stops_reading_warns_once_and_resolves_once() {
    let redis = Redis::start(&[]);
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[WATCHER], &[]);
    let mut lookout = daemon_with_plugins(
        tmp.path(),
        &redis,
        &bus,
        &plugins,
        &format!("[watchers.{WATCHER}]\nmax_omem_pubsub = {LIMIT}\nfor_polls = 2\n"),
    );
    let mut subscriber = small_buffer_connection(&redis);
    let id = subscribe(&mut subscriber);
    let key = format!("id={id} addr={}", subscriber.local_addr().unwrap());

    let omem = stall(&redis, id);
    println!("subscriber {key}: output buffer {omem} bytes after publishing");
    let firing = wait_condition(&bus, id, "firing", "the subscriber's warning");
    assert_eq!(firing["level"], "warn", "{firing}");
    assert_eq!(firing["condition"]["kind"], "client-output-buffer");
    assert_eq!(firing["condition"]["key"], key.as_str());
    assert_eq!(firing["fields"]["class"], "pubsub");
    assert_eq!(firing["fields"]["measure"], "omem");
    assert_eq!(firing["fields"]["limit"], LIMIT);
    assert!(
        firing["fields"]["bytes"].as_u64().unwrap() > LIMIT,
        "{firing}"
    );
    assert!(
        firing["msg"].as_str().unwrap().starts_with(&format!(
            "pubsub client {} (id {id}",
            subscriber.local_addr().unwrap()
        )),
        "{firing}"
    );

    drain(&redis, &mut subscriber, id);
    let back = wait_condition(&bus, id, "resolved", "the subscriber back under");
    assert_eq!(back["level"], "info");
    assert_eq!(back["condition"]["key"], key.as_str());
    assert_eq!(
        back["condition"]["fingerprint"],
        firing["condition"]["fingerprint"]
    );
    assert!(back["fields"]["bytes"].as_u64().unwrap() <= LIMIT, "{back}");

    stall(&redis, id);
    wait_for("the second warning", Duration::from_secs(30), || {
        let firing: Vec<_> = events_of(&bus, WATCHER)
            .into_iter()
            .filter(|e| e["condition"]["state"] == "firing")
            .collect();
        (firing.len() == 2).then_some(())
    });
    drop(subscriber);
    wait_for("the subscriber to go", Duration::from_secs(30), || {
        client_field(&redis, id, "id").is_none().then_some(())
    });
    let gone = wait_event(&bus, WATCHER, "the subscriber gone", |e| {
        e["condition"]["state"] == "resolved"
            && e["msg"].as_str().is_some_and(|m| m.contains("gone"))
    });
    assert_eq!(gone["condition"]["key"], key.as_str());
    assert_eq!(
        gone["msg"],
        format!(
            "client {} (id {id}) gone while its output buffer was over",
            key.rsplit_once("addr=").unwrap().1
        )
    );

    polls_pass(&redis, 3);
    let events = events_of(&bus, WATCHER);
    let states: Vec<&str> = events
        .iter()
        .map(|e| e["condition"]["state"].as_str().unwrap_or("none"))
        .collect();
    assert_eq!(
        states,
        ["firing", "resolved", "firing", "resolved"],
        "one warning and one resolution each time: {events:#?}"
    );
    assert!(
        events.iter().all(|e| e["condition"]["key"] == key.as_str()),
        "{events:#?}"
    );
    assert!(lookout.terminate().success());
}
