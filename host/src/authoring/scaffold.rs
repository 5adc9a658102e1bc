//! `lookout new NAME`: a watcher crate that depends on the SDK, builds with
//! `cargo build --target wasm32-wasip2` and `cargo component build`, and
//! comes with a native unit test and a golden `lookout test` case.

use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

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
    normalise(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk"))
}

/// `path` without `.` and with each `..` taken out with the name before
/// it, as Cargo reads a path dependency.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push(part);
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// The SDK path the new crate at `root` writes: relative when the crate
/// sits inside the Lookout checkout the SDK belongs to (`CHECKOUT/plugins/sdk`),
/// so the two move together; absolute otherwise, so the crate can move on
/// its own. Both absolute and normalised.
fn sdk_path_for(root: &Path, sdk: &Path) -> PathBuf {
    let Some(checkout) = sdk.parent().and_then(Path::parent) else {
        return sdk.to_path_buf();
    };
    if checkout.parent().is_none() || !root.starts_with(checkout) {
        return sdk.to_path_buf();
    }
    let common = root
        .components()
        .zip(sdk.components())
        .take_while(|(a, b)| a == b)
        .count();
    let ups = root.components().count() - common;
    let mut relative: PathBuf = std::iter::repeat_n(Component::ParentDir, ups).collect();
    relative.extend(sdk.components().skip(common));
    relative
}

/// `text` as the inside of a TOML basic string (`"..."`).
fn toml_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
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
    let sdk = std::path::absolute(sdk)
        .map(|p| normalise(&p))
        .with_context(|| format!("SDK folder {}", sdk.display()))?;
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
    let absolute_root = std::path::absolute(&root)
        .map(|p| normalise(&p))
        .with_context(|| format!("folder {}", root.display()))?;
    let sdk_written = sdk_path_for(&absolute_root, &sdk);
    let Some(sdk_text) = sdk_written.to_str().map(toml_escaped) else {
        bail!(
            "SDK folder {}: the path is not UTF-8, which Cargo.toml cannot hold; pass --sdk \
             with a UTF-8 path",
            sdk.display()
        );
    };
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
    fn sdk_paths_are_normalised_and_relative_inside_the_checkout() {
        assert_eq!(
            normalise(Path::new("/checkout/host/../plugins/./sdk")),
            Path::new("/checkout/plugins/sdk")
        );
        assert_eq!(normalise(Path::new("../a/../b")), Path::new("../b"));
        assert!(
            !default_sdk()
                .components()
                .any(|c| c == Component::ParentDir)
        );
        let sdk = Path::new("/checkout/plugins/sdk");
        for (root, written) in [
            ("/checkout/my-watcher", "../plugins/sdk"),
            ("/checkout/plugins/my-watcher", "../sdk"),
            ("/checkout/work/a/my-watcher", "../../../plugins/sdk"),
            ("/elsewhere/my-watcher", "/checkout/plugins/sdk"),
            ("/checkout-2/my-watcher", "/checkout/plugins/sdk"),
        ] {
            assert_eq!(
                sdk_path_for(Path::new(root), sdk),
                Path::new(written),
                "{root}"
            );
        }
        assert_eq!(
            sdk_path_for(Path::new("/w/x"), Path::new("/plugins/sdk")),
            Path::new("/plugins/sdk"),
            "a checkout at / is not one"
        );
        assert_eq!(toml_escaped(r#"/a "b"\c"#), r#"/a \"b\"\\c"#);
        assert_eq!(toml_escaped("a\nb"), "a\\u000Ab");
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
