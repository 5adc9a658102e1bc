//! What `lookout tail` prints: stream entries parsed back into envelopes,
//! the filters, and the two formats (aligned, coloured lines for a
//! terminal; the envelope's JSON for anything else).

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::delivery::envelope::{Envelope, EnvelopeCondition, Level};
use crate::untrusted::{escape, is_invisible, json_c1};

/// Why a stream entry is not an envelope.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EntryError {
    /// A key of the wire format is absent.
    #[error("no `{0}` field")]
    Missing(&'static str),
    /// A key holds a value of the wrong kind.
    #[error("`{key}` is not {expected}: {value:?}")]
    Bad {
        /// The key.
        key: &'static str,
        /// What it should hold.
        expected: &'static str,
        /// What it holds.
        value: String,
    },
}

/// A level named on the command line or in a stream entry.
///
/// # Errors
/// Anything but `debug`, `info`, `warn` or `error`.
pub(crate) fn parse_level(text: &str) -> Result<Level, String> {
    match text {
        "debug" => Ok(Level::Debug),
        "info" => Ok(Level::Info),
        "warn" => Ok(Level::Warn),
        "error" => Ok(Level::Error),
        _ => Err(format!(
            "`{text}` is not a level: debug, info, warn or error"
        )),
    }
}

/// Rebuilds an envelope from a stream entry's field-value pairs, laid out
/// as [`Envelope::stream_fields`] writes them: scalars as strings,
/// `fields` and (when present) `condition` as JSON object strings.
///
/// # Errors
/// A key is missing or holds something of the wrong kind.
pub(crate) fn envelope_from_entry(pairs: &[(String, String)]) -> Result<Envelope, EntryError> {
    let get = |key: &'static str| {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .ok_or(EntryError::Missing(key))
    };
    let bad = |key: &'static str, expected: &'static str, value: &str| EntryError::Bad {
        key,
        expected,
        value: value.to_owned(),
    };
    let number = |key: &'static str| {
        let text = get(key)?;
        text.parse::<u32>()
            .map_err(|_| bad(key, "an unsigned integer", text))
    };
    // In the wire order, so the first missing key is the one named.
    let v = number("v")?;
    let id = get("id")?.to_owned();
    let ts = get("ts")?.to_owned();
    let service = get("service")?.to_owned();
    let host = get("host")?.to_owned();
    let level = get("level")?;
    let level = parse_level(level).map_err(|_| bad("level", "a level", level))?;
    let pid = number("pid")?;
    let target = get("target")?.to_owned();
    let msg = get("msg")?.to_owned();
    let fields = get("fields")?;
    let fields = serde_json::from_str::<Map<String, Value>>(fields)
        .map_err(|_| bad("fields", "a JSON object", fields))?;
    let condition = match get("condition") {
        Err(_) => None,
        Ok(text) => Some(
            serde_json::from_str::<EnvelopeCondition>(text)
                .map_err(|_| bad("condition", "a condition object", text))?,
        ),
    };
    Ok(Envelope {
        v,
        id,
        ts,
        service,
        host,
        level,
        pid,
        target,
        msg,
        fields,
        condition,
    })
}

/// Which envelopes are printed; an empty list lets every value through.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    /// Envelopes at this level or above.
    pub min_level: Option<Level>,
    /// Envelopes whose `target` is one of these.
    pub targets: Vec<String>,
    /// Envelopes whose `fields.instance` is one of these.
    pub instances: Vec<String>,
}

impl Filter {
    /// Whether `env` passes every filter.
    pub(crate) fn matches(&self, env: &Envelope) -> bool {
        let instance = env.fields.get("instance").and_then(Value::as_str);
        self.min_level.is_none_or(|min| env.level >= min)
            && (self.targets.is_empty() || self.targets.contains(&env.target))
            && (self.instances.is_empty()
                || instance.is_some_and(|i| self.instances.iter().any(|x| x == i)))
    }
}

/// How envelopes are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// The envelope's JSON as published, one per line.
    Json,
    /// Aligned lines for a person, with ANSI colours when `colour`.
    Human {
        /// Colour the time, level, target and field names.
        colour: bool,
    },
}

