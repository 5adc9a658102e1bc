//! `lookout config`: the settings `lookout run` would use, each with where
//! it came from, printed as an aligned table or as JSON lines.

use std::io::Write;

use anyhow::Result;
use serde_json::Value;

use crate::config::shown::Shown;
use crate::untrusted::escape;

/// The widest the value column is aligned to; a longer value (an `allow`
/// list) runs over, pushing its row's source along.
const VALUE_WIDTH: usize = 40;

/// Writes `shown` to `out`: one JSON object per setting (`key`, `value`,
/// `source`) with `json`, else a `KEY  VALUE  SOURCE` table.
///
/// # Errors
/// Writing to `out` failed.
pub(crate) fn print(shown: &[Shown], json: bool, out: &mut impl Write) -> Result<()> {
    if json {
        for s in shown {
            writeln!(out, "{}", serde_json::to_string(s)?)?;
        }
        return Ok(());
    }
    let rows: Vec<[String; 3]> = shown
        .iter()
        .map(|s| [s.key.clone(), text(&s.value), s.layer.as_str().to_owned()])
        .collect();
    let head = ["KEY", "VALUE", "SOURCE"].map(str::to_owned);
    super::write_table(out, &head, &rows, [usize::MAX, VALUE_WIDTH, usize::MAX])?;
    Ok(())
}

/// A value for the table: text as it is (escaped for the terminal), `-`
/// when unset, anything else as JSON.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => escape(s),
        Value::Null => "-".to_owned(),
        other => escape(&other.to_string()),
    }
}
