//! A fake Redis speaking just enough RESP for what no real server will do:
//! announce strangers in CLUSTER SHARDS, answer with a megabyte error,
//! count who dialled it. Blocking `std::net` threads, one per connection;
//! stopped (listener closed, connections shut) on drop.
//!
//! Every command is recorded. A handler answers first; when it returns
//! `None` the defaults do: AUTH, SELECT, CLIENT SETNAME/SETINFO and QUIT
//! get `+OK`, PING `+PONG`, ECHO its argument, CLIENT INFO a line with the
//! connection's real addresses, CLIENT ID an integer, anything else
//! (HELLO included, so a client falls back to RESP2) `-ERR unknown
//! command`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Answers one command (its arguments, raw) with the raw RESP bytes of
/// the reply, or `None` for the default reply.
pub type Handler = dyn Fn(&[Vec<u8>]) -> Option<Vec<u8>> + Send + Sync;

/// Most bytes of one argument, and of an inline command line.
const MAX_ARG: usize = 64 << 20;
/// Most arguments of one command.
const MAX_ARGS: usize = 1 << 20;
/// Most bytes of a `*N` or `$N` header line.
const MAX_HEADER: usize = 32;
/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 64 * 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Shared {
    handler: Box<Handler>,
    stop: AtomicBool,
    connections: AtomicUsize,
    next_id: AtomicU64,
    commands: Mutex<Vec<Vec<String>>>,
    /// A handle on each open connection, to shut it down on drop.
    open: Mutex<HashMap<u64, TcpStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// A fake Redis listening on `IP:PORT` (a free port), stopped on drop.
pub struct FakeRedis {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FakeRedis {
    /// Listens on a free port of `bind_ip` (`127.0.0.1`, `127.0.0.2`...:
    /// all of 127/8 is loopback on Linux), answering with `handler` first.
    pub fn start(
        bind_ip: &str,
        handler: impl Fn(&[Vec<u8>]) -> Option<Vec<u8>> + Send + Sync + 'static,
    ) -> Self {
        Self::start_with(bind_ip, |_port| handler)
    }

    /// [`FakeRedis::start`] with a handler built once the port is known
    /// (for a server that announces itself).
    pub fn start_with<H>(bind_ip: &str, build: impl FnOnce(u16) -> H) -> Self
    where
        H: Fn(&[Vec<u8>]) -> Option<Vec<u8>> + Send + Sync + 'static,
    {
        let listener = TcpListener::bind((bind_ip, 0))
            .unwrap_or_else(|e| panic!("fake redis: binding {bind_ip}:0: {e}"));
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            handler: Box::new(build(addr.port())),
            stop: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            commands: Mutex::new(Vec::new()),
            open: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
        });
        let accepting = shared.clone();
        let accept = std::thread::Builder::new()
            .name(format!("fake-redis {addr}"))
            .spawn(move || accept_loop(&listener, &accepting))
            .unwrap();
        Self {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Its IP address, as text.
    pub fn ip(&self) -> String {
        self.addr.ip().to_string()
    }

    /// `IP:PORT`.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// `redis://IP:PORT`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Every command received so far, in order of arrival, each argument
    /// as text (invalid UTF-8 replaced).
    pub fn commands(&self) -> Vec<Vec<String>> {
        lock(&self.shared.commands).clone()
    }

    /// How many commands received so far start with `words` (compared
    /// without case), e.g. `["CLUSTER", "SHARDS"]`.
    pub fn count(&self, words: &[&str]) -> usize {
        lock(&self.shared.commands)
            .iter()
            .filter(|c| {
                c.len() >= words.len()
                    && c.iter()
                        .zip(words)
                        .all(|(have, want)| have.eq_ignore_ascii_case(want))
            })
            .count()
    }
}

impl Drop for FakeRedis {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which sees the stop and closes the
        // listener.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        // Every connection thread is registered now; unblock their reads
        // and writes.
        for stream in lock(&self.shared.open).values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        let threads: Vec<JoinHandle<()>> = lock(&self.shared.threads).drain(..).collect();
        for thread in threads {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(_) => {
                // Out of descriptors or the like: back off a little
                // rather than spin.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
        if let Ok(handle) = stream.try_clone() {
            lock(&shared.open).insert(id, handle);
        }
        let serving = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("fake-redis conn {id}"))
            .spawn(move || {
                serve(stream, id, &serving);
                lock(&serving.open).remove(&id);
            });
        match spawned {
            Ok(thread) => {
                let mut threads = lock(&shared.threads);
                threads.retain(|t| !t.is_finished());
                threads.push(thread);
            }
            Err(_) => {
                if let Some(s) = lock(&shared.open).remove(&id) {
                    let _ = s.shutdown(Shutdown::Both);
                }
            }
        }
    }
}

/// What the defaults remember of one connection.
struct ConnState {
    id: u64,
    peer: String,
    local: String,
    name: String,
}

fn serve(mut stream: TcpStream, id: u64, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let mut state = ConnState {
        id,
        peer: stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        local: stream
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        name: String::new(),
    };
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        pending.extend_from_slice(&chunk[..n]);
        let mut out = Vec::new();
        let mut used = 0;
        loop {
            match parse_command(&pending[used..]) {
                Ok(Some((args, len))) => {
                    used += len;
                    out.extend(answer(shared, &mut state, &args));
                }
                Ok(None) => break,
                Err(why) => {
                    out.extend(error(&format!("ERR Protocol error: {why}")));
                    let _ = stream.write_all(&out);
                    let _ = stream.shutdown(Shutdown::Both);
                    return;
                }
            }
        }
        pending.drain(..used);
        if !out.is_empty() && stream.write_all(&out).is_err() {
            return;
        }
    }
}

/// Records the command and answers it; an empty command gets no reply.
fn answer(shared: &Shared, state: &mut ConnState, args: &[Vec<u8>]) -> Vec<u8> {
    lock(&shared.commands).push(
        args.iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    );
    if args.is_empty() {
        return Vec::new();
    }
    match std::panic::catch_unwind(AssertUnwindSafe(|| (shared.handler)(args))) {
        Ok(Some(reply)) => reply,
        Ok(None) => default_reply(state, args),
        Err(_) => error("ERR the fake's handler panicked"),
    }
}

/// Upper-case text of an argument.
fn word(arg: Option<&Vec<u8>>) -> String {
    arg.map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
        .unwrap_or_default()
}

fn default_reply(state: &mut ConnState, args: &[Vec<u8>]) -> Vec<u8> {
    let (name, sub) = (word(args.first()), word(args.get(1)));
    match (name.as_str(), sub.as_str()) {
        ("AUTH" | "SELECT" | "QUIT", _) => simple("OK"),
        ("PING", _) => args.get(1).map_or_else(|| simple("PONG"), bulk),
        ("ECHO", _) if args.len() == 2 => bulk(&args[1]),
        ("CLIENT", "SETNAME") if args.len() == 3 => {
            state.name = String::from_utf8_lossy(&args[2]).into_owned();
            simple("OK")
        }
        ("CLIENT", "INFO") => bulk(format!(
            "id={} addr={} laddr={} fd=8 name={} age=0 idle=0 flags=N db=0 sub=0 psub=0 \
             multi=-1 cmd=client|info user=default\n",
            state.id, state.peer, state.local, state.name
        )),
        ("CLIENT", "ID") => integer(i64::try_from(state.id).unwrap_or(i64::MAX)),
        ("CLIENT", _) => simple("OK"),
        _ => {
            let shown: String = String::from_utf8_lossy(&args[0])
                .chars()
                .filter(|c| !c.is_control())
                .take(128)
                .collect();
            error(&format!("ERR unknown command '{shown}'"))
        }
    }
}

/// A command's arguments and how many bytes it took.
pub type Parsed = (Vec<Vec<u8>>, usize);

/// One command at the start of `buf`: its arguments and how many bytes it
/// took; `None` while incomplete. RESP arrays of bulk strings, or an
/// inline command line (`PING\r\n`).
///
/// # Errors
/// Bytes no Redis client sends; the text says what.
pub fn parse_command(buf: &[u8]) -> Result<Option<Parsed>, String> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first != b'*' {
        let Some(end) = buf.iter().position(|b| *b == b'\n') else {
            if buf.len() > MAX_ARG {
                return Err("too big inline request".to_owned());
            }
            return Ok(None);
        };
        let line = buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]);
        let args = line
            .split(u8::is_ascii_whitespace)
            .filter(|w| !w.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        return Ok(Some((args, end + 1)));
    }
    let Some((count, mut at)) = header(buf, 0, b'*')? else {
        return Ok(None);
    };
    if count <= 0 {
        // `*0` and `*-1` are no command at all.
        return Ok(Some((Vec::new(), at)));
    }
    let count = usize::try_from(count).map_err(|_| "bad multibulk length".to_owned())?;
    if count > MAX_ARGS {
        return Err(format!("invalid multibulk length {count}"));
    }
    let mut args = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        if at >= buf.len() {
            return Ok(None);
        }
        let Some((len, data)) = header(buf, at, b'$')? else {
            return Ok(None);
        };
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l <= MAX_ARG)
            .ok_or_else(|| format!("invalid bulk length {len}"))?;
        let end = data + len;
        if buf.len() < end + 2 {
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err("bulk string not followed by CRLF".to_owned());
        }
        args.push(buf[data..end].to_vec());
        at = end + 2;
    }
    Ok(Some((args, at)))
}

