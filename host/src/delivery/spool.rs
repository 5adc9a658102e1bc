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
//! magic) and counted; it never stops start-up. A note settles an id for
//! good: no later record of that id is replayed.
//!
//! Writes are appended and `fsync`ed once per spooling (at most once per
//! poll or publish attempt, and before a drop report is sent), so a crash
//! loses at most the envelopes emitted since the last spooling that had not
//! been delivered.
//!
//! One process at a time: the daemon holds `DIR/lock` ([`files::FolderLock`])
//! while it runs. Every file is created `0600` and opened without following
//! a symbolic link ([`files::open`]).
//!
//! A failed write (a full disk, an I/O error) never leaves the file saying
//! more is pending than is. The file is only ever appended at the end of
//! its last whole record: what a failed write left past it is cut off at
//! once (and, should that fail too, before the next append). A failed write
//! that carried a note of envelopes that left the outbox or were PUBLISHed
//! removes the file instead (removing needs no space), since without that
//! note it would replay them; so does a failed rewrite. The next spooling
//! then writes the whole outbox afresh. Notes go first in a write: should
//! the process die between a write the disk cut short and its clean-up,
//! the note is the part most likely to have landed whole.

mod files;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::delivery::envelope::Envelope;
use crate::delivery::outbox::DropReport;

use files::FolderLock;

const MAGIC: &[u8; 4] = b"LKSP";
const NOTE: &[u8; 4] = b"LKSN";
/// Bytes of a record before its payload.
pub(crate) const HEADER: usize = 12;
/// Largest record accepted when reading; larger lengths are corruption.
const MAX_RECORD: usize = 64 << 20;
/// The file is rewritten when it holds more than twice the live records
/// plus this many bytes.
pub(crate) const COMPACT_FLOOR: u64 = 64 << 10;

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
pub(crate) struct Note {
    /// Spooled envelopes that left the outbox: never replayed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settled: Vec<String>,
    /// Envelopes whose PUBLISH was confirmed (spooled before, or in the
    /// same write).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub published: Vec<String>,
    /// Drops not yet reported, at the time of the note.
    #[serde(default)]
    pub drops: Option<DropReport>,
}

/// The spool file and its write handle.
#[derive(Debug)]
pub(crate) struct Spool {
    path: PathBuf,
    file: Option<File>,
    /// Bytes of whole records at the start of the file: where the next
    /// append goes. Anything past it (a write cut short) is cut off first.
    size: u64,
    /// A file may be on disk (`clear` has something to remove).
    on_disk: bool,
    /// The file was removed after a failed write while the outbox still
    /// counts envelopes as in it: the next spooling rewrites it whole.
    stale: bool,
    /// Slack of the compaction rule.
    floor: u64,
    /// The drop state the file records.
    drops: Option<DropReport>,
    /// The folder's lock, held while the daemon uses the folder.
    _lock: Option<FolderLock>,
    disk: Disk,
}

impl Spool {
    /// Opens the spool in `dir` (created `0700` if missing) for this process
    /// alone: takes the folder's lock first, so a second daemon on the same
    /// folder stops here. The file is rewritten when it holds more than
    /// twice its live records plus `floor` bytes.
    ///
    /// # Errors
    /// The folder cannot be created, another process holds its lock (the
    /// message names the folder and that process's pid), or `spool.log` or
    /// `lock` is a symbolic link or not a regular file.
    pub(crate) fn open_locked(dir: &Path, floor: u64) -> Result<Self> {
        files::folder(dir)?;
        let lock = FolderLock::take(dir)?;
        Ok(Self {
            _lock: Some(lock),
            ..Self::open(dir, floor)?
        })
    }

