//! The spool's unit tests: records, notes and rewrites; the folder lock;
//! files `0600` never reached through a link; and a full disk, simulated
//! at every byte of a write and real (a 64 KiB tmpfs, when run as root),
//! never leaving a record that a restart would replay after it left the
//! outbox.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

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
    let replay = decode(&bytes).0;
    let msgs: Vec<_> = replay.envelopes.iter().map(|e| e.msg.as_str()).collect();
    assert_eq!(msgs, ["m0", "m2"]);
    assert_eq!(replay.corrupt, 2);
    assert_eq!(decode(b"garbage without magic").0.corrupt, 1);
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
    let replay = decode(&bytes).0;
    assert!(replay.envelopes.is_empty());
    assert!(replay.corrupt >= 1);
}

/// Envelope JSON of `n` envelopes with `pad` bytes of message each.
fn padded(n: usize, pad: usize) -> Vec<String> {
    let origin = Origin::new("redis", "h:1");
    (0..n)
        .map(|i| {
            origin
                .envelope(
                    Level::Info,
                    "t",
                    format!("m{i} {}", "x".repeat(pad)),
                    Default::default(),
                )
                .to_json()
        })
        .collect()
}

/// What a restart would replay from `dir`: (messages' `mN` prefix, the
/// published ones' prefixes, corrupt records), read by a second handle.
fn restart_sees(dir: &Path) -> (Vec<String>, HashSet<String>, u64) {
    let replay = Spool::open(dir, COMPACT_FLOOR).unwrap().replay().unwrap();
    let msg = |e: &Envelope| e.msg.split(' ').next().unwrap().to_owned();
    let published = replay
        .envelopes
        .iter()
        .filter(|e| replay.published.contains(&e.id))
        .map(msg)
        .collect();
    (
        replay.envelopes.iter().map(msg).collect(),
        published,
        replay.corrupt,
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn a_second_lock_on_the_folder_is_refused_naming_it_and_the_pid() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let first = Spool::open_locked(&dir, COMPACT_FLOOR).unwrap();
    let pid = std::process::id();
    assert_eq!(
        std::fs::read_to_string(dir.join("lock")).unwrap(),
        format!("{pid}\n")
    );
    let e = format!("{:#}", Spool::open_locked(&dir, COMPACT_FLOOR).unwrap_err());
    assert!(
        e.contains(&format!("spool folder {} is in use", dir.display()))
            && e.contains(&format!("pid {pid}")),
        "{e}"
    );
    // Readers need no lock.
    Spool::open(&dir, COMPACT_FLOOR).unwrap().replay().unwrap();
    drop(first);
    let _again = Spool::open_locked(&dir, COMPACT_FLOOR).unwrap();
}

#[test]
fn files_are_private_and_never_reached_through_a_link() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let items = jsons(3);
    let mut spool = Spool::open_locked(&dir, COMPACT_FLOOR).unwrap();
    spool
        .append(items.iter().map(String::as_str), &Note::default(), None)
        .unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("lock")), 0o600);
    assert_eq!(mode(&dir.join("spool.log")), 0o600);
    spool
        .rewrite(std::iter::once(("x", items[0].as_str(), false)), None)
        .unwrap();
    assert_eq!(mode(&dir.join("spool.log")), 0o600, "rewritten");
    drop(spool);

    // A file of an older run, readable by all, is made private.
    std::fs::set_permissions(
        dir.join("spool.log"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let mut spool = Spool::open_locked(&dir, COMPACT_FLOOR).unwrap();
    spool.replay().unwrap();
    spool
        .append(std::iter::once(items[1].as_str()), &Note::default(), None)
        .unwrap();
    assert_eq!(mode(&dir.join("spool.log")), 0o600);
    spool.clear().unwrap();

    // Links planted where the spool writes: refused, never followed.
    let victim = tmp.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("spool.log")).unwrap();
    let e = format!(
        "{:#}",
        spool
            .append(std::iter::once(items[2].as_str()), &Note::default(), None)
            .unwrap_err()
    );
    assert!(
        e.contains(&format!(
            "{} is a symbolic link",
            dir.join("spool.log").display()
        )),
        "{e}"
    );
    let e = format!("{:#}", Spool::open(&dir, COMPACT_FLOOR).unwrap_err());
    assert!(e.contains("is a symbolic link"), "{e}");
    std::fs::remove_file(dir.join("spool.log")).unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("spool.log")).unwrap();
    assert!(spool.replay().is_err(), "read through a link");
    std::fs::remove_file(dir.join("spool.log")).unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("spool.log.tmp")).unwrap();
    spool
        .rewrite(std::iter::once(("x", items[0].as_str(), false)), None)
        .unwrap();
    assert!(!dir.join("spool.log.tmp").exists());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    drop(spool);

    let lock = dir.join("lock");
    std::fs::remove_file(&lock).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("made"), &lock).unwrap();
    let e = format!("{:#}", Spool::open_locked(&dir, COMPACT_FLOOR).unwrap_err());
    assert!(
        e.contains(&format!("{} is a symbolic link", lock.display())),
        "{e}"
    );
    assert!(!tmp.path().join("made").exists());
    std::fs::remove_file(&lock).unwrap();

    // A FIFO where the file goes: refused, not waited on.
    std::fs::remove_file(dir.join("spool.log")).unwrap();
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        dir.join("spool.log"),
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
    )
    .unwrap();
    let e = format!("{:#}", Spool::open_locked(&dir, COMPACT_FLOOR).unwrap_err());
    assert!(e.contains("is not a regular file"), "{e}");
}

