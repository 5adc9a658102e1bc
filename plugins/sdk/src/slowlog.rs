//! Helpers for SLOWLOG entries: the command name, arguments cut to a
//! length, the new entries of a snapshot in id order.

use std::borrow::Cow;

use crate::{SlowlogEntry, Snapshot};

/// Marks an argument cut by [`truncate`].
pub const ELLIPSIS: &str = "…";

/// Cuts `text` to at most `max` bytes on a char boundary, marking the cut
/// with [`ELLIPSIS`].
pub fn truncate(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let cut = text.floor_char_boundary(max);
    Cow::Owned(format!("{}{ELLIPSIS}", &text[..cut]))
}

impl SlowlogEntry {
    /// The command name in ASCII upper case (`GET`), empty when Redis
    /// recorded no arguments.
    pub fn command(&self) -> String {
        self.args
            .first()
            .map(|c| c.to_ascii_uppercase())
            .unwrap_or_default()
    }

    /// The command and its arguments joined by spaces, each cut to
    /// `max_arg_len` bytes with [`truncate`].
    pub fn args_line(&self, max_arg_len: usize) -> String {
        self.args
            .iter()
            .map(|a| truncate(a, max_arg_len))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl Snapshot {
    /// The SLOWLOG entries handed over with this snapshot, oldest (lowest
    /// id) first; empty when there are none or SLOWLOG was not declared in
    /// `needs`.
    pub fn slowlog_entries(&self) -> Vec<&SlowlogEntry> {
        let mut entries: Vec<&SlowlogEntry> = self.slowlog.iter().flatten().collect();
        entries.sort_by_key(|e| e.id);
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::SnapshotBuilder;

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("", 0), "");
        // "é" is two bytes: cutting at 2 would split it.
        assert_eq!(truncate("aé", 2), "a…");
        assert_eq!(truncate("aé", 3), "aé");
        assert_eq!(truncate("日本語", 4), "日…");
        assert_eq!(truncate("日本語", 1), "…");
    }

    #[test]
    fn command_and_args() {
        let e = SlowlogEntry::new(1, 10, &["get", "user:12345"]);
        assert_eq!(e.command(), "GET");
        assert_eq!(e.args_line(4), "get user…");
        let none = SlowlogEntry::new(2, 10, &[]);
        assert_eq!(none.command(), "");
        assert_eq!(none.args_line(4), "");
    }

    #[test]
    fn entries_in_id_order() {
        let s = SnapshotBuilder::new()
            .slowlog(vec![
                SlowlogEntry::new(7, 1, &["b"]),
                SlowlogEntry::new(3, 1, &["a"]),
            ])
            .build();
        let ids: Vec<u64> = s.slowlog_entries().iter().map(|e| e.id).collect();
        assert_eq!(ids, [3, 7]);
        assert!(SnapshotBuilder::new().build().slowlog_entries().is_empty());
    }
}
