//! The `lookout` command line: its flags ([`args`]), the subcommands and
//! where each goes ([`cli`]), `lookout run`'s runtime and signals
//! ([`run`]), the authoring commands, `lookout tail`'s options, and the
//! subcommands that read the configuration and print what they find
//! (`lookout targets`, `lookout config`), and `lookout alerts`, which asks
//! a running daemon.

mod alerts;
mod args;
mod authoring;
mod cli;
pub(crate) mod config;
mod run;
mod tail;
pub(crate) mod targets;

pub use cli::main;

/// Writes `rows` under `head` as columns two spaces apart, each as wide as
/// its widest cell but no wider than `widest` (a longer cell runs over),
/// without trailing blanks.
///
/// # Errors
/// Writing to `out` failed.
pub(crate) fn write_table<const N: usize>(
    out: &mut impl std::io::Write,
    head: &[String; N],
    rows: &[[String; N]],
    widest: [usize; N],
) -> std::io::Result<()> {
    let mut widths = head.clone().map(|h| h.len());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for (w, most) in widths.iter_mut().zip(widest) {
        *w = (*w).min(most);
    }
    for row in std::iter::once(head).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    Ok(())
}
