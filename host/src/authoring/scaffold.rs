//! `lookout new NAME`: a watcher crate that depends on the SDK, builds with
//! `cargo build --target wasm32-wasip2` and `cargo component build`, and
//! comes with a native unit test and a golden `lookout test` case.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The files of a new watcher: path in the crate, template text.
const TEMPLATES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../templates/watcher/Cargo.toml.in"),
    ),
    (
        "src/lib.rs",
        include_str!("../../templates/watcher/src/lib.rs.in"),
    ),
    (
        "{{name}}.toml",
        include_str!("../../templates/watcher/watcher.toml.in"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/watcher/gitignore.in"),
    ),
    (
        "golden/snapshots.jsonl",
        include_str!("../../templates/watcher/golden/snapshots.jsonl"),
    ),
    (
        "golden/expected.jsonl",
        include_str!("../../templates/watcher/golden/expected.jsonl.in"),
    ),
];

/// Where this build of Lookout found the SDK crate.
pub(crate) fn default_sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk")
}

/// Checks a watcher name: lower-case ASCII letters, digits and dashes,
/// starting with a letter (it is the crate name, the `.wasm` file stem and
/// the events' `target`).
pub(crate) fn check_name(name: &str) -> Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !ok {
        bail!(
            "watcher name `{name}`: use lower-case letters, digits and dashes, starting with a letter (for example `hit-ratio`)"
        );
    }
    Ok(())
}

/// `hit-ratio` -> `HitRatio`.
fn type_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Writes a new watcher crate `dir/name`, using the SDK at `sdk`; returns
/// the crate's folder. Refuses to touch an existing folder.
///
/// # Errors
/// A bad name, an existing target folder, an SDK folder without the SDK,
/// or a file that cannot be written.
pub(crate) fn new_watcher(name: &str, dir: &Path, sdk: &Path) -> Result<PathBuf> {
    check_name(name)?;
    let sdk = std::path::absolute(sdk).with_context(|| format!("SDK folder {}", sdk.display()))?;
    let sdk_manifest = sdk.join("Cargo.toml");
    let is_sdk = std::fs::read_to_string(&sdk_manifest)
        .is_ok_and(|text| text.contains("name = \"lookout-watcher\""));
    if !is_sdk {
        bail!(
            "{} is not the lookout-watcher SDK crate; pass --sdk PATH/TO/lookout/plugins/sdk",
            sdk.display()
        );
    }
    let root = dir.join(name);
    if root.exists() {
        bail!(
            "{} already exists; pick another name or --dir",
            root.display()
        );
    }
    let sdk_text = sdk.to_string_lossy();
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{type}}", &type_name(name))
            .replace("{{sdk}}", &sdk_text)
    };
    for (path, template) in TEMPLATES {
        let file = root.join(fill(path));
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&file, fill(template))
            .with_context(|| format!("writing {}", file.display()))?;
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("hit-ratio").is_ok());
        assert!(check_name("w2").is_ok());
        for bad in ["", "Hit", "2w", "a_b", "a-", "a b", "../x"] {
            let err = check_name(bad).unwrap_err().to_string();
            assert!(err.contains("lower-case letters"), "{bad}: {err}");
        }
        assert_eq!(type_name("hit-ratio"), "HitRatio");
        assert_eq!(type_name("w2"), "W2");
    }

    #[test]
    fn writes_a_crate_and_refuses_to_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        let root = new_watcher("key-count", tmp.path(), &default_sdk()).unwrap();
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"key-count\""));
        assert!(!manifest.contains("{{"));
        let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
        assert!(lib.contains("pub struct KeyCount"));
        assert!(lib.contains("export!(KeyCount)"));
        assert!(root.join("key-count.toml").is_file());
        let expected = std::fs::read_to_string(root.join("golden/expected.jsonl")).unwrap();
        assert!(expected.contains("\"target\":\"key-count\""));
        let err = new_watcher("key-count", tmp.path(), &default_sdk()).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        let err = new_watcher("other", tmp.path(), tmp.path()).unwrap_err();
        assert!(err.to_string().contains("--sdk"), "{err}");
    }
}
