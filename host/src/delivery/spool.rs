//! The optional durable spool (`[buffer] dir`): the envelopes waiting in
//! the outbox are written to `spool.log` in that folder when they cannot be
//! delivered at once, so they survive a crash or restart; on start the host
//! replays the file before anything new. The file is removed once the
//! outbox has been fully delivered.
//!
//! The file always describes the outbox: envelope records (appended as
//! envelopes are spooled) and note records, which say which spooled
//! envelopes left the outbox since (delivered, or dropped by the policy:
//! never replayed), which were already PUBLISHed (a replay sends only their
//! XADD), and the drops not yet reported (so a restart still reports them).
//! When the file grows past twice what the outbox holds (plus a floor), it
//! is rewritten with just the outbox, through a temporary file and a rename.
//!
//! A record is a 4-byte magic (`LKSP` envelope, `LKSN` note), a
//! little-endian u32 length, a CRC-32 of the payload, then the payload
//! (JSON). A torn or corrupt record is skipped (reading resumes at the next
//! magic) and counted; it never stops start-up.
//!
//! Writes are appended and `fsync`ed once per spooling (at most once per
//! poll or publish attempt, and before a drop report is sent), so a crash
//! loses at most the envelopes emitted since the last spooling that had not
//! been delivered.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::delivery::envelope::Envelope;
use crate::delivery::outbox::DropReport;

const MAGIC: &[u8; 4] = b"LKSP";
const NOTE: &[u8; 4] = b"LKSN";
/// Bytes of a record before its payload.
pub const HEADER: usize = 12;
/// Largest record accepted when reading; larger lengths are corruption.
const MAX_RECORD: usize = 64 << 20;
/// The file is rewritten when it holds more than twice the live records
/// plus this many bytes.
pub const COMPACT_FLOOR: u64 = 64 << 10;

/// What a replay found.
#[derive(Debug, Default)]
pub struct Replay {
    /// Envelopes read back, in the order they were spooled, without those
    /// a note settled (delivered or dropped).
    pub envelopes: Vec<Envelope>,
    /// Ids among `envelopes` whose PUBLISH was confirmed.
    pub published: HashSet<String>,
    /// Drops counted but not reported when the file was last written.
    pub drops: Option<DropReport>,
    /// Envelope records skipped because a note settled them.
    pub settled: u64,
    /// Torn or corrupt records skipped.
    pub corrupt: u64,
}

/// A note record: what changed in the outbox since the envelopes before it
/// were written.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// Spooled envelopes that left the outbox: never replayed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settled: Vec<String>,
    /// Spooled envelopes whose PUBLISH was confirmed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub published: Vec<String>,
    /// Drops not yet reported, at the time of the note.
    #[serde(default)]
    pub drops: Option<DropReport>,
}

/// The spool file and its write handle.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    file: Option<File>,
    /// Bytes in the file.
    size: u64,
    /// Slack of the compaction rule.
    floor: u64,
    /// The drop state the file records.
    drops: Option<DropReport>,
}

