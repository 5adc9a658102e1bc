//! Running as a service: the sample `packaging/lookout.toml` holds every
//! config key with its real default, the configuration reference in
//! `docs/configuration.md` names the same keys as the code, `make install`
//! puts the files where `docs/install.md` says, and `--version` names the
//! watcher ABI.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use lookout::explain_settings as explain;
use lookout::{FileConfig, Overrides, Settings};

use crate::support::*;

/// The sample config as shipped.
fn sample() -> String {
    std::fs::read_to_string(repo().join("packaging/lookout.toml")).unwrap()
}

/// A line of the sample that is a setting or a table header, commented out:
/// `# key = value` or `# [table]`.
fn commented_setting(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("# ")?;
    let key = rest.split(" = ").next()?;
    let is_key = rest.contains(" = ")
        && !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c));
    (is_key || rest.starts_with('[')).then_some(rest)
}

/// Which lines of the sample to uncomment.
#[derive(Clone, Copy)]
enum Uncomment {
    /// Only the defaults: no example line, no example table.
    Defaults,
    /// Every setting and table but these keys and tables (alternatives to
    /// others: `redis_url` or `[[targets]]`, `every_polls` or `interval_s`,
    /// Alertmanager's `bearer_token_file` or `username` and
    /// `password_file`).
    AllBut(&'static [&'static str]),
}

/// The two ways to uncomment every setting but one of each pair of
/// alternatives; together they hold every key.
const EVERYTHING: [Uncomment; 2] = [
    Uncomment::AllBut(&["redis_url", "every_polls", "bearer_token_file"]),
    Uncomment::AllBut(&["[[targets]]", "interval_s", "username", "password_file"]),
];

