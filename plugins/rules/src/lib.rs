//! The `rules` watcher: threshold rules over any INFO or CLUSTER INFO field,
//! written by the operator in TOML, so a new alert needs no Rust.
//!
//! The one setting, `rules`, is a TOML document of `[[rule]]` tables:
//!
//! ```toml
//! [[rule]]
//! name = "memory_high"          # required, unique
//! field = "used_memory"         # required: an INFO or CLUSTER INFO field
//! divide_by = "maxmemory"       # optional: compare field / divide_by
//! measure = "value"             # value | delta | rate | age
//! op = ">"                      # > >= < <= == !=
//! threshold = 0.7               # a number, or a text for == and !=
//! for = 30                      # polls the condition must hold first
//! level = "warn"                # info | warn | error
//! message = "{name}: {field} is {value} ({op} {threshold})"
//! runbook = "https://runbooks.example/memory"  # optional, on the condition
//! ```
//!
//! Measures: `value` is the field as it reads (divided by `divide_by`,
//! skipped while the divisor is 0 or missing); `delta` its change since the
//! previous poll (negative when it fell; a new `run_id` only sets a new
//! baseline); `rate` the increase per second of a counter, followed with a
//! [`Counter`] (a restart or `CONFIG RESETSTAT` only sets a new baseline);
//! `age` the seconds since the Unix time the field holds
//! (`rdb_last_save_time`).
//!
//! Each rule reports once when its condition has held for `for` polls in a
//! row (at its `level`) and once when it stops holding (info), never once
//! per poll. A poll where the field is missing (an older Redis, a server
//! that is not a replica or not in a cluster), or where a delta or rate has
//! no baseline yet, leaves the rule as it was. A field that should be a
//! number but is not is reported once (warn), and again only after it read
//! as a number in between.
//!
//! A rule entered fires the condition `rule`, keyed by the rule's name, and
//! the rule left resolves it; the "cannot compare" warning carries none.

use std::collections::BTreeSet;

use lookout_watcher::{
    Cadence, Conditions, ConfigKey, Counter, Event, Level, Manifest, Needs, Probe, Setting,
    Settings, Snapshot, Value, Watch,
};
use toml::de::{DeTable, DeValue};

lookout_watcher::export!(Rules);

/// The watcher's name, the envelopes' `target`.
pub const NAME: &str = "rules";
/// Default of `rules`: no rules.
pub const DEFAULT_RULES: &str = "";
/// The message of a rule that does not set `message`.
pub const DEFAULT_MESSAGE: &str = "{name}: {field} is {value} ({op} {threshold})";
/// The INFO sections read, whole.
pub const SECTIONS: [&str; 10] = [
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "cluster",
    "keyspace",
    "errorstats",
];
/// The keys a `[[rule]]` table may have.
pub const RULE_KEYS: [&str; 10] = [
    "name",
    "field",
    "divide_by",
    "measure",
    "op",
    "threshold",
    "for",
    "level",
    "message",
    "runbook",
];
/// Longest `runbook` URL, bytes (what the host accepts on a condition).
pub const MAX_RUNBOOK_BYTES: usize = 1024;
/// The placeholders a `message` may use.
pub const PLACEHOLDERS: [&str; 6] = ["name", "field", "value", "threshold", "op", "polls"];

/// What of a field a rule compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// The field as it reads (divided by `divide_by` if set).
    Value,
    /// Its change since the previous poll.
    Delta,
    /// Its increase per second, as a counter.
    Rate,
    /// Seconds since the Unix time it holds.
    Age,
}

impl Measure {
    /// The name as written in a rule.
    pub fn as_str(self) -> &'static str {
        match self {
            Measure::Value => "value",
            Measure::Delta => "delta",
            Measure::Rate => "rate",
            Measure::Age => "age",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Measure::Value, Measure::Delta, Measure::Rate, Measure::Age]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Op {
    const ALL: [Op; 6] = [Op::Gt, Op::Ge, Op::Lt, Op::Le, Op::Eq, Op::Ne];

    /// The operator as written in a rule.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Op::ALL.into_iter().find(|o| o.as_str() == s)
    }

    fn numbers(self, a: f64, b: f64) -> bool {
        match self {
            Op::Gt => a > b,
            Op::Ge => a >= b,
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Eq => a == b,
            Op::Ne => a != b,
        }
    }
}