    /// Opens the spool in `dir` (created if missing) without its lock: for
    /// reading a folder another process may be using.
    ///
    /// # Errors
    /// The folder cannot be created, or `spool.log` is a symbolic link or
    /// not a regular file.
    pub(crate) fn open(dir: &Path, floor: u64) -> Result<Self> {
        files::folder(dir)?;
        let path = dir.join("spool.log");
        let size = match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => meta.len(),
            Ok(_) => {
                // Refused with the reason.
                files::open(&path, files::How::Read)?;
                0
            }
            Err(_) => 0,
        };
        Ok(Self {
            on_disk: size > 0,
            path,
            file: None,
            size,
            stale: false,
            floor,
            drops: None,
            _lock: None,
            disk: Disk::default(),
        })
    }

    /// Reads every intact record, skipping and counting damaged ones. A
    /// damaged tail (a write cut short) is cut off before the next append.
    ///
    /// # Errors
    /// The file exists but cannot be read, or is a symbolic link or not a
    /// regular file.
    pub(crate) fn replay(&mut self) -> Result<Replay> {
        if std::fs::symlink_metadata(&self.path)
            .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        {
            return Ok(Replay::default());
        }
        let mut bytes = Vec::new();
        files::open(&self.path, files::How::Read)?
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading {}", self.path.display()))?;
        let (replay, whole) = decode(&bytes);
        self.size = whole as u64;
        self.on_disk = true;
        self.drops.clone_from(&replay.drops);
        Ok(replay)
    }

    /// Whether the file should be rewritten before adding `more` bytes,
    /// given `live` bytes of records the outbox still needs (always after
    /// a failed write removed it).
    pub(crate) fn wants_rewrite(&self, live: u64, more: u64) -> bool {
        self.stale || self.size + more > live.saturating_mul(2).saturating_add(self.floor)
    }

    /// Appends a note with `note` and the drop state `drops` (when there is
    /// anything to note), then `jsons` (envelopes), then syncs. Writes
    /// nothing when there is nothing new.
    ///
    /// # Errors
    /// Writing or syncing failed. What the write left is then cut off; if
    /// the note settled or PUBLISHed anything, the file is removed instead
    /// (see the module doc) and [`Spool::size`] is 0.
    pub(crate) fn append<'a>(
        &mut self,
        jsons: impl Iterator<Item = &'a str>,
        note: &Note,
        drops: Option<&DropReport>,
    ) -> Result<()> {
        let mut buf = Vec::new();
        let settles = !note.settled.is_empty() || !note.published.is_empty();
        if settles || self.drops.as_ref() != drops {
            let note = Note {
                settled: note.settled.clone(),
                published: note.published.clone(),
                drops: drops.cloned(),
            };
            encode(NOTE, &note_json(&note), &mut buf);
        }
        for json in jsons {
            encode(MAGIC, json.as_bytes(), &mut buf);
        }
        if buf.is_empty() {
            return Ok(());
        }
        match self.write_at_end(&buf) {
            Ok(()) => {
                self.size += buf.len() as u64;
                self.drops = drops.cloned();
                Ok(())
            }
            Err(e) => {
                let e = e.context(format!("writing {}", self.path.display()));
                if settles {
                    return Err(self.discard(e));
                }
                if let Some(file) = &self.file {
                    // Failing here too: cut before the next append.
                    let _ = file.set_len(self.size);
                }
                Err(e)
            }
        }
    }

    /// Opens the file for appending if needed, cuts off anything past the
    /// last whole record, writes `buf` and syncs.
    fn write_at_end(&mut self, buf: &[u8]) -> Result<()> {
        if self.file.is_none() {
            self.file = Some(files::open(&self.path, files::How::Append)?);
            self.on_disk = true;
        }
        let file = self.file.as_mut().expect("opened above");
        let len = file.metadata()?.len();
        if len > self.size {
            file.set_len(self.size)?;
        } else {
            // Shorter than it was written (cut by someone): go on from there.
            self.size = len;
        }
        self.disk.write(file, buf)?;
        file.sync_data()?;
        Ok(())
    }

    /// Removes the file after a failed write that would leave it replaying
    /// what left the outbox, and returns `e` (with the removal's failure).
    fn discard(&mut self, e: anyhow::Error) -> anyhow::Error {
        self.file = None;
        self.stale = true;
        self.drops = None;
        match std::fs::remove_file(&self.path) {
            Ok(()) => {
                self.size = 0;
                self.on_disk = false;
                e.context("spool file removed: the next spooling writes the outbox afresh")
            }
            Err(gone) if gone.kind() == std::io::ErrorKind::NotFound => {
                self.size = 0;
                self.on_disk = false;
                e
            }
            Err(remove) => e.context(format!(
                "removing {} failed too ({remove}): a restart may replay envelopes delivered since",
                self.path.display()
            )),
        }
    }

    /// Replaces the file with exactly `items` (envelope JSON, and whether
    /// its PUBLISH was confirmed) and the drop state: written to a
    /// temporary file (`0600`, never through a link), synced, renamed over
    /// the spool, the folder synced.
    ///
    /// # Errors
    /// Writing, syncing or renaming failed; the old file is then removed as
    /// well (it may list envelopes that left since) and [`Spool::size`] is 0.
    pub(crate) fn rewrite<'a>(
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
            match std::fs::remove_file(&tmp) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
            let mut file = files::open(&tmp, files::How::New)?;
            self.disk.write(&mut file, &buf)?;
            file.sync_data()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                File::open(dir)?.sync_all()?;
            }
            Ok::<_, anyhow::Error>(())
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            let e = e.context(format!("rewriting {}", self.path.display()));
            return Err(self.discard(e));
        }
        self.file = None;
        self.size = buf.len() as u64;
        self.on_disk = true;
        self.stale = false;
        self.drops = drops.cloned();
        Ok(())
    }

    /// Removes the file once everything in it was delivered.
    ///
    /// # Errors
    /// The file exists but cannot be removed.
    pub(crate) fn clear(&mut self) -> Result<()> {
        if !self.on_disk {
            self.stale = false;
            return Ok(());
        }
        self.file = None;
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", self.path.display())),
        }
        self.size = 0;
        self.on_disk = false;
        self.stale = false;
        self.drops = None;
        Ok(())
    }

    /// Bytes of whole records in the spool file.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }
}

