//! The optional durable spool (`[buffer] dir`): envelopes that could not be
//! delivered are appended to `spool.log` in that folder, so they survive a
//! crash or restart; on start the host replays the file before anything
//! new. The file is removed once the outbox has been fully delivered.
//!
//! Each record is `LKSP` magic, a little-endian u32 length, a CRC-32 of the
//! payload, then the envelope's JSON. A torn or corrupt record is skipped
//! (reading resumes at the next magic) and counted; it never stops start-up.
//!
//! Writes are appended and `fsync`ed once per spooling (at most once per
//! poll or publish attempt), so a crash loses at most the envelopes emitted
//! since the last spooling that had not been delivered.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::delivery::envelope::Envelope;

const MAGIC: &[u8; 4] = b"LKSP";
const HEADER: usize = 12;
/// Largest record accepted when reading; larger lengths are corruption.
const MAX_RECORD: usize = 64 << 20;

/// What a replay found.
#[derive(Debug, Default)]
pub struct Replay {
    /// Envelopes read back, in the order they were spooled.
    pub envelopes: Vec<Envelope>,
    /// Torn or corrupt records skipped.
    pub corrupt: u64,
}

/// The spool file and its write handle.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    file: Option<File>,
    /// Bytes in the file.
    size: u64,
    /// Most bytes the file may grow to; beyond it nothing more is spooled.
    cap: u64,
}

impl Spool {
    /// Opens the spool in `dir` (created if missing), capped at `cap` bytes.
    ///
    /// # Errors
    /// The folder cannot be created.
    pub fn open(dir: &Path, cap: u64) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating spool folder {}", dir.display()))?;
        let path = dir.join("spool.log");
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        Ok(Self {
            path,
            file: None,
            size,
            cap,
        })
    }

    /// Reads every intact record, skipping and counting damaged ones.
    ///
    /// # Errors
    /// The file exists but cannot be read.
    pub fn replay(&self) -> Result<Replay> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Replay::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.path.display())),
        };
        Ok(decode(&bytes))
    }

    /// Appends `envelopes` (JSON) and syncs; returns how many were written
    /// (fewer when the file reached its cap).
    ///
    /// # Errors
    /// Writing or syncing failed.
    pub fn append<'a>(&mut self, jsons: impl Iterator<Item = &'a str>) -> Result<usize> {
        let mut buf = Vec::new();
        let mut written = 0;
        for json in jsons {
            let record = HEADER + json.len();
            if self.size + (buf.len() + record) as u64 > self.cap {
                break;
            }
            encode(json.as_bytes(), &mut buf);
            written += 1;
        }
        if buf.is_empty() {
            return Ok(0);
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
        Ok(written)
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
        Ok(())
    }

    /// Bytes in the spool file.
    pub fn size(&self) -> u64 {
        self.size
    }
}

fn encode(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Decodes records, resynchronising on the magic after damage.
fn decode(bytes: &[u8]) -> Replay {
    let mut replay = Replay::default();
    let mut at = 0;
    let mut damaged = false;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let intact = rest.len() >= HEADER && &rest[..4] == MAGIC && {
            let len = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes")) as usize;
            let crc = u32::from_le_bytes(rest[8..12].try_into().expect("4 bytes"));
            len <= MAX_RECORD
                && rest.len() >= HEADER + len
                && crc32fast::hash(&rest[HEADER..HEADER + len]) == crc
                && match serde_json::from_slice::<Envelope>(&rest[HEADER..HEADER + len]) {
                    Ok(envelope) => {
                        replay.envelopes.push(envelope);
                        at += HEADER + len;
                        true
                    }
                    Err(_) => false,
                }
        };
        if intact {
            damaged = false;
            continue;
        }
        if !damaged {
            replay.corrupt += 1;
            damaged = true;
        }
        // Skip to the next magic after this position.
        at += 1;
        match bytes[at..].windows(4).position(|w| w == MAGIC) {
            Some(offset) => at += offset,
            None => break,
        }
    }
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
        let mut spool = Spool::open(dir.path(), u64::MAX).unwrap();
        let items = jsons(3);
        assert_eq!(spool.append(items.iter().map(String::as_str)).unwrap(), 3);
        let again = Spool::open(dir.path(), u64::MAX).unwrap().replay().unwrap();
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
            encode(j.as_bytes(), &mut bytes);
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

    #[test]
    fn the_cap_bounds_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let items = jsons(10);
        let one = (HEADER + items[0].len()) as u64;
        let mut spool = Spool::open(dir.path(), one * 3).unwrap();
        assert_eq!(spool.append(items.iter().map(String::as_str)).unwrap(), 3);
        assert!(spool.size() <= one * 3);
    }
}
