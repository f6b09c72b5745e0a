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
/// tool's naive `datetime.isoformat()`, which is local time (it writes
/// `datetime.now()`): read in this machine's time zone (`TZ`, else the
/// system's), as the Python tool reads it back.
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
        .and_then(local_naive_to_utc)
}

/// The instant a naive local time names (`mktime`, which knows the zone's
/// rules and daylight saving); `None` outside the platform's range.
pub fn local_naive_to_utc(t: PrimitiveDateTime) -> Option<OffsetDateTime> {
    // SAFETY: a zeroed tm is a valid value; mktime reads and normalises the
    // struct we own and returns -1 on failure.
    let secs = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        tm.tm_year = t.year() - 1900;
        tm.tm_mon = i32::from(u8::from(t.month())) - 1;
        tm.tm_mday = i32::from(t.day());
        tm.tm_hour = i32::from(t.hour());
        tm.tm_min = i32::from(t.minute());
        tm.tm_sec = i32::from(t.second());
        tm.tm_isdst = -1;
        libc::mktime(&mut tm)
    };
    if secs == -1 && !(t.year() == 1969 || t.year() == 1970) {
        return None;
    }
    OffsetDateTime::from_unix_timestamp(secs as i64)
        .ok()
        .map(|u| u + time::Duration::nanoseconds(i64::from(t.nanosecond())))
}

/// `2026-11-25T15:51:46`: a time as the Python tool writes it in its state
/// files (naive, this machine's local time), so that it can compare it with
/// its own `datetime.now()`.
pub fn local_naive(t: OffsetDateTime) -> String {
    // SAFETY: localtime_r writes the broken-down time into the tm we own.
    let tm = unsafe {
        let secs = t.unix_timestamp() as libc::time_t;
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&secs, &mut tm).is_null() {
            return iso(t).trim_end_matches('Z').to_string();
        }
        tm
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
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
