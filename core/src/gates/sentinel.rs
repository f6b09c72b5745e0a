//! `~/.cache/metal-guard/panic-sentinel.json`: a cooldown written by
//! `postmortem` (or anyone) that holds even when the panic reports have
//! rotated away. `{"cooldown_until": iso, "created_at": iso, "reason": str}`,
//! as the Python tool writes it; we add `schema_version`.
//!
//! A sentinel can never lock a machine for long: its effect ends at most
//! [`SENTINEL_MAX_SPAN`] after it was created (its `created_at`, or the
//! file's modification time when that is missing) and never more than that
//! span from now, whatever it says.

use crate::state::tolerant_json::{self, Loaded};
use crate::timefmt;
use serde::Serialize;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

/// The longest a sentinel can hold, counted from its creation.
pub const SENTINEL_MAX_SPAN: time::Duration = time::Duration::hours(72);

/// A sentinel as read from disk, already bounded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sentinel {
    #[serde(with = "time::serde::rfc3339")]
    pub cooldown_until: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub reason: String,
}

/// `~/.cache/metal-guard/panic-sentinel.json`.
pub fn sentinel_path() -> PathBuf {
    crate::paths::state_dir().join("panic-sentinel.json")
}

/// Reads the sentinel: `(sentinel, warning)`. Damage is a warning and no sentinel.
pub fn read_sentinel(path: &Path, now: OffsetDateTime) -> (Option<Sentinel>, Option<String>) {
    let value = match tolerant_json::load::<serde_json::Value>(path) {
        Loaded::Missing => return (None, None),
        Loaded::Reset { warning } => return (None, Some(warning)),
        Loaded::Ok(v) => v,
    };
    let bad = |what: &str| {
        (
            None,
            Some(format!(
                "metal-guard: warning: {} {what}; ignoring it (a damaged sentinel never blocks a run; the next `metal-guard postmortem` that finds a panic writes a fresh one)",
                path.display()
            )),
        )
    };
    let Some(obj) = value.as_object() else {
        return bad("is not a JSON object");
    };
    let Some(until) = obj.get("cooldown_until").and_then(timefmt::from_json_time) else {
        return bad("has no readable cooldown_until");
    };
    let created = obj
        .get("created_at")
        .and_then(timefmt::from_json_time)
        .or_else(|| {
            std::fs::metadata(path)
                .ok()
                .and_then(|m| timefmt::mtime(&m))
        });
    let Some(created) = created else {
        return bad("has no readable created_at");
    };
    let reason = obj
        .get("reason")
        .and_then(|r| r.as_str())
        .unwrap_or("a postmortem found a recent panic")
        .to_string();
    let mut warning = None;
    // From when it was written, but never from a time still to come: a
    // sentinel "written" in the future (a wrong clock, a hand edit) holds at
    // most SENTINEL_MAX_SPAN from now. `now` is representable, so the sum is.
    let cap = created
        .min(now)
        .checked_add(SENTINEL_MAX_SPAN)
        .unwrap_or(now);
    let until = if until > cap {
        warning = Some(format!(
            "metal-guard: warning: {} asks for a cooldown until {}, longer than {} h after it was written (or after now); holding it only until {}",
            path.display(),
            timefmt::iso(until),
            SENTINEL_MAX_SPAN.whole_hours(),
            timefmt::iso(cap)
        ));
        cap
    } else {
        until
    };
    (
        Some(Sentinel {
            cooldown_until: until,
            created_at: created,
            reason,
        }),
        warning,
    )
}

/// Writes a sentinel holding a cooldown until `until`.
pub fn write_sentinel(
    path: &Path,
    until: OffsetDateTime,
    now: OffsetDateTime,
    reason: &str,
) -> std::io::Result<Option<String>> {
    let body = serde_json::json!({
        "schema_version": 1,
        // Naive local times, the Python tool's form: its readers compare
        // them with a naive `datetime.now()` and fail on a zone suffix.
        "cooldown_until": timefmt::local_naive(until),
        "created_at": timefmt::local_naive(now),
        "reason": reason,
    });
    let mut bytes = serde_json::to_vec_pretty(&body).expect("a JSON value always serializes");
    bytes.push(b'\n');
    crate::state::write_state::write_state(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use time::Duration;

    #[test]
    fn round_trip_and_python_form() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("panic-sentinel.json");
        let now = datetime!(2026-11-25 12:00 UTC);
        write_sentinel(&p, now + Duration::hours(2), now, "postmortem").unwrap();
        let (s, w) = read_sentinel(&p, datetime!(2026-11-26 12:00 UTC));
        assert!(w.is_none());
        let s = s.unwrap();
        assert_eq!(s.cooldown_until, now + Duration::hours(2));
        assert_eq!(s.reason, "postmortem");

        std::fs::write(
            &p,
            br#"{"cooldown_until": "2026-11-25T14:00:00.123456", "created_at": "2026-11-25T12:00:00", "reason": "py"}"#,
        )
        .unwrap();
        let (s, _) = read_sentinel(&p, datetime!(2026-11-26 12:00 UTC));
        assert_eq!(s.unwrap().created_at, now);
    }

    #[test]
    fn far_future_is_capped_and_damage_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        std::fs::write(
            &p,
            br#"{"cooldown_until": "2999-01-01T00:00:00Z", "created_at": "2026-11-25T12:00:00Z"}"#,
        )
        .unwrap();
        let (s, w) = read_sentinel(&p, datetime!(2026-11-26 12:00 UTC));
        assert_eq!(s.unwrap().cooldown_until, datetime!(2026-11-28 12:00 UTC));
        assert!(w.unwrap().contains("holding it only until"));
        // Written "in the future" (year 9999): held 72 h from now at most, no overflow.
        std::fs::write(
            &p,
            br#"{"cooldown_until": "9999-12-31T23:59:59Z", "created_at": "9999-12-31T00:00:00Z"}"#,
        )
        .unwrap();
        let (s, _) = read_sentinel(&p, datetime!(2026-11-26 12:00 UTC));
        assert_eq!(s.unwrap().cooldown_until, datetime!(2026-11-29 12:00 UTC));
        for bad in [
            &b"[]"[..],
            b"{\"cooldown_until\": 5e400}",
            b"{\"cooldown_until\": true}",
            b"{",
        ] {
            std::fs::write(&p, bad).unwrap();
            let (s, w) = read_sentinel(&p, datetime!(2026-11-26 12:00 UTC));
            assert!(s.is_none());
            assert!(w.is_some());
        }
    }
}