/// The number of a `<kind>N\r\n` header at `buf[at..]` and where the data
/// after it starts; `None` while incomplete.
fn header(buf: &[u8], at: usize, kind: u8) -> Result<Option<(i64, usize)>, String> {
    let rest = &buf[at..];
    if rest[0] != kind {
        return Err(format!(
            "expected '{}', got '{}'",
            char::from(kind),
            rest[0].escape_ascii()
        ));
    }
    let Some(cr) = rest.windows(2).position(|w| w == b"\r\n") else {
        if rest.len() > MAX_HEADER {
            return Err("header line too long".to_owned());
        }
        return Ok(None);
    };
    let digits = std::str::from_utf8(&rest[1..cr]).map_err(|_| "bad header".to_owned())?;
    let n = digits
        .parse::<i64>()
        .map_err(|_| format!("bad length `{}`", digits.escape_debug()))?;
    Ok(Some((n, at + cr + 2)))
}

/// `+text\r\n`.
pub fn simple(text: &str) -> Vec<u8> {
    format!("+{text}\r\n").into_bytes()
}

/// `-text\r\n` (`text` starts with the code: `ERR ...`).
pub fn error(text: &str) -> Vec<u8> {
    format!("-{text}\r\n").into_bytes()
}

/// `$len\r\nbytes\r\n`.
pub fn bulk(bytes: impl AsRef<[u8]>) -> Vec<u8> {
    let bytes = bytes.as_ref();
    let mut out = format!("${}\r\n", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
    out
}

/// The null bulk string, `$-1\r\n`.
pub fn null() -> Vec<u8> {
    b"$-1\r\n".to_vec()
}

/// `:n\r\n`.
pub fn integer(n: i64) -> Vec<u8> {
    format!(":{n}\r\n").into_bytes()
}

/// `*count\r\n` then each item (already encoded).
pub fn array(items: impl IntoIterator<Item = Vec<u8>>) -> Vec<u8> {
    let items: Vec<Vec<u8>> = items.into_iter().collect();
    let mut out = format!("*{}\r\n", items.len()).into_bytes();
    for item in items {
        out.extend(item);
    }
    out
}

/// A node as CLUSTER SHARDS lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardNode {
    /// 40 hex digits.
    pub id: String,
    /// Its port (0 for a TLS-only node).
    pub port: u16,
    /// Its TLS port, listed when set.
    pub tls_port: Option<u16>,
    /// `ip`.
    pub ip: String,
    /// `endpoint`: what clients are told to use.
    pub endpoint: String,
    /// `hostname`.
    pub hostname: String,
    /// `master` or `replica`.
    pub role: String,
    /// `online`, `loading`, `fail`...
    pub health: String,
}