impl Spool {
    /// Opens the spool in `dir` (created if missing); the file is rewritten
    /// when it holds more than twice its live records plus `floor` bytes.
    ///
    /// # Errors
    /// The folder cannot be created.
    pub fn open(dir: &Path, floor: u64) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating spool folder {}", dir.display()))?;
        let path = dir.join("spool.log");
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        Ok(Self {
            path,
            file: None,
            size,
            floor,
            drops: None,
        })
    }

    /// Reads every intact record, skipping and counting damaged ones.
    ///
    /// # Errors
    /// The file exists but cannot be read.
    pub fn replay(&mut self) -> Result<Replay> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Replay::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.path.display())),
        };
        let replay = decode(&bytes);
        self.drops.clone_from(&replay.drops);
        Ok(replay)
    }

    /// Whether the file should be rewritten before adding `more` bytes,
    /// given `live` bytes of records the outbox still needs.
    pub fn wants_rewrite(&self, live: u64, more: u64) -> bool {
        self.size + more > live.saturating_mul(2).saturating_add(self.floor)
    }

    /// Appends `jsons` (envelopes) and a note with `note` and the drop
    /// state `drops` (when there is anything to note), then syncs. Writes
    /// nothing when there is nothing new.
    ///
    /// # Errors
    /// Writing or syncing failed.
    pub fn append<'a>(
        &mut self,
        jsons: impl Iterator<Item = &'a str>,
        note: &Note,
        drops: Option<&DropReport>,
    ) -> Result<()> {
        let mut buf = Vec::new();
        for json in jsons {
            encode(MAGIC, json.as_bytes(), &mut buf);
        }
        if !note.settled.is_empty() || !note.published.is_empty() || self.drops.as_ref() != drops {
            let note = Note {
                settled: note.settled.clone(),
                published: note.published.clone(),
                drops: drops.cloned(),
            };
            encode(NOTE, &note_json(&note), &mut buf);
        }
        if buf.is_empty() {
            return Ok(());
        }
        if self.file.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .with_context(|| format!("opening {}", self.path.display()))?;
            self.file = Some(file);
        }
        let file = self.file.as_mut().expect("opened above");
        file.write_all(&buf)
            .and_then(|()| file.sync_data())
            .with_context(|| format!("writing {}", self.path.display()))?;
        self.size += buf.len() as u64;
        self.drops = drops.cloned();
        Ok(())
    }

    /// Replaces the file with exactly `items` (envelope JSON, and whether
    /// its PUBLISH was confirmed) and the drop state: written to a
    /// temporary file, synced, renamed over the spool, the folder synced.
    ///
    /// # Errors
    /// Writing, syncing or renaming failed; the old file is then intact.
    pub fn rewrite<'a>(
        &mut self,
        items: impl Iterator<Item = (&'a str, &'a str, bool)>,
        drops: Option<&DropReport>,
    ) -> Result<()> {
        let mut buf = Vec::new();
        let mut published = Vec::new();
        for (id, json, was_published) in items {
            encode(MAGIC, json.as_bytes(), &mut buf);
            if was_published {
                published.push(id.to_owned());
            }
        }
        let note = Note {
            settled: Vec::new(),
            published,
            drops: drops.cloned(),
        };
        encode(NOTE, &note_json(&note), &mut buf);
        let tmp = self.path.with_extension("log.tmp");
        let written = (|| {
            let mut file = File::create(&tmp)?;
            file.write_all(&buf)?;
            file.sync_data()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                File::open(dir)?.sync_all()?;
            }
            Ok::<_, std::io::Error>(())
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("rewriting {}", self.path.display()));
        }
        self.file = None;
        self.size = buf.len() as u64;
        self.drops = drops.cloned();
        Ok(())
    }

    /// Removes the file once everything in it was delivered.
    ///
    /// # Errors
    /// The file exists but cannot be removed.
    pub fn clear(&mut self) -> Result<()> {
        if self.size == 0 {
            return Ok(());
        }
        self.file = None;
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", self.path.display())),
        }
        self.size = 0;
        self.drops = None;
        Ok(())
    }

    /// Bytes in the spool file.
    pub fn size(&self) -> u64 {
        self.size
    }
}

fn note_json(note: &Note) -> Vec<u8> {
    serde_json::to_vec(note).expect("a note always serialises")
}

