//! The `client-buffers` watcher: clients whose output buffer (CLIENT LIST
//! `omem`) is over the limit for their class, or whose query buffer
//! (`qbuf`) or total memory (`tot-mem`) is over its limit.
//!
//! Output buffers are a classic cause of Redis outages: a pub/sub
//! subscriber or a replica that stops reading makes Redis keep every reply
//! for it. The classes are those of Redis's `client-output-buffer-limit`:
//! a replica (flag `S`, not a monitor `O`), a pub/sub client (flag `P`, or
//! subscribed to a channel, pattern or shard channel), else normal.
//!
//! Each measure is a condition per client (kinds `client-output-buffer`,
//! `client-query-buffer`, `client-memory`; key `id=ID addr=ADDR`): one
//! warn when it has been over for `for_polls` polls in a row, one info
//! when it is back under or the client is gone. A CLIENT LIST the host
//! cannot read is said once (`client-list-unavailable`), and once when it
//! is readable again.

use lookout_watcher::format::bytes;
use lookout_watcher::{
    Client, Conditions, ConfigKey, Event, Level, Manifest, Needs, Probe, Setting, Settings,
    Snapshot, Transition, Watch, invalid,
};

lookout_watcher::export!(ClientBuffers);

/// The watcher's name, the envelopes' `target`.
pub const NAME: &str = "client-buffers";
/// The client classes of `client-output-buffer-limit`.
pub const CLASSES: [&str; 3] = ["normal", "replica", "pubsub"];
/// Each measure: its CLIENT LIST field, condition kind and words.
pub const MEASURES: [(&str, &str, &str); 3] = [
    ("omem", "client-output-buffer", "output buffer"),
    ("qbuf", "client-query-buffer", "query buffer"),
    ("tot-mem", "client-memory", "memory"),
];
/// The settings: name, default, meaning; the byte limits first. The
/// defaults: Redis has no limit for normal clients, and cuts a replica after
/// 60 s over 64 MiB, a subscriber after 60 s over 8 MiB.
#[rustfmt::skip]
pub const KEYS: [(&str, u64, &str); 6] = [
    ("max_omem_normal", 32 << 20, "output buffer (omem) bytes of a normal client; 0 = off"),
    ("max_omem_replica", 32 << 20, "output buffer (omem) bytes of a replica; 0 = off"),
    ("max_omem_pubsub", 4 << 20, "output buffer (omem) bytes of a pub/sub client; 0 = off"),
    ("max_qbuf", 32 << 20, "query buffer (qbuf) bytes of a client; 0 = off"),
    ("max_tot_mem", 64 << 20, "memory (tot-mem) bytes of a client; 0 = off"),
    ("for_polls", 2, "polls in a row over a limit before the warning (0 counts as 1)"),
];

/// The class of `c` (index in [`CLASSES`]), from its flags and its
/// subscriptions (a RESP3 subscriber has no `P`).
pub fn class(c: &Client) -> usize {
    let subscribed = |f| c.field_u64(f).unwrap_or(0) > 0;
    if c.flags.contains('S') && !c.flags.contains('O') {
        1
    } else if c.flags.contains('P') || ["sub", "psub", "ssub"].into_iter().any(subscribed) {
        2
    } else {
        0
    }
}

/// The watcher's settings and conditions.
#[derive(Debug, Clone)]
pub struct ClientBuffers {
    /// The settings, in [`KEYS`] order.
    settings: [u64; 6],
    /// One per measure, in [`MEASURES`] order, keyed by client id and address.
    over: [Conditions<(u64, String)>; 3],
    /// CLIENT LIST unreadable (refused, unknown to the server).
    unreadable: Conditions<&'static str>,
}

/// The event of client `c` entering or leaving measure `m`.
fn event(c: &Client, m: usize, class: &str, value: u64, limit: u64, t: Transition) -> Event {
    let (level, word, state) = match t {
        Transition::Firing => (Level::Warn, "over", "entered"),
        Transition::Resolved => (Level::Info, "back under", "left"),
    };
    let ((field, _, what), (v, l)) = (MEASURES[m], (bytes(value), bytes(limit)));
    let (addr, id, name) = (&c.addr, c.id, &c.name);
    let msg = format!("{class} client {addr} (id {id}, name {name:?}): {what} {v} {word} {l}");
    Event::new(level, msg)
        .field("client_id", id)
        .field("addr", addr)
        .field("class", class)
        .field("measure", field)
        .field("bytes", value)
        .field("limit", limit)
        .field("state", state)
}

impl Watch for ClientBuffers {
    fn manifest() -> Manifest {
        let config = KEYS
            .iter()
            .map(|&(key, default, about)| ConfigKey::new(key, default as i64, about))
            .collect();
        let about = "reports clients whose output buffer, query buffer or memory is over a limit";
        Manifest::new(NAME, env!("CARGO_PKG_VERSION"), about)
            .with_config(config)
            .with_needs(Needs::info(&[]).with_probe(Probe::ClientList))
    }

    /// The error names a key below 0.
    fn from_settings(given: &[Setting]) -> Result<Self, String> {
        let mut settings = [0; 6];
        for (value, (key, default, _)) in settings.iter_mut().zip(KEYS) {
            let n = Settings::new(given).integer(key, default as i64)?;
            *value = u64::try_from(n).map_err(|_| invalid(key, ">= 0", n))?;
        }
        let over = MEASURES.map(|(_, kind, _)| {
            Conditions::with_key_text(kind, |(id, addr)| format!("id={id} addr={addr}"))
                .with_hysteresis(settings[5].try_into().unwrap_or(u32::MAX), 1)
        });
        let unreadable = Conditions::new("client-list-unavailable");
        Ok(ClientBuffers {
            settings,
            over,
            unreadable,
        })
    }

    fn observe(&mut self, snapshot: &Snapshot) -> Vec<Event> {
        let clients = match snapshot.clients() {
            Ok(clients) => clients,
            Err(reason) => {
                let e = Event::new(Level::Warn, format!("cannot read CLIENT LIST: {reason}"));
                let e = e.field("reason", reason).field("state", "entered");
                // Unseen clients are not gone: their conditions stay as they are.
                return Vec::from_iter(self.unreadable.observe("client-list", true, |_| e));
            }
        };
        let back = Event::new(Level::Info, "CLIENT LIST readable again").field("state", "left");
        let mut events = Vec::from_iter(self.unreadable.observe("client-list", false, |_| back));
        for c in clients {
            let class = class(c);
            for (m, (field, _, _)) in MEASURES.iter().enumerate() {
                // The output buffer's limit is its class's; a field this
                // Redis does not print counts as 0.
                let limit = self.settings[if m == 0 { class } else { m + 2 }];
                let value = c.field_u64(field).unwrap_or(0);
                let make = |t| event(c, m, CLASSES[class], value, limit, t);
                let key = (c.id, c.addr.clone());
                events.extend(self.over[m].observe(key, limit > 0 && value > limit, make));
            }
        }
        for (over, (field, _, what)) in self.over.iter_mut().zip(MEASURES) {
            events.extend(over.finish(|(id, addr)| {
                let msg = format!("client {addr} (id {id}) gone while its {what} was over");
                Event::new(Level::Info, msg)
                    .field("client_id", *id)
                    .field("addr", addr)
                    .field("measure", field)
                    .field("state", "left")
            }));
        }
        events
    }
}

#[cfg(test)]
mod tests;