impl ShardNode {
    /// A healthy master at `ip:port` (also its endpoint).
    pub fn master(ip: &str, port: u16) -> Self {
        Self::new(ip, port, "master")
    }

    /// A healthy replica at `ip:port` (also its endpoint).
    pub fn replica(ip: &str, port: u16) -> Self {
        Self::new(ip, port, "replica")
    }

    fn new(ip: &str, port: u16, role: &str) -> Self {
        Self {
            id: node_id(&format!("{ip}:{port}")),
            port,
            tls_port: None,
            ip: ip.to_owned(),
            endpoint: ip.to_owned(),
            hostname: String::new(),
            role: role.to_owned(),
            health: "online".to_owned(),
        }
    }

    /// The same node announcing `ip` and `endpoint` instead.
    pub fn at(mut self, ip: &str, endpoint: &str) -> Self {
        ip.clone_into(&mut self.ip);
        endpoint.clone_into(&mut self.endpoint);
        self
    }

    /// The same node with a `tls-port`.
    pub fn with_tls_port(mut self, tls_port: u16) -> Self {
        self.tls_port = Some(tls_port);
        self
    }

    /// RESP2: a flat key/value array, as Redis 7 sends it.
    fn encode(&self) -> Vec<u8> {
        let mut items = vec![bulk("id"), bulk(&self.id), bulk("port")];
        items.push(integer(i64::from(self.port)));
        if let Some(tls) = self.tls_port {
            items.extend([bulk("tls-port"), integer(i64::from(tls))]);
        }
        items.extend([
            bulk("ip"),
            bulk(&self.ip),
            bulk("endpoint"),
            bulk(&self.endpoint),
            bulk("hostname"),
            bulk(&self.hostname),
            bulk("role"),
            bulk(&self.role),
            bulk("replication-offset"),
            integer(0),
            bulk("health"),
            bulk(&self.health),
        ]);
        array(items)
    }
}