/// What a rule compares with.
#[derive(Debug, Clone, PartialEq)]
pub enum Threshold {
    /// A number: the field is read as a number.
    Number(f64),
    /// A text, for `==` and `!=`: the field is compared as text.
    Text(String),
}

impl Threshold {
    fn shown(&self) -> String {
        match self {
            Threshold::Number(n) => number(*n),
            Threshold::Text(s) => s.clone(),
        }
    }

    fn value(&self) -> Value {
        match self {
            Threshold::Number(n) => Value::Float(*n),
            Threshold::Text(s) => Value::Text(s.clone()),
        }
    }
}

/// One piece of a message template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    /// One of [`PLACEHOLDERS`].
    Placeholder(&'static str),
}

/// A parsed `message`: text and `{placeholders}`; `{{` and `}}` stand for
/// braces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for c in chars.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        name.push(c);
                    }
                    if !closed {
                        return Err(format!(
                            "`{{{name}` is not closed; write `{{{{` for a literal brace"
                        ));
                    }
                    let Some(known) = PLACEHOLDERS.iter().find(|p| **p == name) else {
                        return Err(format!(
                            "unknown placeholder `{{{name}}}`; use {}",
                            PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(" ")
                        ));
                    };
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Placeholder(known));
                }
                '}' => return Err("a lone `}`; write `}}` for a literal brace".to_string()),
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { parts })
    }

    fn render(&self, lookup: impl Fn(&str) -> String) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(s) => s.clone(),
                Part::Placeholder(name) => lookup(name),
            })
            .collect()
    }
}

/// One validated rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Unique name, in every event.
    pub name: String,
    /// The INFO or CLUSTER INFO field read.
    pub field: String,
    /// A second field the value is divided by (measure `value` only).
    pub divide_by: Option<String>,
    /// What of the field is compared.
    pub measure: Measure,
    /// The comparison.
    pub op: Op,
    /// What it is compared with.
    pub threshold: Threshold,
    /// Polls in a row the condition must hold before the rule is entered.
    pub for_polls: u64,
    /// The level of the event on entering.
    pub level: Level,
    /// The message on entering.
    pub message: Template,
    /// An `http(s)://` URL saying what to do, put on the rule's condition.
    pub runbook: Option<String>,
}

impl Rule {
    /// How the compared quantity reads in a message: `used_memory/maxmemory`,
    /// `rejected_connections per second`, `rdb_last_save_time age`.
    pub fn subject(&self) -> String {
        match (self.measure, &self.divide_by) {
            (Measure::Value, Some(d)) => format!("{}/{d}", self.field),
            (Measure::Value, None) => self.field.clone(),
            (Measure::Delta, _) => format!("{} change", self.field),
            (Measure::Rate, _) => format!("{} per second", self.field),
            (Measure::Age, _) => format!("{} age", self.field),
        }
    }

