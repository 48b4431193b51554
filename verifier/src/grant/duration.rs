//! Durations as people type them: `90` or `90s`, `30m` (or `30min`), `8h`,
//! `7d`; printed back in the largest unit that divides them.

/// Longest duration accepted anywhere in a grant: ten years, in seconds.
pub const MAX_SECS: u64 = 10 * 365 * 86_400;

const UNITS: [(&str, u64); 6] = [
    ("d", 86_400),
    ("h", 3_600),
    ("min", 60),
    ("m", 60),
    ("s", 1),
    ("", 1),
];

/// Parses `text` into seconds: a positive number, optionally followed by
/// `s`, `m`/`min`, `h` or `d`.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let scale = UNITS
        .iter()
        .find(|(u, _)| *u == unit)
        .map(|(_, s)| *s)
        .ok_or_else(|| format!("{text:?} is not a duration (like 90s, 30m, 8h or 7d)"))?;
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (like 90s, 30m, 8h or 7d)"))?;
    let secs = n
        .checked_mul(scale)
        .filter(|s| (1..=MAX_SECS).contains(s))
        .ok_or_else(|| format!("{text:?}: a duration is between 1 s and 10 years"))?;
    Ok(secs)
}

/// `secs` in the largest unit that divides it: `8h`, `90s`, `10min`.
pub fn format_duration(secs: u64) -> String {
    for (unit, scale) in [("d", 86_400), ("h", 3_600), ("min", 60)] {
        if secs >= scale && secs % scale == 0 {
            return format!("{}{unit}", secs / scale);
        }
    }
    format!("{secs}s")
}

/// `secs` in words for people: `8 h`, `10 min`, `1 d 2 h`.
pub fn describe_duration(secs: u64) -> String {
    let mut parts = Vec::new();
    let mut rest = secs;
    for (unit, scale) in [("d", 86_400), ("h", 3_600), ("min", 60), ("s", 1)] {
        if rest >= scale {
            parts.push(format!("{} {unit}", rest / scale));
            rest %= scale;
        }
    }
    if parts.is_empty() {
        "0 s".into()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_people_type() {
        for (text, secs) in [
            ("90", 90),
            ("90s", 90),
            ("30m", 1800),
            ("30min", 1800),
            ("8h", 28_800),
            ("7d", 604_800),
        ] {
            assert_eq!(parse_duration(text), Ok(secs), "{text}");
        }
        for bad in [
            "",
            "h",
            "0",
            "0h",
            "-5m",
            "5 m",
            "5w",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(parse_duration("11000d").is_err());
    }

    #[test]
    fn prints_back() {
        for secs in [1, 59, 60, 90, 600, 3600, 5400, 86_400, 90_000] {
            assert_eq!(parse_duration(&format_duration(secs)), Ok(secs));
        }
        assert_eq!(format_duration(28_800), "8h");
        assert_eq!(describe_duration(90_060), "1 d 1 h 1 min");
    }
}
