//! Reading typed settings handed to `configure`, with defaults and error
//! messages that name the key.

use std::fmt;

use crate::{Setting, Value, ValueKind};

/// The error text `configure` returns for a bad value:
/// ``key `threshold` must be >= 0, got -3``.
pub fn invalid(key: &str, requirement: &str, got: impl fmt::Display) -> String {
    format!("key `{key}` must be {requirement}, got {got}")
}

/// A value as it reads in an error message: text quoted, numbers plain.
fn shown(value: &Value) -> String {
    match value {
        Value::Text(s) => format!("{s:?}"),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Boolean(b) => b.to_string(),
    }
}

/// Typed, by-name access to the settings handed to `configure`.
///
/// The host passes every declared key, already of the declared kind, so the
/// defaults here only matter when a watcher is driven by something else (a
/// test, an older host).
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    settings: &'a [Setting],
}

impl<'a> Settings<'a> {
    /// Wraps the settings handed to `configure`.
    pub fn new(settings: &'a [Setting]) -> Self {
        Settings { settings }
    }

    /// The value of the last setting named `name` (a later one overrides).
    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.settings
            .iter()
            .rev()
            .find(|s| s.name == name)
            .map(|s| &s.value)
    }

    fn wrong_kind(name: &str, kind: ValueKind, value: &Value) -> String {
        invalid(
            name,
            kind.describe(),
            format_args!("{} {}", value.kind().describe(), shown(value)),
        )
    }

    /// Setting `name` as an integer, `default` when absent.
    pub fn integer(&self, name: &str, default: i64) -> Result<i64, String> {
        match self.get(name) {
            None => Ok(default),
            Some(Value::Integer(i)) => Ok(*i),
            Some(v) => Err(Self::wrong_kind(name, ValueKind::Integer, v)),
        }
    }

    /// Setting `name` as a float (an integer is widened), `default` when
    /// absent.
    pub fn float(&self, name: &str, default: f64) -> Result<f64, String> {
        match self.get(name) {
            None => Ok(default),
            Some(Value::Float(f)) => Ok(*f),
            Some(Value::Integer(i)) => Ok(*i as f64),
            Some(v) => Err(Self::wrong_kind(name, ValueKind::Float, v)),
        }
    }

    /// Setting `name` as text, `default` when absent.
    pub fn text(&self, name: &str, default: &'a str) -> Result<&'a str, String> {
        match self.get(name) {
            None => Ok(default),
            Some(Value::Text(s)) => Ok(s),
            Some(v) => Err(Self::wrong_kind(name, ValueKind::Text, v)),
        }
    }

    /// Setting `name` as a boolean, `default` when absent.
    pub fn boolean(&self, name: &str, default: bool) -> Result<bool, String> {
        match self.get(name) {
            None => Ok(default),
            Some(Value::Boolean(b)) => Ok(*b),
            Some(v) => Err(Self::wrong_kind(name, ValueKind::Boolean, v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::setting;

    #[test]
    fn typed_reads_with_defaults() {
        let list = [
            setting("n", 3i64),
            setting("f", 0.5),
            setting("wide", 2i64),
            setting("t", "a,b"),
            setting("b", true),
        ];
        let s = Settings::new(&list);
        assert_eq!(s.integer("n", 0), Ok(3));
        assert_eq!(s.integer("absent", 7), Ok(7));
        assert_eq!(s.float("f", 0.0), Ok(0.5));
        assert_eq!(s.float("wide", 0.0), Ok(2.0));
        assert_eq!(s.float("absent", 0.9), Ok(0.9));
        assert_eq!(s.text("t", ""), Ok("a,b"));
        assert_eq!(s.text("absent", "dflt"), Ok("dflt"));
        assert_eq!(s.boolean("b", false), Ok(true));
        assert_eq!(s.boolean("absent", true), Ok(true));
    }

    #[test]
    fn later_setting_wins() {
        let list = [setting("n", 1i64), setting("n", 2i64)];
        assert_eq!(Settings::new(&list).integer("n", 0), Ok(2));
    }

    #[test]
    fn wrong_kind_names_the_key() {
        let list = [setting("threshold", "high"), setting("ratio", true)];
        let s = Settings::new(&list);
        assert_eq!(
            s.integer("threshold", 5).unwrap_err(),
            "key `threshold` must be an integer, got a text \"high\""
        );
        assert_eq!(
            s.float("ratio", 0.9).unwrap_err(),
            "key `ratio` must be a float, got a boolean true"
        );
    }

    #[test]
    fn invalid_message_shape() {
        assert_eq!(
            invalid("threshold", ">= 0", -3),
            "key `threshold` must be >= 0, got -3"
        );
    }
}