    /// Reads one rule out of its TOML table; `index` counts from 1.
    fn from_toml(index: usize, value: &DeValue<'_>) -> Result<Self, String> {
        let DeValue::Table(table) = value else {
            return Err(format!(
                "rule #{index}: expected a table, got {}; write each rule under a [[rule]] header",
                shown(value)
            ));
        };
        let label = match table.get("name") {
            Some(v) if v.get_ref().as_str().is_some_and(|n| !n.trim().is_empty()) => {
                format!("rule `{}`", v.get_ref().as_str().unwrap_or_default())
            }
            _ => format!("rule #{index}"),
        };
        let err = |key: &str, msg: String| format!("{label} key `{key}`: {msg}");
        if let Some(key) = table
            .keys()
            .map(|k| k.get_ref().as_ref())
            .find(|k| !RULE_KEYS.contains(k))
        {
            return Err(err(
                key,
                format!("unknown key; expected one of {}", RULE_KEYS.join(", ")),
            ));
        }
        let text = |key: &str, what: &str| -> Result<Option<String>, String> {
            match table.get(key).map(|v| v.get_ref()) {
                None => Ok(None),
                Some(DeValue::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
                Some(v) => Err(err(key, format!("expected {what}, got {}", shown(v)))),
            }
        };
        let required = |key: &str, what: &str| -> Result<String, String> {
            text(key, what)?.ok_or_else(|| err(key, format!("required: {what}")))
        };
        let name = required("name", "a non-empty text, the rule's unique name")?;
        let field = required(
            "field",
            "a non-empty text, an INFO or CLUSTER INFO field name",
        )?;
        let measure = match text("measure", "one of value, delta, rate, age")? {
            None => Measure::Value,
            Some(m) => Measure::parse(&m).ok_or_else(|| {
                err(
                    "measure",
                    format!("expected one of value, delta, rate, age, got `{m}`"),
                )
            })?,
        };
        let ops = Op::ALL.map(Op::as_str).join(", ");
        let op = match table.get("op").map(|v| v.get_ref()) {
            None => return Err(err("op", format!("required: one of {ops}"))),
            Some(DeValue::String(s)) => Op::parse(s.trim())
                .ok_or_else(|| err("op", format!("expected one of {ops}, got `{s}`")))?,
            Some(v) => {
                return Err(err(
                    "op",
                    format!("expected one of {ops}, got {}", shown(v)),
                ));
            }
        };
        let threshold = match table.get("threshold").map(|v| v.get_ref()) {
            None => {
                return Err(err(
                    "threshold",
                    "required: a number, or a text for == and !=".to_string(),
                ));
            }
            Some(v @ (DeValue::Integer(_) | DeValue::Float(_))) if number_of(v).is_some() => {
                Threshold::Number(number_of(v).unwrap_or_default())
            }
            Some(DeValue::String(s)) => {
                if !matches!(op, Op::Eq | Op::Ne) {
                    return Err(err(
                        "threshold",
                        format!(
                            "a text threshold (\"{s}\") works only with == or !=, not {}; write a number to compare numbers",
                            op.as_str()
                        ),
                    ));
                }
                if measure != Measure::Value {
                    return Err(err(
                        "threshold",
                        format!(
                            "a text threshold (\"{s}\") works only with measure \"value\", not \"{}\"",
                            measure.as_str()
                        ),
                    ));
                }
                Threshold::Text(s.to_string())
            }
            Some(v) => {
                return Err(err(
                    "threshold",
                    format!(
                        "expected a number, or a text for == and !=, got {}",
                        shown(v)
                    ),
                ));
            }
        };
        let divide_by = text("divide_by", "a non-empty text, an INFO field name")?;
        if divide_by.is_some() {
            if measure != Measure::Value {
                return Err(err(
                    "divide_by",
                    format!(
                        "works only with measure \"value\", not \"{}\"; drop one of them",
                        measure.as_str()
                    ),
                ));
            }
            if matches!(threshold, Threshold::Text(_)) {
                return Err(err(
                    "divide_by",
                    "needs a number threshold, not a text".to_string(),
                ));
            }
        }
        let for_polls = match table.get("for").map(|v| v.get_ref()) {
            None => 1,
            Some(DeValue::Integer(n)) if integer(n).is_some_and(|n| n >= 1) => {
                integer(n).map_or(1, i64::unsigned_abs)
            }
            Some(v) => {
                return Err(err(
                    "for",
                    format!("expected an integer >= 1 (polls), got {}", shown(v)),
                ));
            }
        };
        let level = match text("level", "one of info, warn, error")?.as_deref() {
            None | Some("warn") => Level::Warn,
            Some("info") => Level::Info,
            Some("error") => Level::Error,
            Some(other) => {
                return Err(err(
                    "level",
                    format!("expected one of info, warn, error, got `{other}`"),
                ));
            }
        };
        let message = match table.get("message").map(|v| v.get_ref()) {
            None => DEFAULT_MESSAGE.to_string(),
            Some(DeValue::String(s)) => s.to_string(),
            Some(v) => {
                return Err(err("message", format!("expected a text, got {}", shown(v))));
            }
        };
        let message = Template::parse(&message).map_err(|e| err("message", e))?;
        let runbook = text("runbook", "an http:// or https:// URL")?;
        if let Some(url) = &runbook
            && (!(url.starts_with("http://") || url.starts_with("https://"))
                || url.len() > MAX_RUNBOOK_BYTES)
        {
            return Err(err(
                "runbook",
                format!(
                    "expected an http:// or https:// URL of at most {MAX_RUNBOOK_BYTES} bytes, got `{url}`"
                ),
            ));
        }
        Ok(Rule {
            name,
            field,
            divide_by,
            measure,
            op,
            threshold,
            for_polls,
            level,
            message,
            runbook,
        })
    }
}

/// A TOML value as it reads in an error message.
fn shown(value: &DeValue<'_>) -> String {
    match value {
        DeValue::String(s) => format!("the text \"{s}\""),
        DeValue::Integer(i) => format!("the integer {i}"),
        DeValue::Float(f) => format!("the number {f}"),
        DeValue::Boolean(b) => format!("the boolean {b}"),
        DeValue::Datetime(_) => "a date-time".to_string(),
        DeValue::Array(_) => "an array".to_string(),
        DeValue::Table(_) => "a table".to_string(),
    }
}

/// A TOML integer, if it fits an `i64`.
fn integer(i: &toml::de::DeInteger<'_>) -> Option<i64> {
    i64::from_str_radix(i.as_str(), i.radix()).ok()
}

/// A TOML integer or float as a finite number.
fn number_of(value: &DeValue<'_>) -> Option<f64> {
    match value {
        DeValue::Integer(i) => integer(i).map(|i| i as f64),
        DeValue::Float(f) => f.as_str().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

/// A number for a message: `5`, `0.7`, `12.3457`.
fn number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        let s = format!("{n:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    }
}

/// Parses the `rules` text: every `[[rule]]`, validated. Empty text is no
/// rules. The error names the rule and key, or the line of a TOML syntax
/// error.
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, String> {
    let doc = DeTable::parse(text).map_err(|e| {
        let (line, column) = e
            .span()
            .map(|s| line_column(text, s.start))
            .unwrap_or((1, 1));
        format!(
            "key `rules`: TOML syntax error at line {line}, column {column} of the rules: {}",
            e.message().trim()
        )
    })?;
    let doc = doc.get_ref();
    if let Some(key) = doc
        .keys()
        .map(|k| k.get_ref().as_ref())
        .find(|k| *k != "rule")
    {
        return Err(format!(
            "key `rules`: unknown top-level key `{key}`; write each rule as a [[rule]] table"
        ));
    }
    let list = match doc.get("rule").map(|v| v.get_ref()) {
        None => return Ok(Vec::new()),
        Some(DeValue::Array(list)) => list,
        Some(v) => {
            return Err(format!(
                "key `rules`: `rule` must be a list of [[rule]] tables, got {}",
                shown(v)
            ));
        }
    };
    let mut rules: Vec<Rule> = Vec::with_capacity(list.len());
    let mut names = BTreeSet::new();
    for (i, value) in list.iter().enumerate() {
        let rule = Rule::from_toml(i + 1, value.get_ref())?;
        if !names.insert(rule.name.clone()) {
            return Err(format!(
                "rule `{}` key `name`: used by two rules; give each rule its own name",
                rule.name
            ));
        }
        rules.push(rule);
    }
    Ok(rules)
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(1, |l| l.chars().count() + 1);
    (line, column)
}

/// Validated settings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    /// The rules, in the order written.
    pub rules: Vec<Rule>,
}

impl Config {
    /// Reads and checks the settings handed to `configure`; the error names
    /// the rule and key.
    pub fn from_settings(settings: &[Setting]) -> Result<Self, String> {
        let text = Settings::new(settings).text("rules", DEFAULT_RULES)?;
        Ok(Config {
            rules: parse_rules(text)?,
        })
    }
}

/// What a rule read at one poll.
#[derive(Debug, Clone, PartialEq)]
enum Reading {
    /// Nothing to compare: the field is missing, the divisor is 0, or a
    /// delta or rate has no baseline yet.
    Nothing,
    /// The field holds text where a number was needed.
    NotNumber(String),
    /// A number.
    Number(f64),
    /// A text, for a text threshold.
    Text(String),
}

impl Reading {
    fn shown(&self) -> String {
        match self {
            Reading::Number(n) => number(*n),
            Reading::Text(s) | Reading::NotNumber(s) => s.clone(),
            Reading::Nothing => String::new(),
        }
    }

    fn value(&self) -> Value {
        match self {
            Reading::Number(n) => Value::Float(*n),
            Reading::Text(s) | Reading::NotNumber(s) => Value::Text(s.clone()),
            Reading::Nothing => Value::Text(String::new()),
        }
    }
}

/// A rule's state between polls.
#[derive(Debug, Clone, Default)]
struct RuleState {
    /// Polls in a row the condition held.
    held: u64,
    /// Whether the rule was entered (and not yet left).
    active: bool,
    /// `(run_id, value)` of the previous poll, for `delta`.
    previous: Option<(String, f64)>,
    /// For `rate`.
    counter: Counter,
    /// A "not a number" warning was given and the field has not read as a
    /// number since.
    warned: bool,
}

/// An INFO field, else a CLUSTER INFO field, trimmed.
fn lookup<'a>(snapshot: &'a Snapshot, field: &str) -> Option<&'a str> {
    snapshot
        .info(field)
        .or_else(|| snapshot.cluster_field(field))
        .map(str::trim)
}