/// The sample with the chosen `# key = value` and `# [table]` lines
/// uncommented. A commented-out table header starts an example table; a
/// line whose comment says "example" is an example value.
fn uncommented(which: Uncomment) -> String {
    let mut out = String::new();
    let mut example_table = false;
    let mut skipped_table = false;
    for line in sample().lines() {
        let setting = commented_setting(line);
        let name = |rest: &str| rest.split([' ', '#']).next().unwrap_or_default().to_owned();
        if line.starts_with('[') {
            (example_table, skipped_table) = (false, false);
        } else if let Some(rest) = setting.filter(|r| r.starts_with('[')) {
            example_table = true;
            skipped_table =
                matches!(which, Uncomment::AllBut(skip) if skip.contains(&&*name(rest)));
        }
        let keep = match (which, setting) {
            (_, None) => false,
            (Uncomment::Defaults, Some(_)) => !example_table && !line.contains("# example"),
            (Uncomment::AllBut(skip), Some(rest)) => {
                !skipped_table && !skip.contains(&&*name(rest))
            }
        };
        match setting {
            Some(rest) if keep => out.push_str(rest),
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// `text` as a config file loaded by the daemon's own loader, with the
/// files its examples name under /etc/lookout (certificates, password
/// files) made in `tmp`.
fn load(tmp: &Path, text: &str) -> anyhow::Result<Settings> {
    Settings::load(Some(&written(tmp, text)), Overrides::default())
}

/// `text` written to `tmp/lookout.toml`, with the files its examples name
/// under /etc/lookout (certificates, password files) made in `tmp`.
fn written(tmp: &Path, text: &str) -> PathBuf {
    let etc = tmp.join("etc-lookout");
    std::fs::create_dir_all(&etc).unwrap();
    let text = text.replace("/etc/lookout/", &format!("{}/", etc.display()));
    for line in text.lines() {
        let Some((_, rest)) = line.split_once(&format!("{}/", etc.display())) else {
            continue;
        };
        let name = rest.split('"').next().unwrap();
        let content = if name.ends_with(".password") {
            "example-password\n"
        } else {
            "-----BEGIN EXAMPLE-----\n"
        };
        std::fs::write(etc.join(name), content).unwrap();
    }
    let path = tmp.join("lookout.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Settings as text, without what depends on the file's path or the
/// environment (`cache_dir` defaults to `$XDG_CACHE_HOME/lookout`).
fn comparable(mut s: Settings) -> String {
    s.config_path = None;
    s.cache_dir = None;
    format!("{s:?}")
}

/// The sample parses as shipped (all commented: the defaults), with every
/// default line uncommented it resolves to exactly the built-in defaults
/// (so every value it shows is the real default), and with every line
/// uncommented, examples included, it is a valid configuration.
#[test]
fn sample_config_shows_the_real_defaults_and_parses_uncommented() {
    let tmp = tempfile::tempdir().unwrap();
    let defaults = comparable(Settings::load(None, Overrides::default()).unwrap());
    let shipped = load(tmp.path(), &sample()).unwrap();
    assert_eq!(comparable(shipped), defaults);
    let text = uncommented(Uncomment::Defaults);
    assert!(text.contains("\nslowlog_count = 128"), "{text}");
    let resolved = load(tmp.path(), &text).unwrap_or_else(|e| panic!("{e:#}\n{text}"));
    assert_eq!(comparable(resolved), defaults, "{text}");
    for which in EVERYTHING {
        let text = uncommented(which);
        let s = load(tmp.path(), &text).unwrap_or_else(|e| panic!("{e:#}\n{text}"));
        assert_eq!(s.discover.len(), 2, "{text}");
        assert!(s.limits.watchers.contains_key("slowlog"), "{text}");
        assert!(s.watchers.contains_key("client-delta"), "{text}");
    }
    let with_targets = load(tmp.path(), &uncommented(EVERYTHING[0])).unwrap();
    assert_eq!(with_targets.targets.len(), 1);
    assert_eq!(with_targets.targets[0].url, "rediss://cache-1:6380");
}

/// The names serde lists in "unknown field `bogus_key`, expected one of
/// `a`, `b`" for `text`, or `None` when `text` gives another answer.
fn expected_keys(text: &str) -> Option<Vec<String>> {
    let err = toml::from_str::<FileConfig>(text).err()?.to_string();
    let (_, list) = err.split_once("unknown field `bogus_key`, expected ")?;
    let list = list.lines().next().unwrap_or_default();
    Some(
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect(),
    )
}

/// True when `[header.name]` holds tables of its own: a map by name, such
/// as `[watchers.NAME]` (any keys) or `[limits.watchers.NAME]`.
fn is_map_of_tables(header: &str) -> bool {
    let text = format!("[{header}.name]\nbogus_key = 1\n");
    toml::from_str::<FileConfig>(&text).is_ok() || expected_keys(&text).is_some()
}

/// Every key the code accepts, as `key`, `table.key`, `targets.url` (for
/// `[[targets]]`) or `watchers.NAME` (a table per watcher), derived from
/// serde's own list of the keys of each table.
fn code_keys() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let top = expected_keys("bogus_key = 1\n").expect("the top level rejects unknown keys");
    for key in top {
        let table = expected_keys(&format!("[{key}]\nbogus_key = 1\n"))
            .or_else(|| expected_keys(&format!("[[{key}]]\nbogus_key = 1\n")));
        match table {
            Some(children) => {
                for child in children {
                    let path = format!("{key}.{child}");
                    if is_map_of_tables(&path) {
                        keys.insert(format!("{path}.NAME"));
                    } else {
                        keys.insert(path);
                    }
                }
            }
            None if is_map_of_tables(&key) => {
                keys.insert(format!("{key}.NAME"));
            }
            None => {
                keys.insert(key);
            }
        }
    }
    keys
}

/// The keys set in `table`, named as [`code_keys`] names them (`known`):
/// a table by name (`[watchers.client-delta]`) is the one key
/// `watchers.NAME`, and a known key holding a table (`targets.labels`) is
/// not descended into.
fn keys_in(
    table: &toml::Table,
    prefix: &str,
    known: &BTreeSet<String>,
    out: &mut BTreeSet<String>,
) {
    for (key, value) in table {
        let path = format!("{prefix}{key}");
        if known.contains(&format!("{path}.NAME")) {
            out.insert(format!("{path}.NAME"));
            continue;
        }
        match value {
            toml::Value::Table(t) if !known.contains(&path) => {
                keys_in(t, &format!("{path}."), known, out);
            }
            toml::Value::Array(items)
                if !known.contains(&path) && items.iter().all(toml::Value::is_table) =>
            {
                for item in items {
                    keys_in(item.as_table().unwrap(), &format!("{path}."), known, out);
                }
            }
            _ => {
                out.insert(path);
            }
        }
    }
}

/// The keys of the "## Configuration reference" table in
/// `docs/configuration.md`: the first backticked name of each row.
fn reference_keys() -> BTreeSet<String> {
    let page = std::fs::read_to_string(repo().join("docs/configuration.md")).unwrap();
    let (_, section) = page
        .split_once("\n## Configuration reference\n")
        .expect("docs/configuration.md has a `## Configuration reference` section");
    section
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("| `"))
        .map(|l| l.split('`').next().unwrap().to_owned())
        .collect()
}

/// Every key the code accepts is in the configuration reference
/// (`docs/configuration.md`) and in the sample config, and neither names a
/// key the code does not accept.
#[test]
fn readme_sample_and_code_name_the_same_config_keys() {
    let code = code_keys();
    for key in [
        "redis_url",
        "publish.url",
        "targets.url",
        "limits.memory_mib",
    ] {
        assert!(code.contains(key), "{key} missing from {code:?}");
    }
    assert!(code.contains("watchers.NAME") && code.contains("limits.watchers.NAME"));
    let reference = reference_keys();
    assert_eq!(
        reference.difference(&code).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "keys of docs/configuration.md's configuration reference the code does not accept"
    );
    assert_eq!(
        code.difference(&reference).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "keys missing from the configuration reference in docs/configuration.md (one row each)"
    );
    let mut sample = BTreeSet::new();
    for which in EVERYTHING {
        let table: toml::Table = uncommented(which).parse().unwrap();
        keys_in(&table, "", &code, &mut sample);
    }
    assert_eq!(sample, code, "keys of packaging/lookout.toml");
}

/// The `lookout.toml` examples of README's quick start (every `toml` block
/// of README.md) load as written.
#[test]
fn readme_quick_start_configs_load() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let blocks: Vec<&str> = readme
        .split("```toml\n")
        .skip(1)
        .map(|b| b.split("\n```").next().unwrap())
        .collect();
    assert!(
        blocks.len() >= 2,
        "README's quick start has its lookout.toml examples"
    );
    for block in blocks {
        let tmp = tempfile::tempdir().unwrap();
        if let Err(e) = load(tmp.path(), block) {
            panic!("this lookout.toml of README.md does not load: {e:#}\n{block}");
        }
    }
}

/// `lookout config` lists every key the code accepts and no other: with
/// every line of the sample uncommented, each key it shows, named as the
/// configuration reference names it (`targets[0].url` is `targets.url`,
/// `targets[0].tls.server_name` is under `targets.tls`, a watcher's table
/// is `watchers.NAME`), is a key of the code, and together they name them
/// all.
#[test]
fn config_command_lists_every_key() {
    let code = code_keys();
    let tmp = tempfile::tempdir().unwrap();
    let mut listed = BTreeSet::new();
    for which in EVERYTHING {
        let path = written(tmp.path(), &uncommented(which));
        for shown in explain(Some(&path), Overrides::default()).unwrap() {
            let key = reference_key(&shown.key, &code)
                .unwrap_or_else(|| panic!("`{}` is not a key of the code", shown.key));
            listed.insert(key);
        }
    }
    assert_eq!(listed, code);
}

/// `key` as [`code_keys`] names it: without indexes, a watcher's name as
/// `NAME`, and cut to the longest known key it starts with.
fn reference_key(key: &str, code: &BTreeSet<String>) -> Option<String> {
    let mut parts: Vec<String> = key
        .split('.')
        .map(|p| p.split('[').next().unwrap_or(p).to_owned())
        .collect();
    for i in 1..parts.len() {
        let path = parts[..i].join(".");
        if code.contains(&format!("{path}.NAME")) {
            parts[i] = "NAME".to_owned();
        }
    }
    (1..=parts.len())
        .rev()
        .map(|n| parts[..n].join("."))
        .find(|k| code.contains(k))
}

/// `make install DESTDIR=... PREFIX=/usr` (without building) puts the
/// binary, the bundled watchers, the unit (its paths under PREFIX) and the
/// sample config where docs/install.md says, and keeps an existing config.
#[test]
fn make_install_puts_the_files_where_documented() {
    plugins_dir();
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("root");
    let install = || {
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
    };
    install();
    let bin = dest.join("usr/bin/lookout");
    let out = Command::new(&bin).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("lookout "));
    for w in ALL_WATCHERS {
        assert!(
            dest.join(format!("usr/lib/lookout/plugins/{w}.wasm"))
                .is_file()
        );
    }
    let unit =
        std::fs::read_to_string(dest.join("usr/lib/systemd/system/lookout.service")).unwrap();
    for line in [
        "ExecStart=/usr/bin/lookout run --config /etc/lookout/lookout.toml",
        "WorkingDirectory=/usr/lib/lookout",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "DynamicUser=yes",
        "CacheDirectory=lookout",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} not in\n{unit}");
    }
    assert!(!unit.contains("/usr/local"), "{unit}");
    assert!(
        !unit
            .lines()
            .any(|l| l.starts_with("MemoryDenyWriteExecute=")),
        "wasmtime needs to make the code it compiles executable"
    );
    let config = dest.join("etc/lookout/lookout.toml");
    let installed = std::fs::read_to_string(&config).unwrap();
    assert_eq!(installed, sample().replace("/usr/local", "/usr"));
    load(tmp.path(), &installed).unwrap();
    std::fs::write(&config, "poll_interval = 1\n").unwrap();
    install();
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        "poll_interval = 1\n"
    );
}

/// `lookout --version` names the host's version and the watcher ABI.
#[test]
fn version_names_the_watcher_abi() {
    let out = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let want = format!(
        "lookout {} (watcher ABI {}@{})\n",
        env!("CARGO_PKG_VERSION"),
        lookout::WIT_PACKAGE,
        lookout::WIT_VERSION
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    assert!(want.contains("lookout:watcher@0.4.0"), "{want}");
}