/// 40 hex digits derived from `seed` (FNV-1a, three rounds).
fn node_id(seed: &str) -> String {
    let fnv = |salt: u64| {
        seed.bytes().fold(0xcbf2_9ce4_8422_2325 ^ salt, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    };
    format!("{:016x}{:016x}{:08x}", fnv(1), fnv(2), fnv(3) & 0xffff_ffff)
}

/// One shard of CLUSTER SHARDS: its slot ranges and nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shard {
    /// Slot ranges, first and last included.
    pub slots: Vec<(u16, u16)>,
    /// Its master and replicas.
    pub nodes: Vec<ShardNode>,
}

impl Shard {
    /// A shard of `nodes` holding no slots.
    pub fn of(nodes: Vec<ShardNode>) -> Self {
        Self {
            slots: Vec::new(),
            nodes,
        }
    }
}

/// A CLUSTER SHARDS reply (RESP2): an array of shards, each a flat array
/// `slots [first last ...] nodes [node ...]`.
pub fn cluster_shards(shards: &[Shard]) -> Vec<u8> {
    array(shards.iter().map(|shard| {
        let slots = array(
            shard
                .slots
                .iter()
                .flat_map(|(a, b)| [integer(i64::from(*a)), integer(i64::from(*b))]),
        );
        let nodes = array(shard.nodes.iter().map(ShardNode::encode));
        array([bulk("slots"), slots, bulk("nodes"), nodes])
    }))
}

/// A CLUSTER NODES reply (a bulk string, one line per node) listing the
/// same nodes.
pub fn cluster_nodes(shards: &[Shard]) -> Vec<u8> {
    let mut text = String::new();
    for shard in shards {
        let master = shard.nodes.iter().find(|n| n.role == "master");
        let slots: Vec<String> = shard
            .slots
            .iter()
            .map(|(a, b)| format!("{a}-{b}"))
            .collect();
        for node in &shard.nodes {
            let (flags, of) = if node.role == "master" {
                ("master".to_owned(), "-".to_owned())
            } else {
                (
                    "slave".to_owned(),
                    master.map_or("-".to_owned(), |m| m.id.clone()),
                )
            };
            let flags = if matches!(node.health.as_str(), "fail" | "failed") {
                format!("{flags},fail")
            } else {
                flags
            };
            let bus = u32::from(node.port) + 10_000;
            let mut line = format!(
                "{} {}:{}@{bus} {flags} {of} 0 0 1 connected",
                node.id, node.ip, node.port
            );
            if node.role == "master" {
                for s in &slots {
                    line.push(' ');
                    line.push_str(s);
                }
            }
            text.push_str(&line);
            text.push('\n');
        }
    }
    bulk(text)
}