fn parse_number(raw: &str) -> Option<f64> {
    raw.parse::<f64>().ok().filter(|n| n.is_finite())
}

impl RuleState {
    fn read(&mut self, rule: &Rule, snapshot: &Snapshot) -> Reading {
        let Some(raw) = lookup(snapshot, &rule.field) else {
            return Reading::Nothing;
        };
        if let Threshold::Text(_) = rule.threshold {
            return Reading::Text(raw.to_string());
        }
        let run_id = snapshot.info("run_id").unwrap_or_default().trim();
        match rule.measure {
            Measure::Rate => {
                let Ok(n) = raw.parse::<u64>() else {
                    return Reading::NotNumber(raw.to_string());
                };
                self.counter
                    .update(run_id, n, snapshot.taken_at_ms)
                    .per_second()
                    .map_or(Reading::Nothing, Reading::Number)
            }
            measure => {
                let Some(n) = parse_number(raw) else {
                    return Reading::NotNumber(raw.to_string());
                };
                match measure {
                    Measure::Delta => {
                        let previous = self.previous.replace((run_id.to_string(), n));
                        match previous {
                            Some((run, p)) if run == run_id => Reading::Number(n - p),
                            _ => Reading::Nothing,
                        }
                    }
                    Measure::Age => {
                        Reading::Number(snapshot.taken_at_ms.div_euclid(1000) as f64 - n)
                    }
                    _ => match &rule.divide_by {
                        None => Reading::Number(n),
                        Some(d) => match lookup(snapshot, d).and_then(parse_number) {
                            Some(divisor) if divisor != 0.0 => Reading::Number(n / divisor),
                            _ => Reading::Nothing,
                        },
                    },
                }
            }
        }
    }

