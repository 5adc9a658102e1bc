//! The open-files limit of the process: every watched target holds one
//! Redis connection (a file descriptor), so a daemon watching thousands of
//! targets needs more than the usual soft limit of 1,024.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Raises the soft `RLIMIT_NOFILE` of this process to its hard limit, the
/// most an unprivileged process may ask for; returns the soft limit before
/// and after (`u64::MAX` stands for unlimited). A soft limit already at
/// the hard limit is left alone. The limit is inherited by child
/// processes.
///
/// # Errors
/// `setrlimit` refused the new limit.
pub(crate) fn raise_nofile_limit() -> std::io::Result<(u64, u64)> {
    let limit = getrlimit(Resource::Nofile);
    let before = limit.current.unwrap_or(u64::MAX);
    // An unlimited hard limit (not seen on Linux, whose hard limit is at
    // most fs.nr_open) gives no number to raise the soft one to.
    let Some(hard) = limit.maximum else {
        return Ok((before, before));
    };
    if before >= hard {
        return Ok((before, before));
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(hard),
            maximum: Some(hard),
        },
    )
    .map_err(std::io::Error::from)?;
    Ok((before, hard))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After the call the soft limit is the hard one, and a second call
    /// changes nothing.
    #[test]
    fn soft_limit_reaches_the_hard_one() {
        let (_, after) = raise_nofile_limit().unwrap();
        let limit = getrlimit(Resource::Nofile);
        assert_eq!(limit.current.unwrap_or(u64::MAX), after);
        if let Some(hard) = limit.maximum {
            assert_eq!(after, hard);
        }
        assert_eq!(raise_nofile_limit().unwrap(), (after, after));
    }
}
