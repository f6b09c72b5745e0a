//! Time conversions shared by the gate state files: Unix seconds (the Python
//! tool's floats) and ISO-8601 strings, both read tolerantly.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// Unix seconds (float) to a UTC time; `None` for NaN, infinities or values
/// outside the representable range.
pub fn from_unix_f64(secs: f64) -> Option<OffsetDateTime> {
    if !secs.is_finite() {
        return None;
    }
    let nanos = (secs * 1e9).round();
    if nanos.abs() > 1e28 {
        return None;
    }
    OffsetDateTime::from_unix_timestamp_nanos(nanos as i128).ok()
}

/// A UTC time as Unix seconds with sub-second precision.
pub fn to_unix_f64(t: OffsetDateTime) -> f64 {
    t.unix_timestamp_nanos() as f64 / 1e9
}

/// ISO-8601 with a zone (`2026-11-25T23:51:46Z`, `+00:00`), or the Python
/// tool's naive `datetime.isoformat()` (read as UTC, the only honest guess).
pub fn parse_iso(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t.to_offset(UtcOffset::UTC));
    }
    let normalized = s.replace(' ', "T");
    let formats = [
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond]"),
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
    ];
    formats
        .iter()
        .find_map(|f| PrimitiveDateTime::parse(&normalized, f).ok())
        .map(PrimitiveDateTime::assume_utc)
}

/// A JSON value that is either Unix seconds or an ISO-8601 string.
pub fn from_json_time(v: &serde_json::Value) -> Option<OffsetDateTime> {
    match v {
        serde_json::Value::Number(n) => n.as_f64().and_then(from_unix_f64),
        serde_json::Value::String(s) => parse_iso(s),
        _ => None,
    }
}

/// `2026-11-25T23:51:46Z` (UTC, whole seconds): for people and JSON.
pub fn iso(t: OffsetDateTime) -> String {
    t.to_offset(UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// `2026-11-25 23:51 UTC`: short form for human output.
pub fn human(t: OffsetDateTime) -> String {
    t.to_offset(UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute] UTC"
        ))
        .unwrap_or_else(|_| iso(t))
}

/// `1 h 05 min`, `42 s`: a duration for human output.
pub fn human_duration(d: time::Duration) -> String {
    let secs = d.whole_seconds().max(0);
    if secs < 60 {
        return format!("{secs} s");
    }
    let mins = (secs + 59) / 60;
    if mins < 60 {
        return format!("{mins} min");
    }
    format!("{} h {:02} min", mins / 60, mins % 60)
}

/// File modification time as a UTC time.
pub fn mtime(meta: &std::fs::Metadata) -> Option<OffsetDateTime> {
    meta.modified().ok().map(OffsetDateTime::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn reads_both_python_and_our_forms() {
        let t = datetime!(2026-04-24 13:05:09 UTC);
        assert_eq!(parse_iso("2026-04-24T13:05:09Z"), Some(t));
        assert_eq!(parse_iso("2026-04-24T15:05:09+02:00"), Some(t));
        assert_eq!(parse_iso("2026-04-24T13:05:09"), Some(t));
        assert_eq!(
            parse_iso("2026-04-24T13:05:09.250000"),
            Some(t + time::Duration::milliseconds(250))
        );
        assert_eq!(from_unix_f64(to_unix_f64(t)), Some(t));
        assert_eq!(from_unix_f64(f64::NAN), None);
        assert_eq!(from_unix_f64(1e300), None);
        assert_eq!(parse_iso("yesterday"), None);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(time::Duration::seconds(42)), "42 s");
        assert_eq!(human_duration(time::Duration::seconds(61)), "2 min");
        assert_eq!(human_duration(time::Duration::minutes(125)), "2 h 05 min");
    }
}