    /// Looks at one poll for `rule`; at most one event, with whether the
    /// rule was entered (`Some(true)`) or left (`Some(false)`) by it.
    fn observe(&mut self, rule: &Rule, snapshot: &Snapshot) -> Option<(Event, Option<bool>)> {
        let reading = self.read(rule, snapshot);
        let holds = match (&reading, &rule.threshold) {
            (Reading::Nothing, _) => return None,
            (Reading::NotNumber(raw), _) => {
                if std::mem::replace(&mut self.warned, true) {
                    return None;
                }
                let msg = format!(
                    "rule {} cannot compare: {} is `{raw}`, not a number",
                    rule.name, rule.field
                );
                let e = Event::new(Level::Warn, msg)
                    .field("rule", rule.name.as_str())
                    .field("field", rule.field.as_str())
                    .field("value", raw.as_str())
                    .field("state", "changed");
                return Some((e, None));
            }
            (Reading::Number(n), Threshold::Number(t)) => rule.op.numbers(*n, *t),
            (Reading::Text(s), Threshold::Text(t)) => match rule.op {
                Op::Ne => s != t,
                _ => s == t,
            },
            // A number threshold always reads a number and a text one a text.
            _ => return None,
        };
        self.warned = false;
        if holds {
            self.held = self.held.saturating_add(1);
            if self.active || self.held < rule.for_polls {
                return None;
            }
            self.active = true;
            let msg = rule.message.render(|p| match p {
                "name" => rule.name.clone(),
                "field" => rule.subject(),
                "value" => reading.shown(),
                "threshold" => rule.threshold.shown(),
                "op" => rule.op.as_str().to_string(),
                _ => self.held.to_string(),
            });
            Some((
                self.event(rule, rule.level, msg, &reading, "entered"),
                Some(true),
            ))
        } else {
            let held = std::mem::take(&mut self.held);
            if !std::mem::take(&mut self.active) {
                return None;
            }
            let msg = format!(
                "rule {} cleared after {}: {} is {}, no longer {} {}",
                rule.name,
                if held == 1 {
                    "1 poll".to_string()
                } else {
                    format!("{held} polls")
                },
                rule.subject(),
                reading.shown(),
                rule.op.as_str(),
                rule.threshold.shown()
            );
            let mut e = self.event(rule, Level::Info, msg, &reading, "left");
            // The event's `polls`: how long the condition held.
            if let Some(f) = e.fields.iter_mut().find(|f| f.name == "polls") {
                f.value = Value::from(held);
            }
            Some((e, Some(false)))
        }
    }