fn encode(magic: &[u8; 4], payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(magic);
    out.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// One intact record.
enum Record {
    Envelope(Envelope),
    Note(Note),
}

/// The record at the start of `rest` and its length, if intact.
fn record(rest: &[u8]) -> Option<(Record, usize)> {
    if rest.len() < HEADER {
        return None;
    }
    let magic = &rest[..4];
    let len = u32::from_le_bytes(rest[4..8].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(rest[8..12].try_into().ok()?);
    if len > MAX_RECORD || rest.len() < HEADER + len {
        return None;
    }
    let payload = &rest[HEADER..HEADER + len];
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let record = if magic == MAGIC {
        Record::Envelope(serde_json::from_slice(payload).ok()?)
    } else if magic == NOTE {
        Record::Note(serde_json::from_slice(payload).ok()?)
    } else {
        return None;
    };
    Some((record, HEADER + len))
}

/// Decodes records, resynchronising on a magic after damage, and applies
/// the notes.
fn decode(bytes: &[u8]) -> Replay {
    let mut replay = Replay::default();
    let mut envelopes: Vec<Option<Envelope>> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut at = 0;
    let mut damaged = false;
    while at < bytes.len() {
        if let Some((record, len)) = record(&bytes[at..]) {
            at += len;
            damaged = false;
            match record {
                Record::Envelope(envelope) => {
                    index.insert(envelope.id.clone(), envelopes.len());
                    envelopes.push(Some(envelope));
                }
                Record::Note(note) => {
                    for id in note.settled {
                        if let Some(slot) = index.remove(&id).and_then(|i| envelopes.get_mut(i))
                            && slot.take().is_some()
                        {
                            replay.settled += 1;
                            replay.published.remove(&id);
                        }
                    }
                    for id in note.published {
                        if index.contains_key(&id) {
                            replay.published.insert(id);
                        }
                    }
                    replay.drops = note.drops;
                }
            }
            continue;
        }
        if !damaged {
            replay.corrupt += 1;
            damaged = true;
        }
        // Skip to the next magic after this position.
        at += 1;
        match bytes[at..].windows(4).position(|w| w == MAGIC || w == NOTE) {
            Some(offset) => at += offset,
            None => break,
        }
    }
    replay.envelopes = envelopes.into_iter().flatten().collect();
    replay
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::envelope::{Level, Origin};

    fn jsons(n: usize) -> Vec<String> {
        let origin = Origin::new("redis", "h:1");
        (0..n)
            .map(|i| {
                origin
                    .envelope(Level::Info, "t", format!("m{i}"), Default::default())
                    .to_json()
            })
            .collect()
    }

    #[test]
    fn round_trip_and_clear() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), COMPACT_FLOOR).unwrap();
        let items = jsons(3);
        spool
            .append(items.iter().map(String::as_str), &Note::default(), None)
            .unwrap();
        let again = Spool::open(dir.path(), COMPACT_FLOOR)
            .unwrap()
            .replay()
            .unwrap();
        let msgs: Vec<_> = again.envelopes.iter().map(|e| e.msg.as_str()).collect();
        assert_eq!(msgs, ["m0", "m1", "m2"]);
        assert_eq!(again.corrupt, 0);
        spool.clear().unwrap();
        assert!(spool.replay().unwrap().envelopes.is_empty());
    }

    #[test]
    fn torn_and_corrupt_records_are_skipped_and_counted() {
        let items = jsons(4);
        let mut bytes = Vec::new();
        for j in &items {
            encode(MAGIC, j.as_bytes(), &mut bytes);
        }
        let second = HEADER + items[0].len();
        bytes[second + HEADER + 3] ^= 0xff; // flip a payload byte of record 2
        bytes.truncate(bytes.len() - 5); // tear the last record
        let replay = decode(&bytes);
        let msgs: Vec<_> = replay.envelopes.iter().map(|e| e.msg.as_str()).collect();
        assert_eq!(msgs, ["m0", "m2"]);
        assert_eq!(replay.corrupt, 2);
        assert_eq!(decode(b"garbage without magic").corrupt, 1);
    }

    fn ids(jsons: &[String]) -> Vec<String> {
        jsons
            .iter()
            .map(|j| serde_json::from_str::<Envelope>(j).unwrap().id)
            .collect()
    }

    #[test]
    fn notes_settle_publish_and_carry_drops() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), COMPACT_FLOOR).unwrap();
        let items = jsons(4);
        let ids = ids(&items);
        let drops = DropReport {
            count: 7,
            first_ts: "2026-01-01T00:00:00.000Z".to_owned(),
            last_ts: "2026-01-01T00:00:01.000Z".to_owned(),
        };
        spool
            .append(items.iter().map(String::as_str), &Note::default(), None)
            .unwrap();
        let note = Note {
            settled: vec![ids[0].clone(), "unknown".to_owned()],
            published: vec![ids[2].clone()],
            drops: None,
        };
        spool
            .append(std::iter::empty(), &note, Some(&drops))
            .unwrap();
        let replay = Spool::open(dir.path(), COMPACT_FLOOR)
            .unwrap()
            .replay()
            .unwrap();
        let msgs: Vec<_> = replay.envelopes.iter().map(|e| e.msg.as_str()).collect();
        assert_eq!(
            msgs,
            ["m1", "m2", "m3"],
            "a settled envelope is never replayed"
        );
        assert_eq!(replay.settled, 1);
        assert_eq!(replay.published, HashSet::from([ids[2].clone()]));
        assert_eq!(replay.drops, Some(drops.clone()));
        assert_eq!(replay.corrupt, 0);

        // Nothing new: nothing written.
        let size = spool.size();
        spool
            .append(std::iter::empty(), &Note::default(), Some(&drops))
            .unwrap();
        assert_eq!(spool.size(), size);
        // Drops reported: the note says so.
        spool
            .append(std::iter::empty(), &Note::default(), None)
            .unwrap();
        assert!(spool.size() > size);
        assert_eq!(spool.replay().unwrap().drops, None);
    }

    #[test]
    fn a_rewrite_keeps_exactly_the_live_envelopes() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 0).unwrap();
        let items = jsons(10);
        let ids = ids(&items);
        spool
            .append(items.iter().map(String::as_str), &Note::default(), None)
            .unwrap();
        let live = (HEADER + items[0].len()) as u64 * 3;
        assert!(spool.wants_rewrite(live, 0));
        let keep: Vec<(&str, &str, bool)> = (7..10)
            .map(|i| (ids[i].as_str(), items[i].as_str(), i == 8))
            .collect();
        spool.rewrite(keep.into_iter(), None).unwrap();
        assert!(!spool.wants_rewrite(live, 0), "{} bytes", spool.size());
        assert!(!dir.path().join("spool.log.tmp").exists());
        let replay = spool.replay().unwrap();
        let msgs: Vec<_> = replay.envelopes.iter().map(|e| e.msg.as_str()).collect();
        assert_eq!(msgs, ["m7", "m8", "m9"]);
        assert_eq!(replay.published, HashSet::from([ids[8].clone()]));
        // Appends after a rewrite go to the new file.
        spool
            .append(std::iter::once(items[0].as_str()), &Note::default(), None)
            .unwrap();
        assert_eq!(spool.replay().unwrap().envelopes.len(), 4);
    }

    #[test]
    fn garbage_never_panics() {
        let mut bytes = Vec::new();
        encode(NOTE, b"{not json", &mut bytes);
        encode(MAGIC, b"[]", &mut bytes);
        bytes.extend_from_slice(b"LKSN\xff\xff\xff\xffLKSP");
        let replay = decode(&bytes);
        assert!(replay.envelopes.is_empty());
        assert!(replay.corrupt >= 1);
    }
}
