//! Formatting numbers for event messages.

/// A byte count in binary units with one decimal: `512B`, `1.0KiB`,
/// `12.3MiB`, `2.0GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    // Move up while the rounded figure would read 1024.0 or more.
    while value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

/// A ratio as a percentage with one decimal: `0.951` -> `95.1%`.
pub fn percent(ratio: f64) -> String {
    format!("{:.1}%", ratio * 100.0)
}

/// A ratio as a percentage with at most one decimal, dropping `.0`:
/// `0.9` -> `90%`, `0.125` -> `12.5%`. For thresholds, which read better
/// round.
pub fn percent_short(ratio: f64) -> String {
    let s = format!("{:.1}", ratio * 100.0);
    match s.strip_suffix(".0") {
        Some(whole) => format!("{whole}%"),
        None => format!("{s}%"),
    }
}

/// A length of time in milliseconds, read plainly at one-second
/// precision: `42 s`, `3 min 5 s`, `2 h 7 min`; negative reads `0 s`.
pub fn duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{} h {} min", s / 3600, s % 3600 / 60)
    }
}

/// A count with its noun, plural unless one: `1 change`, `3 changes`
/// (nouns whose plural adds `s`).
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_with_nouns() {
        assert_eq!(count(0, "change"), "0 changes");
        assert_eq!(count(1, "connected replica"), "1 connected replica");
        assert_eq!(count(2, "failure"), "2 failures");
    }

    #[test]
    fn durations_read_plainly() {
        assert_eq!(duration(-5), "0 s");
        assert_eq!(duration(42_999), "42 s");
        assert_eq!(duration(60_000), "1 min 0 s");
        assert_eq!(duration(185_000), "3 min 5 s");
        assert_eq!(duration(7_620_000), "2 h 7 min");
    }

    #[test]
    fn byte_units() {
        assert_eq!(bytes(0), "0B");
        assert_eq!(bytes(1023), "1023B");
        assert_eq!(bytes(1024), "1.0KiB");
        assert_eq!(bytes(1536), "1.5KiB");
        assert_eq!(bytes(1024 * 1024), "1.0MiB");
        assert_eq!(bytes(1024 * 1024 - 1), "1.0MiB");
        assert_eq!(bytes(12_897_484), "12.3MiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0GiB");
        assert_eq!(bytes(u64::MAX), "16.0EiB");
    }

    #[test]
    fn percents() {
        assert_eq!(percent(0.951), "95.1%");
        assert_eq!(percent(1.0), "100.0%");
        assert_eq!(percent_short(0.9), "90%");
        assert_eq!(percent_short(0.125), "12.5%");
        assert_eq!(percent_short(1.5), "150%");
    }
}