/// The fake itself, through a real Redis client and raw bytes.
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    use super::*;

    fn raw(fake: &FakeRedis) -> TcpStream {
        let s = TcpStream::connect(fake.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    /// Reads until `want` bytes arrived.
    fn read_exactly(s: &mut TcpStream, want: usize) -> Vec<u8> {
        let mut got = vec![0u8; want];
        s.read_exact(&mut got).unwrap();
        got
    }

    /// A redis-rs client authenticates, selects a database, names itself
    /// and pipelines; the fake answers with the defaults and the
    /// handler's replies, records every command and counts connections.
    #[test]
    fn a_real_client_gets_default_and_handled_replies() {
        let fake = FakeRedis::start("127.0.0.1", |args| {
            (word(args.first()) == "GET").then(|| bulk(b"v\x00\xff"))
        });
        let client =
            redis::Client::open(format!("redis://u:pw@127.0.0.1:{}/3", fake.port())).unwrap();
        let mut conn = client
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap();
        let pong: String = redis::cmd("PING").query(&mut conn).unwrap();
        assert_eq!(pong, "PONG");
        let (got, info, echoed): (Vec<u8>, String, String) = redis::pipe()
            .cmd("GET")
            .arg("k")
            .cmd("CLIENT")
            .arg("INFO")
            .cmd("ECHO")
            .arg("hi")
            .query(&mut conn)
            .unwrap();
        assert_eq!(got, b"v\x00\xff");
        assert!(info.contains(&format!("laddr={}", fake.addr())), "{info}");
        assert_eq!(echoed, "hi");
        let e = redis::cmd("NOPE").exec(&mut conn).unwrap_err();
        assert!(e.to_string().contains("unknown command"), "{e}");
        let commands = fake.commands();
        assert_eq!(commands[0], ["AUTH", "u", "pw"], "{commands:?}");
        assert_eq!(commands[1], ["SELECT", "3"], "{commands:?}");
        assert_eq!(fake.count(&["get"]), 1);
        assert_eq!(fake.count(&["CLIENT", "INFO"]), 1);
        assert_eq!(fake.connections(), 1);
        drop(conn);
        let _second = raw(&fake);
        wait_connections(&fake, 2);
    }

    fn wait_connections(fake: &FakeRedis, n: usize) {
        crate::support::wait_for("the fake to accept", Duration::from_secs(5), || {
            (fake.connections() == n).then_some(())
        });
    }

    /// Commands split across reads, several in one read, and inline
    /// commands are all answered, in order.
    #[test]
    fn partial_and_pipelined_commands() {
        let fake = FakeRedis::start("127.0.0.2", |_| None);
        assert_eq!(fake.ip(), "127.0.0.2");
        let mut s = raw(&fake);
        let two = b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n";
        for b in two {
            s.write_all(&[*b]).unwrap();
        }
        let want = b"+PONG\r\n$5\r\nhello\r\n";
        assert_eq!(read_exactly(&mut s, want.len()), want);
        s.write_all(b"PING\r\n*0\r\n*1\r\n$4\r\nQUIT\r\n").unwrap();
        let want = b"+PONG\r\n+OK\r\n";
        assert_eq!(read_exactly(&mut s, want.len()), want);
        // A bad length is refused and the connection closed.
        s.write_all(b"*1\r\n$x\r\n").unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        assert!(rest.starts_with(b"-ERR Protocol error"), "{rest:?}");
        assert_eq!(fake.count(&["PING"]), 2, "{:?}", fake.commands());
    }

    /// Dropped, the fake closes its listener and its open connections.
    #[test]
    fn drop_closes_everything() {
        let fake = FakeRedis::start("127.0.0.1", |_| None);
        let addr = fake.addr();
        let mut s = raw(&fake);
        s.write_all(b"PING\r\n").unwrap();
        assert_eq!(read_exactly(&mut s, 7), b"+PONG\r\n");
        drop(fake);
        let mut rest = Vec::new();
        assert_eq!(s.read_to_end(&mut rest).unwrap_or(0), 0);
        assert!(TcpStream::connect(addr).is_err());
    }

    /// The encoders and the CLUSTER SHARDS and CLUSTER NODES builders give
    /// what a client parses back.
    #[test]
    fn encoders_and_cluster_replies() {
        let shards = [Shard {
            slots: vec![(0, 16383)],
            nodes: vec![
                ShardNode::master("127.0.0.1", 7000),
                ShardNode::replica("10.0.0.2", 7001)
                    .at("10.0.0.2", "r.example")
                    .with_tls_port(7443),
            ],
        }];
        let shards_reply = cluster_shards(&shards);
        let nodes_reply = cluster_nodes(&shards);
        let fake = FakeRedis::start("127.0.0.1", move |args| {
            Some(match word(args.get(1)).as_str() {
                "SHARDS" => shards_reply.clone(),
                "NODES" => nodes_reply.clone(),
                "NULL" => null(),
                _ => array([integer(-5), simple("s"), bulk("b")]),
            })
        });
        let client = redis::Client::open(fake.url()).unwrap();
        let mut conn = client
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap();
        let shards: redis::Value = redis::cmd("CLUSTER")
            .arg("SHARDS")
            .query(&mut conn)
            .unwrap();
        let text = format!("{shards:?}");
        for needle in ["16383", "7443", "r.example", "replica", "online"] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(&mut conn).unwrap();
        let lines: Vec<&str> = nodes.lines().collect();
        assert_eq!(lines.len(), 2, "{nodes}");
        assert!(
            lines[0].contains("127.0.0.1:7000@17000 master - ") && lines[0].ends_with(" 0-16383")
        );
        assert!(lines[1].contains(" slave ") && lines[1].split(' ').next().unwrap().len() == 40);
        let null: Option<String> = redis::cmd("X").arg("NULL").query(&mut conn).unwrap();
        assert_eq!(null, None);
        let mixed: redis::Value = redis::cmd("X").query(&mut conn).unwrap();
        assert!(format!("{mixed:?}").contains("-5"), "{mixed:?}");
    }
}