const RESET: &str = "\x1b[0m";
const DIM: &str = "\x1b[2m";
const CYAN: &str = "\x1b[36m";

/// The colour of a level.
fn level_colour(level: Level) -> &'static str {
    match level {
        Level::Debug => "\x1b[34m",
        Level::Info => "\x1b[32m",
        Level::Warn => "\x1b[33m",
        Level::Error => "\x1b[1;31m",
    }
}

/// Turns envelopes into lines. Columns widen to the widest instance and
/// target seen so far, so lines stay aligned as the fleet shows itself.
#[derive(Debug)]
pub(crate) struct Printer {
    format: Format,
    instance_width: usize,
    target_width: usize,
}

impl Printer {
    /// A printer in `format`.
    pub(crate) fn new(format: Format) -> Self {
        Self {
            format,
            // `127.0.0.1:6379` and `memory-pressure` fit from the start.
            instance_width: 14,
            target_width: 15,
        }
    }

    /// The line for `env`, without its newline. Every piece of text taken
    /// from the envelope is escaped (anyone who can write to the stream
    /// controls it): in human lines, control characters, escape sequences
    /// and bidirectional or other invisible format characters become
    /// visible `\u{..}` escapes; the JSON line is the envelope as
    /// published, with C1 controls (which JSON allows raw) as `\u00XX`.
    pub(crate) fn line(&mut self, env: &Envelope) -> String {
        let colour = match self.format {
            Format::Json => return json_c1(&env.to_json()),
            Format::Human { colour } => colour,
        };
        let paint = |code: &'static str| if colour { code } else { "" };
        let reset = paint(RESET);
        let instance = escape(
            env.fields
                .get("instance")
                .and_then(Value::as_str)
                .unwrap_or("-"),
        );
        let target = escape(&env.target);
        self.instance_width = self.instance_width.max(instance.chars().count());
        self.target_width = self.target_width.max(target.chars().count());
        // `[firing over-max-lag jobs/workers] `: the condition it starts
        // or ends.
        let condition = env.condition.as_ref().map_or_else(String::new, |c| {
            format!(
                "{lc}[{} {} {}]{reset} ",
                c.state.as_str(),
                escape(&c.kind),
                escape(&c.key),
                lc = paint(level_colour(env.level)),
            )
        });
        let mut line = format!(
            "{dim}{time}{reset} {lc}{level:<5}{reset}  {instance:<iw$}  {cyan}{target:<tw$}{reset}  {condition}{msg}",
            dim = paint(DIM),
            time = clock(&env.ts),
            lc = paint(level_colour(env.level)),
            level = escape(&env.level.as_str().to_uppercase()),
            iw = self.instance_width,
            cyan = paint(CYAN),
            tw = self.target_width,
            msg = escape(&env.msg),
        );
        for (key, value) in env.fields.iter().filter(|(k, _)| *k != "instance") {
            let _ = write!(
                line,
                "  {dim}{key}={reset}{value}",
                dim = paint(DIM),
                key = escape(key),
                value = field_value(value),
            );
        }
        line
    }
}

/// `HH:MM:SS.mmm` of an RFC 3339 timestamp (UTC, as envelopes carry it),
/// or the whole timestamp when it has another shape; escaped either way.
fn clock(ts: &str) -> String {
    match ts.get(11..23) {
        Some(time) if ts.as_bytes().get(10) == Some(&b'T') => escape(time),
        _ => escape(ts),
    }
}

