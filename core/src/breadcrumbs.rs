//! Breadcrumb lines: `[timestamp] TAG: payload | key=value key=value`, the
//! format shared with the Python tool. The injected library writes them; the
//! CLI (`orphan-scan`, `postmortem`, `status`) reads them back, also after a
//! reboot.
//!
//! Ours always write UTC ISO-8601 with milliseconds and a `pid=` field; the
//! reader also accepts the Python tool's local-time lines without a zone
//! (read in this machine's time zone, as the Python tool means them).

use std::path::PathBuf;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

/// Tag of the line written synchronously before a risky GPU transition.
pub const TAG_PRE: &str = "SUBPROC_PRE";
/// Tag of the line that closes a [`TAG_PRE`] section.
pub const TAG_POST: &str = "SUBPROC_POST";

/// One breadcrumb line, parsed or about to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreadcrumbLine {
    pub time: OffsetDateTime,
    pub tag: String,
    pub payload: String,
    pub fields: Vec<(String, String)>,
}

impl BreadcrumbLine {
    /// The value of field `key`, if present.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The line as written to the log, without the trailing newline. Newlines
    /// and `|` inside the payload, and spaces or `=` inside values, are
    /// replaced so every line parses back to the same fields.
    pub fn format(&self) -> String {
        let time = self
            .time
            .to_offset(UtcOffset::UTC)
            .format(format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".to_string());
        let payload = sanitize(&self.payload, &['\n', '\r', '|']);
        let mut line = format!(
            "[{time}] {}: {payload}",
            sanitize(&self.tag, &[':', ' ', '\n', '\r', ']'])
        );
        if !self.fields.is_empty() {
            line.push_str(" |");
            for (k, v) in &self.fields {
                line.push(' ');
                line.push_str(&sanitize(k, &[' ', '=', '\n', '\r', '|']));
                line.push('=');
                line.push_str(&sanitize(v, &[' ', '\n', '\r', '|']));
            }
        }
        line
    }
}

fn sanitize(s: &str, bad: &[char]) -> String {
    s.chars()
        .map(|c| if bad.contains(&c) { '_' } else { c })
        .collect()
}

/// Parses one log line; `None` for anything that is not a breadcrumb.
pub fn parse_line(line: &str) -> Option<BreadcrumbLine> {
    let line = line.trim_end_matches(['\n', '\r']);
    let rest = line.strip_prefix('[')?;
    let close = rest.find(']')?;
    let time = parse_time(&rest[..close])?;
    let rest = rest[close + 1..].trim_start();
    let colon = rest.find(':')?;
    let tag = rest[..colon].trim();
    if tag.is_empty() || tag.contains(' ') {
        return None;
    }
    let rest = &rest[colon + 1..];
    let (payload, fields) = match rest.rfind(" | ") {
        Some(bar) => (&rest[..bar], parse_fields(&rest[bar + 3..])),
        None => match rest.strip_suffix(" |") {
            Some(p) => (p, Vec::new()),
            None => (rest, Vec::new()),
        },
    };
    Some(BreadcrumbLine {
        time,
        tag: tag.to_string(),
        payload: payload.trim().to_string(),
        fields,
    })
}

fn parse_fields(s: &str) -> Vec<(String, String)> {
    s.split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (!k.is_empty()).then(|| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// A line's time: ours (RFC 3339, UTC) or the Python tool's (naive local
/// time, `2026-04-24 13:05:09`), by the one time reader.
fn parse_time(s: &str) -> Option<OffsetDateTime> {
    crate::timefmt::parse_iso(s)
}

/// Where breadcrumbs go: `METALGUARD_BREADCRUMB_PATH`, else
/// `~/.cache/metal-guard/breadcrumbs.log` (never relative to the working
/// directory, unlike the Python tool).
pub fn breadcrumb_path() -> PathBuf {
    match std::env::var_os("METALGUARD_BREADCRUMB_PATH").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => crate::paths::state_dir().join("breadcrumbs.log"),
    }
}

/// The places a log may be, ours first: [`breadcrumb_path`] and, unless
/// `METALGUARD_BREADCRUMB_PATH` names one log, the Python tool's.
pub fn candidate_logs() -> Vec<PathBuf> {
    let mut places = vec![breadcrumb_path()];
    if std::env::var_os("METALGUARD_BREADCRUMB_PATH").is_some_and(|p| !p.is_empty()) {
        return places;
    }
    places.push(crate::paths::state_dir().join("metal_breadcrumb.log"));
    if let Ok(dir) = std::env::current_dir() {
        places.push(dir.join("logs").join("metal_breadcrumb.log"));
    }
    places
}

/// Every log a reader looks at: [`breadcrumb_path`] and, unless
/// `METALGUARD_BREADCRUMB_PATH` names one log, the Python tool's places
/// (`~/.cache/metal-guard/metal_breadcrumb.log`, and `logs/metal_breadcrumb.log`
/// in the working folder, its default), so that a section an app embedding
/// the Python tool left open is found too. Ours first; the others only when
/// they exist.
pub fn breadcrumb_logs() -> Vec<PathBuf> {
    let mut candidates = candidate_logs().into_iter();
    let ours = candidates.next().unwrap_or_else(breadcrumb_path);
    let mut logs = vec![ours.clone()];
    for p in candidates {
        let same =
            std::fs::canonicalize(&p).ok() == std::fs::canonicalize(&ours).ok() && p.exists();
        if p.is_file() && !same && !logs.contains(&p) {
            logs.push(p);
        }
    }
    logs
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn round_trip() {
        let line = BreadcrumbLine {
            time: datetime!(2026-11-25 23:51:46.123 UTC),
            tag: "SUBPROC_PRE".into(),
            payload: "model load | weird\npayload".into(),
            fields: vec![
                ("pid".into(), "4242".into()),
                ("bytes".into(), "1 2".into()),
            ],
        };
        let text = line.format();
        assert_eq!(
            text,
            "[2026-11-25T23:51:46.123Z] SUBPROC_PRE: model load _ weird_payload | pid=4242 bytes=1_2"
        );
        let back = parse_line(&text).unwrap();
        assert_eq!(back.tag, "SUBPROC_PRE");
        assert_eq!(back.payload, "model load _ weird_payload");
        assert_eq!(back.field("pid"), Some("4242"));
        assert_eq!(back.time, line.time);
    }

    #[test]
    fn reads_python_tool_lines() {
        let l = parse_line("[2026-04-24 13:05:09] SUBPROC_PRE: mlx-community/gemma | worker=1")
            .unwrap();
        assert_eq!(l.payload, "mlx-community/gemma");
        assert_eq!(l.field("worker"), Some("1"));
        let l = parse_line("[2026-04-24 13:05:09.5] SUBPROC_POST: m").unwrap();
        assert_eq!(l.tag, "SUBPROC_POST");
        assert!(l.fields.is_empty());
    }

    #[test]
    fn rejects_non_breadcrumbs() {
        for s in [
            "",
            "hello",
            "[not a time] X: y",
            "[2026-04-24 13:05:09] no colon here",
            "[2026-04-24 13:05:09] two words: x",
        ] {
            assert!(parse_line(s).is_none(), "{s}");
        }
    }
}