#[test]
fn a_torn_tail_is_cut_before_the_next_append() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let items = jsons(5);
    let mut spool = Spool::open_locked(dir, COMPACT_FLOOR).unwrap();
    spool
        .append(
            items[..3].iter().map(String::as_str),
            &Note::default(),
            None,
        )
        .unwrap();
    drop(spool);
    // A crash in the middle of the next write.
    let mut torn = Vec::new();
    encode(MAGIC, items[3].as_bytes(), &mut torn);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("spool.log"))
        .unwrap();
    file.write_all(&torn[..torn.len() / 2]).unwrap();
    drop(file);
    assert_eq!(restart_sees(dir).0, ["m0", "m1", "m2"]);
    assert_eq!(restart_sees(dir).2, 1, "the torn record is counted");

    let mut spool = Spool::open_locked(dir, COMPACT_FLOOR).unwrap();
    assert_eq!(spool.replay().unwrap().envelopes.len(), 3);
    spool
        .append(std::iter::once(items[4].as_str()), &Note::default(), None)
        .unwrap();
    assert_eq!(
        restart_sees(dir),
        (
            vec!["m0".into(), "m1".into(), "m2".into(), "m4".into()],
            HashSet::new(),
            0
        )
    );
    assert_eq!(
        std::fs::metadata(dir.join("spool.log")).unwrap().len(),
        spool.size()
    );
}

/// Spools envelopes 0-2 in `dir`, then writes 3 and 4 with a note that 0
/// was delivered and 1 PUBLISHed (when `note`) on a disk with `left`
/// bytes free. Returns the spool and whether the write succeeded.
fn fill(dir: &Path, items: &[String], note: bool, left: u64) -> (Spool, bool) {
    let ids = ids(items);
    let mut spool = Spool::open_locked(dir, COMPACT_FLOOR).unwrap();
    spool.replay().unwrap();
    spool
        .append(
            items[..3].iter().map(String::as_str),
            &Note::default(),
            None,
        )
        .unwrap();
    let note = if note {
        Note {
            settled: vec![ids[0].clone()],
            published: vec![ids[1].clone()],
            drops: None,
        }
    } else {
        Note::default()
    };
    spool.disk.left = Some(left);
    let ok = spool
        .append(items[3..5].iter().map(String::as_str), &note, None)
        .is_ok();
    spool.disk.left = None;
    (spool, ok)
}

