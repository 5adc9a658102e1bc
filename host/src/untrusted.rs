//! Text that servers or anyone who can write to the stream control, made
//! safe to print: control characters escaped, bidirectional and other
//! format characters shown as escapes on a terminal, and long text cut.

/// Most bytes of server-controlled text kept in a host event or log line.
pub(crate) const MAX_SHOWN: usize = 1024;

/// Whether `c` changes how a terminal shows the text around it without
/// being visible itself: Unicode's format characters (category Cf: the
/// bidirectional embeddings, overrides and isolates, zero-width joiners,
/// the byte-order mark, soft hyphen...) and the line and paragraph
/// separators.
#[must_use]
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

/// `text` for a terminal or a log line: C0 and C1 control characters
/// (escape sequences included) and invisible format characters written as
/// `\u{..}` escapes (`\n`, `\r` and `\t` as those two-character escapes);
/// everything else as it is.
#[must_use]
pub(crate) fn escape(text: &str) -> String {
    if !text.chars().any(needs_escape) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        push_escaped(&mut out, c);
    }
    out
}

fn needs_escape(c: char) -> bool {
    c.is_control() || is_invisible(c)
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
        c => out.push(c),
    }
}

/// [`escape`]d `text`, cut to at most [`MAX_SHOWN`] bytes of the original
/// on a character boundary, with how many bytes were left out.
#[must_use]
pub(crate) fn clip(text: &str) -> String {
    clip_to(text, MAX_SHOWN)
}

/// [`clip`] with another limit.
#[must_use]
pub(crate) fn clip_to(text: &str, max: usize) -> String {
    if text.len() <= max {
        return escape(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}... ({} more bytes)",
        escape(&text[..end]),
        text.len() - end
    )
}

/// A JSON text with every C1 control character (U+0080 to U+009F, which
/// JSON allows raw but some terminals obey) and DEL (U+007F) written as a
/// `\u00XX` escape; still the same JSON value. (JSON escapes C0 controls
/// itself.)
#[must_use]
pub(crate) fn json_c1(json: &str) -> String {
    let raw = |c: char| ('\u{7f}'..='\u{9f}').contains(&c);
    if !json.chars().any(raw) {
        return json.to_owned();
    }
    let mut out = String::with_capacity(json.len() + 8);
    for c in json.chars() {
        if raw(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_format_characters_are_escaped() {
        assert_eq!(escape("plain text: ünïcode"), "plain text: ünïcode");
        assert_eq!(escape("a\x1b[31mred"), "a\\u{1b}[31mred");
        assert_eq!(escape("line\nnext\ttab"), "line\\nnext\\ttab");
        assert_eq!(escape("c1\u{9b}31m"), "c1\\u{9b}31m");
        assert_eq!(escape("rtl\u{202e}txt.exe"), "rtl\\u{202e}txt.exe");
        assert_eq!(escape("iso\u{2066}x\u{2069}"), "iso\\u{2066}x\\u{2069}");
        assert_eq!(escape("zw\u{200b}j\u{feff}"), "zw\\u{200b}j\\u{feff}");
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let long = "é".repeat(1000);
        let shown = clip(&long);
        assert!(shown.starts_with("éé"), "{shown}");
        assert!(shown.ends_with("... (976 more bytes)"), "{shown}");
        assert!(shown.len() < MAX_SHOWN + 40);
        assert_eq!(clip("short"), "short");
        let mb = "x".repeat(1 << 20);
        assert!(clip(&mb).len() < MAX_SHOWN + 40);
    }

    #[test]
    fn json_keeps_its_value_without_raw_c1() {
        let value = serde_json::json!({"msg": "a\u{9b}b\u{85}c\u{7f}\x1b"});
        let text = json_c1(&value.to_string());
        assert!(!text.chars().any(char::is_control), "{text}");
        assert_eq!(text, r#"{"msg":"a\u009bb\u0085c\u007f\u001b"}"#);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            value
        );
    }
}
