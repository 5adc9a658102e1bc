//! The one place the host reads the WIT package: bindings of every version
//! of `lookout:watcher` it loads, each generated from its folder under
//! `wit/versions/` (`wit/watcher.wit` is a copy of the newest, for watcher
//! authors). Exports are called asynchronously so that a call can be
//! abandoned at its deadline wherever it is, host calls included; the
//! conversions between versions are in `super::convert`.

/// `lookout:watcher@0.4.0` (`wit/versions/0.4.0`), the current version:
/// the types the rest of the host works with.
pub(super) mod v0_4_0 {
    #![allow(missing_docs)]
    wasmtime::component::bindgen!({
        path: "../wit/versions/0.4.0",
        world: "watcher",
        exports: { default: async },
    });
}

/// `lookout:watcher@0.3.0` (`wit/versions/0.3.0`), before conditions and
/// narrowed needs: watchers built for it keep loading.
pub(super) mod v0_3_0 {
    #![allow(missing_docs)]
    wasmtime::component::bindgen!({
        path: "../wit/versions/0.3.0",
        world: "watcher",
        exports: { default: async },
    });
}

/// `lookout:watcher@0.2.0` (`wit/versions/0.2.0`), before declared probes:
/// watchers built for it keep loading.
pub(super) mod v0_2_0 {
    #![allow(missing_docs)]
    wasmtime::component::bindgen!({
        path: "../wit/versions/0.2.0",
        world: "watcher",
        exports: { default: async },
    });
}

/// The current version's types.
pub use v0_4_0::lookout::watcher::types as wit;

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use crate::sandbox::engine::{OLDER_VERSIONS, PACKAGE, VERSION};

    fn wit_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit")
    }

    /// The version folders under `wit/versions`, oldest first (by semver).
    fn versions() -> Vec<(u64, u64, u64)> {
        let dir = wit_dir().join("versions");
        let mut found: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| {
                let name = entry.unwrap().file_name().into_string().unwrap();
                let parts: Vec<u64> = name
                    .split('.')
                    .map(|n| n.parse().unwrap_or_else(|_| panic!("wit/versions/{name}")))
                    .collect();
                assert_eq!(
                    parts.len(),
                    3,
                    "wit/versions/{name} is not MAJOR.MINOR.PATCH"
                );
                (parts[0], parts[1], parts[2])
            })
            .collect();
        found.sort_unstable();
        found
    }

    fn shown((major, minor, patch): (u64, u64, u64)) -> String {
        format!("{major}.{minor}.{patch}")
    }

    /// Authors and the SDK build from `wit/watcher.wit`: it is the newest
    /// version under `wit/versions/` byte for byte, that version is the
    /// one the host speaks, and each version folder's package line names
    /// its folder.
    #[test]
    fn wit_watcher_is_the_newest_version() {
        let versions = versions();
        let newest = shown(*versions.last().expect("no folder under wit/versions"));
        let current = std::fs::read(wit_dir().join("watcher.wit")).unwrap();
        let copy = std::fs::read(wit_dir().join(format!("versions/{newest}/watcher.wit"))).unwrap();
        assert!(
            current == copy,
            "wit/watcher.wit differs from wit/versions/{newest}/watcher.wit"
        );
        assert_eq!(VERSION, newest);
        for version in versions.into_iter().map(shown) {
            let text =
                std::fs::read_to_string(wit_dir().join(format!("versions/{version}/watcher.wit")))
                    .unwrap();
            let package = format!("package {PACKAGE}@{version};");
            assert!(
                text.lines().any(|line| line == package),
                "wit/versions/{version}/watcher.wit has no line `{package}`"
            );
        }
    }

    /// The versions under `wit/versions/` are exactly the ones the host
    /// loads: a new folder needs its bindings here and in the engine.
    #[test]
    fn every_version_folder_is_loaded() {
        let versions: Vec<String> = versions().into_iter().map(shown).collect();
        let mut loaded: Vec<&str> = OLDER_VERSIONS.iter().rev().copied().collect();
        loaded.push(VERSION);
        assert_eq!(versions, loaded);
    }
}
