//! A watcher's settings: manifest defaults, then `NAME.toml` beside the
//! `.wasm`, then `[watchers.NAME]` of `lookout.toml`, each checked against
//! the keys and types the manifest declares.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::sandbox::wit::{ConfigKey, Manifest, Setting, Value, ValueKind};

/// One layer of settings and the file it came from, for error messages.
pub(crate) struct Layer<'a> {
    /// File the table was read from.
    pub origin: String,
    /// The settings.
    pub table: &'a toml::Table,
}

/// Reads `NAME.toml` beside a watcher, if present.
///
/// # Errors
/// The file exists but cannot be read or is not valid TOML.
pub(crate) fn read_side_file(wasm: &Path) -> Result<Option<(String, toml::Table)>> {
    let path = wasm.with_extension("toml");
    if !path.exists() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end())
    })?;
    Ok(Some((path.display().to_string(), table)))
}

/// Merges defaults and layers (later layers win) into the settings handed to
/// `configure`.
///
/// # Errors
/// A key the manifest does not declare, or a value of the wrong type; the
/// message names the file, the key and what was expected.
pub(crate) fn resolve(manifest: &Manifest, layers: &[Layer<'_>]) -> Result<Vec<Setting>> {
    let mut settings: Vec<Setting> = manifest
        .config
        .iter()
        .map(|k| Setting {
            name: k.name.clone(),
            value: k.default.clone(),
        })
        .collect();
    for layer in layers {
        for (key, raw) in layer.table {
            let Some(index) = manifest.config.iter().position(|k| &k.name == key) else {
                let known: Vec<&str> = manifest.config.iter().map(|k| k.name.as_str()).collect();
                bail!(
                    "{}: unknown key `{key}` for watcher {} (it accepts: {})",
                    layer.origin,
                    manifest.name,
                    if known.is_empty() {
                        "no keys".to_owned()
                    } else {
                        known.join(", ")
                    }
                );
            };
            let declared = &manifest.config[index];
            settings[index].value = convert(declared, raw).with_context(|| {
                format!("{}: key `{key}` of watcher {}", layer.origin, manifest.name)
            })?;
        }
    }
    Ok(settings)
}

/// Largest integer a float setting takes exactly: 2^53.
const MAX_EXACT_FLOAT_INT: i64 = 1 << 53;

fn convert(key: &ConfigKey, raw: &toml::Value) -> Result<Value> {
    Ok(match (key.kind, raw) {
        (ValueKind::Text, toml::Value::String(s)) => Value::Text(s.clone()),
        (ValueKind::Integer, toml::Value::Integer(n)) => Value::Integer(*n),
        (ValueKind::Float, toml::Value::Float(x)) if !x.is_finite() => {
            bail!("expected a finite number, got {x}")
        }
        (ValueKind::Float, toml::Value::Float(x)) => Value::Float(*x),
        (ValueKind::Float, toml::Value::Integer(n))
            if n.unsigned_abs() > MAX_EXACT_FLOAT_INT.unsigned_abs() =>
        {
            bail!(
                "expected a number from -{MAX_EXACT_FLOAT_INT} to {MAX_EXACT_FLOAT_INT} as an \
             integer (write larger ones as floats), got {n}"
            )
        }
        #[expect(clippy::cast_precision_loss, reason = "at most 2^53: exact")]
        (ValueKind::Float, toml::Value::Integer(n)) => Value::Float(*n as f64),
        (ValueKind::Boolean, toml::Value::Boolean(b)) => Value::Boolean(*b),
        (kind, other) => bail!(
            "expected {}, got {} {other:?}",
            kind_name(kind),
            other.type_str()
        ),
    })
}

/// Human name of a value kind.
pub(crate) fn kind_name(kind: ValueKind) -> &'static str {
    match kind {
        ValueKind::Text => "a string",
        ValueKind::Integer => "an integer",
        ValueKind::Float => "a number",
        ValueKind::Boolean => "a boolean",
    }
}

