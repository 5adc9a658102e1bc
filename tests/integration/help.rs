//! `lookout --help` and every subcommand's `--help` name the docs pages
//! that explain them, pages that exist in the source tree and that `make
//! install` puts under PREFIX/share/doc/lookout.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::*;

/// The help of `lookout ARGS... --help`, checked to have succeeded.
fn help(cache: &Path, args: &[&str]) -> String {
    let mut cmd = lookout_cmd(cache);
    cmd.args(args).arg("--help");
    let (status, out, err) = run_to_end(cmd, Duration::from_secs(20));
    assert!(status.success(), "lookout {args:?} --help: {err}");
    out
}

/// The subcommands `lookout --help` lists under `Commands:`, but `help`.
fn subcommands(top: &str) -> Vec<String> {
    top.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// The `docs/*.md` paths a help text names.
fn pages(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || "_-./".contains(c)))
        .map(|word| word.trim_end_matches('.'))
        .filter(|word| word.starts_with("docs/") && word.ends_with(".md"))
        .map(str::to_owned)
        .collect()
}

/// The top-level help names README.md and docs/ and where they are
/// installed; each subcommand's help names at least one docs page; every
/// page named is in the source tree.
#[test]
fn every_help_names_docs_pages_that_exist() {
    let tmp = tempfile::tempdir().unwrap();
    let top = help(tmp.path(), &[]);
    assert!(top.contains("Docs: README.md"), "{top}");
    assert!(top.contains("/usr/local/share/doc/lookout"), "{top}");
    assert!(repo().join("README.md").is_file());
    let subs = subcommands(&top);
    for known in ["run", "check", "record", "test", "new", "targets", "config"] {
        assert!(subs.iter().any(|s| s == known), "{known} in {subs:?}");
    }
    let mut missing = Vec::new();
    let mut named = pages(&top);
    for sub in &subs {
        let text = help(tmp.path(), &[sub]);
        let found = pages(&text);
        assert!(
            !found.is_empty(),
            "lookout {sub} --help names no docs page:\n{text}"
        );
        assert!(
            text.contains("PREFIX/share/doc/lookout"),
            "lookout {sub} --help: {text}"
        );
        named.extend(found);
    }
    named.sort();
    named.dedup();
    for page in &named {
        if !repo().join(page).is_file() {
            missing.push(page.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "help names pages that do not exist: {missing:?}"
    );
}

/// `make install DESTDIR=... PREFIX=/usr` (without building) puts README.md
/// and every page the help names in /usr/share/doc/lookout.
#[test]
fn make_install_puts_the_pages_the_help_names() {
    plugins_dir();
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("root");
    let out = Command::new("make")
        .current_dir(repo())
        .arg("--no-print-directory")
        .arg("install")
        .arg("INSTALL_DEPS=")
        .arg(format!("LOOKOUT_BIN={}", env!("CARGO_BIN_EXE_lookout")))
        .arg(format!("DESTDIR={}", dest.display()))
        .arg("PREFIX=/usr")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = dest.join("usr/share/doc/lookout");
    assert_eq!(
        std::fs::read(doc.join("README.md")).unwrap(),
        std::fs::read(repo().join("README.md")).unwrap()
    );
    let top = help(tmp.path(), &[]);
    let mut named = pages(&top);
    for sub in subcommands(&top) {
        named.extend(pages(&help(tmp.path(), &[&sub])));
    }
    for page in named {
        if repo().join(&page).is_file() {
            assert!(doc.join(&page).is_file(), "{page} not installed");
        }
    }
    assert!(doc.join("docs/sdk.md").is_file());
}