    fn event(
        &self,
        rule: &Rule,
        level: Level,
        msg: String,
        reading: &Reading,
        state: &str,
    ) -> Event {
        let mut e = Event::new(level, msg)
            .field("rule", rule.name.as_str())
            .field("field", rule.field.as_str());
        if let Some(d) = &rule.divide_by {
            e = e.field("divide_by", d.as_str());
        }
        e.field("value", reading.value())
            .field("threshold", rule.threshold.value())
            .field("op", rule.op.as_str())
            .field("measure", rule.measure.as_str())
            .field("polls", self.held)
            .field("state", state)
    }
}

/// The watcher's logic and state.
#[derive(Debug, Clone)]
pub struct Rules {
    rules: Vec<Rule>,
    states: Vec<RuleState>,
    /// The `rule` condition, keyed by rule name: fired when a rule is
    /// entered, resolved when it is left.
    crossed: Conditions<String>,
}

/// The kind of the condition a rule entered fires.
pub const CONDITION: &str = "rule";

impl Rules {
    /// A watcher over `config`'s rules, none entered yet.
    pub fn new(config: Config) -> Self {
        let states = vec![RuleState::default(); config.rules.len()];
        Rules {
            rules: config.rules,
            states,
            crossed: Conditions::new(CONDITION),
        }
    }

    /// The rules, in the order written.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// What the rules read, narrower than the manifest's needs: the INFO
    /// sections holding the fields they name (see [`sections::section_of`];
    /// every declared section when one is not known), `server` for `run_id`
    /// (a restart, for `delta` and `rate`), and CLUSTER INFO only when one
    /// names a `cluster_` field (`cluster_enabled` is INFO's).
    pub fn narrowed_needs(&self) -> Needs {
        let mut wanted = BTreeSet::from(["server"]);
        let mut cluster = false;
        for rule in &self.rules {
            for field in std::iter::once(&rule.field).chain(&rule.divide_by) {
                if field.starts_with("cluster_") && field != "cluster_enabled" {
                    cluster = true;
                    continue;
                }
                match sections::section_of(field) {
                    Some(section) => {
                        wanted.insert(section);
                    }
                    None => wanted.extend(SECTIONS),
                }
            }
        }
        let needs = Needs::info(&["run_id"]).with_sections(
            &SECTIONS
                .into_iter()
                .filter(|s| wanted.contains(s))
                .collect::<Vec<_>>(),
        );
        if cluster {
            needs.with_probe(Probe::ClusterInfo)
        } else {
            needs
        }
    }

    /// The names of the rules entered and not yet left.
    pub fn active(&self) -> Vec<&str> {
        self.rules
            .iter()
            .zip(&self.states)
            .filter(|(_, s)| s.active)
            .map(|(r, _)| r.name.as_str())
            .collect()
    }
}

impl Watch for Rules {
    fn manifest() -> Manifest {
        Manifest::new(
            NAME,
            env!("CARGO_PKG_VERSION"),
            "threshold rules over any INFO or CLUSTER INFO field, written in TOML; reports each rule entered and left",
        )
        .with_config(vec![ConfigKey::new(
            "rules",
            DEFAULT_RULES,
            "a TOML document of [[rule]] tables (name, field, divide_by, measure, op, threshold, for, level, message, runbook); see rules.example.toml",
        )])
        .with_needs(
            Needs::info(&["run_id"])
                .with_sections(&SECTIONS)
                .with_probe(Probe::ClusterInfo),
        )
        .with_cadence(Cadence::EveryPoll)
    }

    fn from_settings(settings: &[Setting]) -> Result<Self, String> {
        Config::from_settings(settings).map(Rules::new)
    }

    /// Only the sections its rules read, see [`Rules::narrowed_needs`].
    fn needs(&self) -> Option<Needs> {
        Some(self.narrowed_needs())
    }

    /// Looks at one poll; at most one event per rule, in rule order.
    fn observe(&mut self, snapshot: &Snapshot) -> Vec<Event> {
        let mut events = Vec::new();
        for (rule, state) in self.rules.iter().zip(&mut self.states) {
            match state.observe(rule, snapshot) {
                None => {}
                Some((e, None)) => events.push(e),
                Some((e, Some(holds))) => {
                    let e = self.crossed.observe(rule.name.clone(), holds, |_| e);
                    events.extend(e.map(|e| match &rule.runbook {
                        Some(url) => e.runbook(url),
                        None => e,
                    }));
                }
            }
        }
        events
    }
}

pub mod sections;

#[cfg(test)]
mod tests;