/// A value as TOML-ish text, for manifests printed to people.
pub(crate) fn show(value: &Value) -> String {
    match value {
        Value::Text(s) => format!("{s:?}"),
        Value::Integer(n) => n.to_string(),
        Value::Float(x) => x.to_string(),
        Value::Boolean(b) => b.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::wit::{Cadence, Needs};

    fn manifest() -> Manifest {
        Manifest {
            name: "client-delta".into(),
            version: "0.1.0".into(),
            description: "d".into(),
            config: vec![ConfigKey {
                name: "threshold".into(),
                kind: ValueKind::Integer,
                default: Value::Integer(5),
                description: "x".into(),
            }],
            needs: Needs {
                info_fields: vec![],
                info_sections: vec![],
                slowlog: false,
                probes: vec![],
            },
            cadence: Cadence::EveryPoll,
        }
    }

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn defaults_then_layers() {
        let m = manifest();
        let s = resolve(&m, &[]).unwrap();
        assert!(matches!(s[0].value, Value::Integer(5)));
        let side = table("threshold = 7");
        let main = table("threshold = 9");
        let layers = [
            Layer {
                origin: "a.toml".into(),
                table: &side,
            },
            Layer {
                origin: "lookout.toml".into(),
                table: &main,
            },
        ];
        let s = resolve(&m, &layers).unwrap();
        assert!(matches!(s[0].value, Value::Integer(9)));
    }

    #[test]
    fn unknown_key_and_wrong_type_are_named() {
        let m = manifest();
        let bad = table("treshold = 7");
        let err = resolve(
            &m,
            &[Layer {
                origin: "p/client-delta.toml".into(),
                table: &bad,
            }],
        )
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("p/client-delta.toml") && text.contains("treshold"),
            "{text}"
        );
        assert!(text.contains("threshold"), "{text}");
        let bad = table("threshold = 'high'");
        let err = resolve(
            &m,
            &[Layer {
                origin: "f.toml".into(),
                table: &bad,
            }],
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("expected an integer"),
            "{err:#}"
        );
    }

    use proptest::prelude::Strategy as _;

    proptest::proptest! {
        /// Random TOML values for keys of every kind: an error naming the
        /// key, or settings of the declared kind with finite floats; never
        /// a panic.
        #[test]
        fn random_settings_are_refused_or_valid(
            values in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::prelude::any::<i64>().prop_map(toml::Value::Integer),
                    proptest::prelude::any::<f64>().prop_map(toml::Value::Float),
                    proptest::prelude::any::<bool>().prop_map(toml::Value::Boolean),
                    "\\PC{0,8}".prop_map(toml::Value::String),
                ],
                4,
            ),
        ) {
            let mut m = manifest();
            m.config = [
                ("i", ValueKind::Integer, Value::Integer(1)),
                ("f", ValueKind::Float, Value::Float(0.5)),
                ("b", ValueKind::Boolean, Value::Boolean(true)),
                ("t", ValueKind::Text, Value::Text(String::new())),
            ]
            .into_iter()
            .map(|(name, kind, default)| ConfigKey {
                name: name.into(),
                kind,
                default,
                description: String::new(),
            })
            .collect();
            let table: toml::Table = ["i", "f", "b", "t"]
                .into_iter()
                .map(str::to_owned)
                .zip(values)
                .collect();
            let layers = [Layer { origin: "w.toml".into(), table: &table }];
            match resolve(&m, &layers) {
                Ok(settings) => {
                    for (setting, key) in settings.iter().zip(&m.config) {
                        let kind_matches = match (&setting.value, key.kind) {
                            (Value::Integer(_), ValueKind::Integer)
                            | (Value::Boolean(_), ValueKind::Boolean)
                            | (Value::Text(_), ValueKind::Text) => true,
                            (Value::Float(x), ValueKind::Float) => x.is_finite(),
                            _ => false,
                        };
                        proptest::prop_assert!(kind_matches, "{}", setting.name);
                    }
                }
                Err(e) => {
                    let e = format!("{e:#}");
                    proptest::prop_assert!(e.contains("w.toml") && e.contains("key `"), "{e}");
                }
            }
        }
    }

    #[test]
    fn float_settings_are_finite() {
        let mut m = manifest();
        m.config[0].kind = ValueKind::Float;
        m.config[0].default = Value::Float(0.5);
        for (text, says) in [
            ("threshold = nan", "finite"),
            ("threshold = inf", "finite"),
            ("threshold = -inf", "finite"),
            (
                "threshold = 9007199254740993",
                "-9007199254740992 to 9007199254740992",
            ),
        ] {
            let bad = table(text);
            let err = resolve(
                &m,
                &[Layer {
                    origin: "w.toml".into(),
                    table: &bad,
                }],
            )
            .unwrap_err();
            let err = format!("{err:#}");
            assert!(
                err.contains("w.toml") && err.contains("threshold") && err.contains(says),
                "{text}: {err}"
            );
        }
        let ok = table("threshold = 9007199254740992");
        let s = resolve(
            &m,
            &[Layer {
                origin: "w.toml".into(),
                table: &ok,
            }],
        )
        .unwrap();
        assert!(matches!(s[0].value, Value::Float(x) if x == 9_007_199_254_740_992.0));
    }
}