/// Where the spool's bytes go: the file system. Tests give it a size, to
/// fill it up.
#[derive(Debug, Default)]
struct Disk {
    /// Bytes left on a simulated disk; `None`: the real one.
    #[cfg(test)]
    left: Option<u64>,
}

impl Disk {
    /// Writes all of `buf`, or as much as fits and then fails as a full
    /// disk does.
    fn write(&mut self, file: &mut File, buf: &[u8]) -> std::io::Result<()> {
        #[cfg(test)]
        if let Some(left) = self.left.as_mut() {
            let fits = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
            file.write_all(&buf[..fits])?;
            *left -= fits as u64;
            return if fits < buf.len() {
                Err(std::io::ErrorKind::StorageFull.into())
            } else {
                Ok(())
            };
        }
        file.write_all(buf)
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
/// the notes; also returns where the last whole record ends.
fn decode(bytes: &[u8]) -> (Replay, usize) {
    let mut replay = Replay::default();
    let mut envelopes: Vec<Option<Envelope>> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    // Settled ids stay settled, whatever comes after.
    let mut gone: HashSet<String> = HashSet::new();
    let mut published: HashSet<String> = HashSet::new();
    let mut at = 0;
    let mut whole = 0;
    let mut damaged = false;
    while at < bytes.len() {
        if let Some((record, len)) = record(&bytes[at..]) {
            at += len;
            whole = at;
            damaged = false;
            match record {
                Record::Envelope(envelope) => {
                    if gone.contains(&envelope.id) {
                        replay.settled += 1;
                    } else if !index.contains_key(&envelope.id) {
                        index.insert(envelope.id.clone(), envelopes.len());
                        envelopes.push(Some(envelope));
                    }
                }
                Record::Note(note) => {
                    for id in note.settled {
                        if let Some(slot) = index.remove(&id).and_then(|i| envelopes.get_mut(i))
                            && slot.take().is_some()
                        {
                            replay.settled += 1;
                        }
                        published.remove(&id);
                        gone.insert(id);
                    }
                    published.extend(note.published.into_iter().filter(|id| !gone.contains(id)));
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
    replay.published = published
        .into_iter()
        .filter(|id| index.contains_key(id))
        .collect();
    (replay, whole)
}