fn names(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

#[test]
fn a_disk_full_at_any_byte_never_replays_what_left_the_outbox() {
    let items = jsons(5);
    let ids = ids(&items);
    let whole = {
        let mut buf = Vec::new();
        let note = Note {
            settled: vec![ids[0].clone()],
            published: vec![ids[1].clone()],
            drops: None,
        };
        encode(NOTE, &note_json(&note), &mut buf);
        encode(MAGIC, items[3].as_bytes(), &mut buf);
        encode(MAGIC, items[4].as_bytes(), &mut buf);
        buf.len() as u64
    };
    for left in 0..=whole {
        let tmp = tempfile::tempdir().unwrap();
        let (mut spool, ok) = fill(tmp.path(), &items, true, left);
        let (seen, published, corrupt) = restart_sees(tmp.path());
        assert_eq!(corrupt, 0, "at {left} bytes");
        if ok {
            assert_eq!(left, whole);
            assert_eq!(seen, names(&["m1", "m2", "m3", "m4"]));
            assert_eq!(published, HashSet::from(["m1".to_owned()]));
            continue;
        }
        // The note did not land whole: the file is gone, not replaying 0.
        assert!(seen.is_empty(), "at {left} bytes: {seen:?}");
        assert!(!tmp.path().join("spool.log").exists());
        assert_eq!(spool.size(), 0);
        assert!(
            spool.wants_rewrite(u64::MAX / 4, 0),
            "the next spooling rewrites"
        );
        let keep: Vec<(&str, &str, bool)> = (1..5)
            .map(|i| (ids[i].as_str(), items[i].as_str(), i == 1))
            .collect();
        spool.rewrite(keep.into_iter(), None).unwrap();
        assert!(!spool.wants_rewrite(0, 0));
        let (seen, published, _) = restart_sees(tmp.path());
        assert_eq!(seen, names(&["m1", "m2", "m3", "m4"]));
        assert_eq!(published, HashSet::from(["m1".to_owned()]));
    }
}

#[test]
fn a_disk_full_without_a_note_cuts_back_to_the_last_whole_record() {
    let items = jsons(5);
    let whole = (2 * HEADER + items[3].len() + items[4].len()) as u64;
    for left in 0..whole {
        let tmp = tempfile::tempdir().unwrap();
        let (mut spool, ok) = fill(tmp.path(), &items, false, left);
        assert!(!ok);
        let before = (3 * HEADER + items[..3].iter().map(String::len).sum::<usize>()) as u64;
        assert_eq!(spool.size(), before);
        assert_eq!(
            std::fs::metadata(tmp.path().join("spool.log"))
                .unwrap()
                .len(),
            before,
            "at {left} bytes"
        );
        assert_eq!(
            restart_sees(tmp.path()),
            (names(&["m0", "m1", "m2"]), HashSet::new(), 0)
        );
        assert!(!spool.wants_rewrite(before, 0));
        spool
            .append(
                items[3..5].iter().map(String::as_str),
                &Note::default(),
                None,
            )
            .unwrap();
        assert_eq!(
            restart_sees(tmp.path()),
            (names(&["m0", "m1", "m2", "m3", "m4"]), HashSet::new(), 0)
        );
    }
}

#[test]
fn a_failed_rewrite_removes_the_old_file() {
    let tmp = tempfile::tempdir().unwrap();
    let items = jsons(4);
    let ids = ids(&items);
    let mut spool = Spool::open_locked(tmp.path(), 0).unwrap();
    spool
        .append(items.iter().map(String::as_str), &Note::default(), None)
        .unwrap();
    // 0 and 1 were delivered since, unnoted: the old file would replay them.
    spool.disk.left = Some(100);
    let keep = (2..4).map(|i| (ids[i].as_str(), items[i].as_str(), false));
    assert!(spool.rewrite(keep, None).is_err());
    spool.disk.left = None;
    assert!(!tmp.path().join("spool.log").exists());
    assert!(!tmp.path().join("spool.log.tmp").exists());
    assert!(spool.wants_rewrite(u64::MAX / 4, 0));
    // Delivered in full meanwhile: cleared, and no rewrite pending.
    spool.clear().unwrap();
    assert!(!spool.wants_rewrite(0, 0));
}

/// A tmpfs of 64 KiB, unmounted on drop.
struct Tmpfs<'a>(&'a Path);

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0).status();
    }
}

/// The same on a real full disk: a 64 KiB tmpfs (mounting needs root).
#[test]
fn a_real_full_disk_neither_tears_the_file_nor_replays_what_left() {
    let tmp = tempfile::tempdir().unwrap();
    if !rustix::process::geteuid().is_root() {
        eprintln!("not root: the full-disk tests above use a simulated disk only");
        return;
    }
    let disk = tmp.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&disk)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount -t tmpfs as root");
    let _mounted = Tmpfs(&disk);
    let items = padded(40, 3000);
    let ids = ids(&items);
    let mut spool = Spool::open_locked(&disk, COMPACT_FLOOR).unwrap();
    let mut fitted = 0;
    for json in &items {
        if spool
            .append(std::iter::once(json.as_str()), &Note::default(), None)
            .is_err()
        {
            break;
        }
        fitted += 1;
    }
    assert!(
        (5..40).contains(&fitted),
        "{fitted} envelopes filled 64 KiB"
    );
    let (seen, _, corrupt) = restart_sees(&disk);
    assert_eq!(
        (seen.len(), corrupt),
        (fitted, 0),
        "cut back to the last whole record"
    );
    assert_eq!(
        std::fs::metadata(disk.join("spool.log")).unwrap().len(),
        spool.size()
    );

    // Envelope 0 delivered; the note of it and the next envelope do not fit.
    let note = Note {
        settled: vec![ids[0].clone()],
        ..Note::default()
    };
    let e = spool
        .append(std::iter::once(items[fitted].as_str()), &note, None)
        .unwrap_err();
    assert!(format!("{e:#}").contains("spool file removed"), "{e:#}");
    assert!(
        restart_sees(&disk).0.is_empty(),
        "nothing replays envelope 0"
    );
    // The removal made room: the next spooling writes the outbox afresh.
    assert!(spool.wants_rewrite(0, 0));
    let keep = (1..=fitted).map(|i| (ids[i].as_str(), items[i].as_str(), false));
    spool.rewrite(keep, None).unwrap();
    let (seen, _, corrupt) = restart_sees(&disk);
    assert_eq!((seen.len(), corrupt), (fitted, 0));
    assert!(!seen.contains(&"m0".to_owned()));
    drop(spool);
}