/// A field value: a plain word as it is, other strings quoted (with `"`
/// and `\` escaped), other values as JSON; escaped in every case.
fn field_value(value: &Value) -> String {
    match value {
        Value::String(s)
            if !s.is_empty()
                && !s.chars().any(|c| {
                    c.is_whitespace()
                        || c.is_control()
                        || is_invisible(c)
                        || matches!(c, '"' | '=' | '\\')
                }) =>
        {
            escape(s)
        }
        Value::String(s) => format!(
            "\"{}\"",
            escape(&s.replace('\\', "\\\\").replace('"', "\\\""))
        ),
        other => escape(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::envelope::Origin;
    use crate::delivery::envelope::fields;

    fn entry(env: &Envelope) -> Vec<(String, String)> {
        env.stream_fields()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
    }

    #[test]
    fn entries_round_trip() {
        let origin = Origin::new("redis", "127.0.0.1:6379");
        let env = origin.envelope(Level::Warn, "slowlog", "slow", fields! {"n" => 1.5});
        assert_eq!(envelope_from_entry(&entry(&env)).unwrap(), env);
    }

    #[test]
    fn conditions_round_trip_and_show() {
        let origin = Origin::new("redis", "127.0.0.1:6379");
        let mut env = origin.envelope(Level::Warn, "stream-lag", "behind", Map::new());
        env.condition = Some(EnvelopeCondition {
            kind: "over-max-lag".to_owned(),
            key: "jobs/\u{1b}[2Jworkers".to_owned(),
            state: crate::delivery::envelope::ConditionState::Firing,
            fingerprint: "0123456789abcdef".to_owned(),
            runbook_url: None,
        });
        let back = envelope_from_entry(&entry(&env)).unwrap();
        assert_eq!(back, env);
        let line = Printer::new(Format::Human { colour: false }).line(&back);
        assert!(line.contains("[firing over-max-lag jobs/"), "{line}");
        assert!(!line.contains('\u{1b}'), "escaped: {line}");
        let mut pairs = entry(&env);
        pairs.last_mut().unwrap().1 = "{}".to_owned();
        let e = envelope_from_entry(&pairs).unwrap_err();
        assert!(
            e.to_string().contains("`condition` is not a condition"),
            "{e}"
        );
    }

    #[test]
    fn bad_entries_are_named() {
        let origin = Origin::new("redis", "h:1");
        let env = origin.envelope(Level::Info, "x", "m", Map::new());
        let mut pairs = entry(&env);
        pairs.retain(|(k, _)| k != "ts");
        let e = envelope_from_entry(&pairs).unwrap_err();
        assert_eq!(e.to_string(), "no `ts` field");
        let mut pairs = entry(&env);
        pairs[5].1 = "loud".to_owned();
        let e = envelope_from_entry(&pairs).unwrap_err();
        assert!(e.to_string().contains("`level` is not a level"), "{e}");
    }

    #[test]
    fn filters_combine() {
        let origin = Origin::new("redis", "a:1");
        let env = origin.envelope(Level::Warn, "slowlog", "m", Map::new());
        let all = Filter::default();
        assert!(all.matches(&env));
        let warn = Filter {
            min_level: Some(Level::Warn),
            ..Filter::default()
        };
        assert!(warn.matches(&env));
        let error = Filter {
            min_level: Some(Level::Error),
            ..Filter::default()
        };
        assert!(!error.matches(&env));
        let target = Filter {
            targets: vec!["lookout".into(), "slowlog".into()],
            instances: vec!["b:1".into()],
            ..Filter::default()
        };
        assert!(!target.matches(&env));
        let both = Filter {
            instances: vec!["a:1".into()],
            ..target
        };
        assert!(both.matches(&env));
    }

    #[test]
    fn human_lines_align_and_escape() {
        let origin = Origin::new("redis", "127.0.0.1:6379");
        let mut env = origin.envelope(
            Level::Error,
            "lookout",
            "bad\x1b[2J",
            fields! {"why" => "two words", "n" => 3, "w" => "x"},
        );
        env.ts = "2026-11-22T20:41:07.513Z".to_owned();
        let mut plain = Printer::new(Format::Human { colour: false });
        assert_eq!(
            plain.line(&env),
            "20:41:07.513 ERROR  127.0.0.1:6379  lookout          bad\\u{1b}[2J  n=3  w=x  why=\"two words\""
        );
        let mut coloured = Printer::new(Format::Human { colour: true });
        let line = coloured.line(&env);
        assert!(line.contains("\x1b[1;31mERROR\x1b[0m"), "{line:?}");
        assert!(!line.contains("\x1b[2J"), "{line:?}");
    }

    /// Text an attacker who can write to the stream might put in any
    /// field: an escape sequence, a C1 CSI, a right-to-left override, a
    /// left-to-right isolate, a zero-width space and a newline.
    const HOSTILE: &str = "a\x1b[31mb\u{9b}1mc\u{202e}d\u{2066}e\u{200b}f\ng\u{7f}";

    /// An envelope with [`HOSTILE`] text in every field that holds text,
    /// as read back from a stream entry.
    fn hostile() -> Envelope {
        let origin = Origin::new(HOSTILE, HOSTILE);
        let mut env = origin.envelope(
            Level::Warn,
            HOSTILE,
            HOSTILE,
            fields! {
                HOSTILE => HOSTILE,
                "nested" => serde_json::json!({HOSTILE: [HOSTILE, 1]}),
                "plain" => "word",
                "quoted" => "say \"hi\" \\ there",
            },
        );
        env.id = HOSTILE.to_owned();
        env.ts = format!("2026-11-22T{HOSTILE}");
        env.host = HOSTILE.to_owned();
        envelope_from_entry(&entry(&env)).unwrap()
    }

    /// Whether `c` would act on a terminal rather than show.
    fn acts(c: char) -> bool {
        c.is_control() || crate::untrusted::is_invisible(c)
    }

    #[test]
    fn human_lines_escape_every_field() {
        let env = hostile();
        let shown = escape(HOSTILE);
        assert_eq!(
            shown,
            "a\\u{1b}[31mb\\u{9b}1mc\\u{202e}d\\u{2066}e\\u{200b}f\\ng\\u{7f}"
        );
        let mut plain = Printer::new(Format::Human { colour: false });
        let line = plain.line(&env);
        assert!(!line.chars().any(acts), "{line:?}");
        // The time of a timestamp of the usual shape, escaped.
        assert!(
            line.starts_with("a\\u{1b}[31mb\\u{9b}1mc WARN   "),
            "{line:?}"
        );
        // instance, target, msg, a field name and its value.
        assert_eq!(line.matches(&*shown).count(), 5, "{line:?}");
        assert!(
            line.contains(&format!("  {shown}  {shown}  {shown}  ")),
            "{line:?}"
        );
        // A field named and valued with it; a nested value as JSON.
        assert!(line.contains(&format!("  {shown}=\"{shown}\"")), "{line:?}");
        assert!(
            line.contains("  nested={\"a\\u001b[31mb\\u{9b}1m"),
            "{line:?}"
        );
        assert!(line.contains("  plain=word"), "{line:?}");
        assert!(
            line.contains(r#"  quoted="say \"hi\" \\ there""#),
            "{line:?}"
        );

        // Colours are the only escape sequences of a coloured line.
        let mut coloured = Printer::new(Format::Human { colour: true });
        let mut line = coloured.line(&env);
        for code in [RESET, DIM, CYAN, level_colour(Level::Warn)] {
            line = line.replace(code, "");
        }
        assert!(!line.chars().any(acts), "{line:?}");

        // A timestamp of another shape is shown whole, escaped.
        let mut odd = env.clone();
        odd.ts = HOSTILE.to_owned();
        let line = plain.line(&odd);
        assert!(line.starts_with(&format!("{shown} WARN")), "{line:?}");
        assert!(!line.chars().any(acts), "{line:?}");

        // Literal text that looks like an escape is quoted in a field
        // value, so the two cannot be mistaken for each other.
        let mut literal = env;
        literal.fields = fields! {"k" => "\\u{1b}"};
        let line = plain.line(&literal);
        assert!(line.ends_with(r#"k="\\u{1b}""#), "{line:?}");
    }

    #[test]
    fn json_lines_keep_the_value_without_raw_controls() {
        let env = hostile();
        let mut json = Printer::new(Format::Json);
        let line = json.line(&env);
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(
            line.contains("\\u009b") && line.contains("\\u001b"),
            "{line:?}"
        );
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed, serde_json::to_value(&env).unwrap());
        assert_eq!(parsed["msg"], HOSTILE);
        assert_eq!(parsed["ts"], format!("2026-11-22T{HOSTILE}"));
        // An envelope with nothing to escape is printed as published.
        let origin = Origin::new("redis", "127.0.0.1:6379");
        let calm = origin.envelope(Level::Info, "slowlog", "slow", fields! {"n" => 1});
        assert_eq!(json.line(&calm), calm.to_json());
    }
}
