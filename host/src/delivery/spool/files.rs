//! The spool folder's files, opened so that nobody else's file is ever
//! written: the folder lock that keeps a second daemon out, and files
//! created `0600` that are never symbolic links (nor FIFOs or devices).

use std::fs::{DirBuilder, File, Permissions};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, FileExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result, bail};
use rustix::fs::{FlockOperation, Mode, OFlags, flock};
use rustix::io::Errno;

/// Name of the lock file in the spool folder.
pub(super) const LOCK: &str = "lock";

/// How a spool file is opened.
#[derive(Debug, Clone, Copy)]
pub(super) enum How {
    /// Reading what is there.
    Read,
    /// Appending, created if missing.
    Append,
    /// A new file: fails if anything has the name.
    New,
    /// The lock file: read and written, created if missing.
    Lock,
}

/// Creates the spool folder (`0700`, it holds envelopes) if missing.
///
/// # Errors
/// It cannot be created.
pub(super) fn folder(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating spool folder {}", dir.display()))
}

/// Opens `path` without following a symbolic link in its last component,
/// creating it `0600` when `how` creates, and refuses anything but a
/// regular file. An existing file readable by others is made `0600`.
///
/// # Errors
/// It is a symbolic link or not a regular file, or the open failed; the
/// message names the path.
pub(super) fn open(path: &Path, how: How) -> Result<File> {
    // NONBLOCK: a FIFO planted there must not hang the open; it does
    // nothing to a regular file.
    let common = OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let flags = match how {
        How::Read => OFlags::RDONLY,
        How::Append => OFlags::WRONLY | OFlags::CREATE | OFlags::APPEND,
        How::New => OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
        How::Lock => OFlags::RDWR | OFlags::CREATE,
    };
    let fd = match rustix::fs::open(path, flags | common, Mode::RUSR | Mode::WUSR) {
        Ok(fd) => fd,
        Err(Errno::LOOP) => bail!(
            "{} is a symbolic link: refused, the spool never follows one; remove it",
            path.display()
        ),
        Err(e) => {
            return Err(std::io::Error::from(e))
                .with_context(|| format!("opening {}", path.display()));
        }
    };
    let file = File::from(fd);
    let meta = file
        .metadata()
        .with_context(|| format!("reading the metadata of {}", path.display()))?;
    if !meta.is_file() {
        bail!(
            "{} is not a regular file: refused; remove it",
            path.display()
        );
    }
    if !matches!(how, How::Read) && meta.permissions().mode() & 0o077 != 0 {
        file.set_permissions(Permissions::from_mode(0o600))
            .with_context(|| format!("making {} private (0600)", path.display()))?;
    }
    Ok(file)
}

/// The folder lock: `DIR/lock`, locked with `flock` while this lives (the
/// kernel releases it when the process ends, however it ends), holding the
/// pid of the process that has it.
#[derive(Debug)]
pub(super) struct FolderLock {
    _file: File,
}

impl FolderLock {
    /// Takes the lock of the spool folder `dir` (which exists) without
    /// waiting, and writes this process's pid into it.
    ///
    /// # Errors
    /// Another process holds it (the message names the folder and that
    /// process's pid), or the lock file cannot be opened or written.
    pub(super) fn take(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK);
        let mut file = open(&path, How::Lock)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(Errno::WOULDBLOCK) => {
                let mut text = String::new();
                let _ = file.by_ref().take(32).read_to_string(&mut text);
                let holder = match text.trim().parse::<u32>() {
                    Ok(pid) => format!("pid {pid}"),
                    // It took the lock a moment ago and writes its pid next.
                    Err(_) => "its pid not written yet".to_owned(),
                };
                bail!(
                    "spool folder {} is in use by another lookout ({holder}, in {}): \
                     two daemons must not share one [buffer] dir; give each its own",
                    dir.display(),
                    path.display()
                );
            }
            Err(e) => {
                return Err(std::io::Error::from(e))
                    .with_context(|| format!("locking {}", path.display()));
            }
        }
        let pid = format!("{}\n", std::process::id());
        file.set_len(0)
            .and_then(|()| file.write_all_at(pid.as_bytes(), 0))
            .with_context(|| format!("writing the pid into {}", path.display()))?;
        Ok(Self { _file: file })
    }
}
