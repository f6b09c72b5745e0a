//! The circuit breaker: `threshold` IOGPU panics within `window` trip a
//! cooldown of `cooldown` after the panic that tripped it. The trip is
//! recorded in `~/.cache/metal-guard/breaker.json` (the Python tool's keys,
//! plus `schema_version` and `cleared_at`) so it holds even when the
//! reports and the ledger rotate; `metal-guard breaker clear` records a
//! `cleared_at` and the breaker then ignores panics up to that moment.

use crate::state::tolerant_json::{self, Loaded};
use crate::timefmt;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// Breaker thresholds (defaults: 2 panics within 3600 s trip 3600 s).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerPolicy {
    pub window: Duration,
    pub threshold: usize,
    pub cooldown: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy {
            window: Duration::seconds(3600),
            threshold: 2,
            cooldown: Duration::seconds(3600),
        }
    }
}

/// `breaker.json` on disk. Every field is optional so a file written by the
/// Python tool, or by an older or newer version of ours, still reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BreakerFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<u32>,
    #[serde(default)]
    pub cooldown_until: Option<f64>,
    #[serde(default)]
    pub panic_count: Option<u64>,
    #[serde(default)]
    pub entered_at: Option<f64>,
    #[serde(default)]
    pub window_sec: Option<f64>,
    #[serde(default)]
    pub threshold: Option<u64>,
    #[serde(default)]
    pub cleared_at: Option<f64>,
}

/// What the breaker says right now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakerStatus {
    pub tripped: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub cooldown_until: Option<OffsetDateTime>,
    /// Panics inside the window that tripped it.
    pub panic_count: usize,
    #[serde(with = "time::serde::rfc3339::option")]
    pub entered_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub cleared_at: Option<OffsetDateTime>,
    pub window_sec: i64,
    pub threshold: usize,
    pub cooldown_sec: i64,
}

/// Longest a recorded trip is believed, counted from now: a file claiming
/// more is damaged (or hand-edited) and must not lock the machine for days.
const MAX_RECORDED_SPAN: Duration = Duration::hours(24);

/// `~/.cache/metal-guard/breaker.json`.
pub fn breaker_path() -> PathBuf {
    crate::paths::state_dir().join("breaker.json")
}

/// Reads `breaker.json` tolerantly: `(file, warning)`.
pub fn read_breaker(path: &Path) -> (Option<BreakerFile>, Option<String>) {
    match tolerant_json::load::<BreakerFile>(path) {
        Loaded::Missing => (None, None),
        Loaded::Ok(f) => (Some(f), None),
        Loaded::Reset { warning } => (None, Some(warning)),
    }
}

/// The breaker's state at `now` from the panic times (any order) and the
/// recorded file. Pure.
pub fn evaluate_breaker(
    panics: &[OffsetDateTime],
    file: Option<&BreakerFile>,
    policy: &BreakerPolicy,
    now: OffsetDateTime,
) -> BreakerStatus {
    let cleared_at = file
        .and_then(|f| f.cleared_at)
        .and_then(timefmt::from_unix_f64);
    let mut times: Vec<OffsetDateTime> = panics
        .iter()
        .copied()
        .filter(|t| *t <= now && cleared_at.is_none_or(|c| *t > c))
        .collect();
    times.sort();
    let mut best: Option<(OffsetDateTime, OffsetDateTime, usize)> = None; // (until, entered, count)
    for (i, &t) in times.iter().enumerate() {
        let count = times[..=i]
            .iter()
            .filter(|&&p| p >= t - policy.window)
            .count();
        if count >= policy.threshold.max(1) {
            let until = t + policy.cooldown;
            if best.is_none_or(|(u, _, _)| until > u) {
                best = Some((until, t, count));
            }
        }
    }
    if let Some(f) = file {
        let entered = f.entered_at.and_then(timefmt::from_unix_f64);
        let until = f.cooldown_until.and_then(timefmt::from_unix_f64);
        let cleared_after = match (cleared_at, entered) {
            (Some(c), Some(e)) => c >= e,
            (Some(_), None) => true,
            _ => false,
        };
        if let Some(until) = until {
            if until > now
                && until - now <= MAX_RECORDED_SPAN
                && !cleared_after
                && best.is_none_or(|(u, _, _)| until > u)
            {
                best = Some((
                    until,
                    entered.unwrap_or(until - policy.cooldown),
                    f.panic_count.unwrap_or(policy.threshold as u64) as usize,
                ));
            }
        }
    }
    let active = best.filter(|(until, _, _)| *until > now);
    BreakerStatus {
        tripped: active.is_some(),
        cooldown_until: active.map(|b| b.0),
        panic_count: active.map_or(0, |b| b.2),
        entered_at: active.map(|b| b.1),
        cleared_at,
        window_sec: policy.window.whole_seconds(),
        threshold: policy.threshold,
        cooldown_sec: policy.cooldown.whole_seconds(),
    }
}

/// The file that records `status` (keeping an earlier `cleared_at`).
pub fn file_for(status: &BreakerStatus) -> BreakerFile {
    BreakerFile {
        schema_version: Some(1),
        cooldown_until: status.cooldown_until.map(timefmt::to_unix_f64),
        panic_count: Some(status.panic_count as u64),
        entered_at: status.entered_at.map(timefmt::to_unix_f64),
        window_sec: Some(status.window_sec as f64),
        threshold: Some(status.threshold as u64),
        cleared_at: status.cleared_at.map(timefmt::to_unix_f64),
    }
}

/// Whether `status` is a trip the file does not record yet.
pub fn needs_recording(status: &BreakerStatus, file: Option<&BreakerFile>) -> bool {
    if !status.tripped {
        return false;
    }
    let recorded = file
        .and_then(|f| f.cooldown_until)
        .and_then(timefmt::from_unix_f64);
    recorded != status.cooldown_until
}

/// Writes `file` atomically.
pub fn write_breaker(path: &Path, file: &BreakerFile) -> std::io::Result<Option<String>> {
    let mut bytes = serde_json::to_vec_pretty(file).expect("breaker state always serializes");
    bytes.push(b'\n');
    crate::state::write_state::write_state(path, &bytes)
}

/// Clears the breaker at `now`: panics up to now no longer count.
pub fn clear_breaker(
    path: &Path,
    policy: &BreakerPolicy,
    now: OffsetDateTime,
) -> std::io::Result<Option<String>> {
    let file = BreakerFile {
        schema_version: Some(1),
        cooldown_until: None,
        panic_count: Some(0),
        entered_at: None,
        window_sec: Some(policy.window.whole_seconds() as f64),
        threshold: Some(policy.threshold as u64),
        cleared_at: Some(timefmt::to_unix_f64(now)),
    };
    write_breaker(path, &file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-25 12:00 UTC);

    #[test]
    fn two_panics_within_the_window_trip_it() {
        let p = BreakerPolicy::default();
        let one = [NOW - Duration::minutes(10)];
        assert!(!evaluate_breaker(&one, None, &p, NOW).tripped);
        let two = [NOW - Duration::minutes(50), NOW - Duration::minutes(10)];
        let s = evaluate_breaker(&two, None, &p, NOW);
        assert!(s.tripped);
        assert_eq!(s.cooldown_until, Some(NOW + Duration::minutes(50)));
        assert_eq!(s.panic_count, 2);
        let apart = [NOW - Duration::minutes(130), NOW - Duration::minutes(10)];
        assert!(!evaluate_breaker(&apart, None, &p, NOW).tripped);
        let expired = [NOW - Duration::minutes(130), NOW - Duration::minutes(70)];
        assert!(!evaluate_breaker(&expired, None, &p, NOW).tripped);
    }

    #[test]
    fn recorded_trip_holds_after_reports_rotate_and_clear_releases_it() {
        let p = BreakerPolicy::default();
        let two = [NOW - Duration::minutes(50), NOW - Duration::minutes(10)];
        let s = evaluate_breaker(&two, None, &p, NOW);
        let file = file_for(&s);
        assert!(needs_recording(&s, None));
        assert!(!needs_recording(&s, Some(&file)));
        let later = NOW + Duration::minutes(20);
        let held = evaluate_breaker(&[], Some(&file), &p, later);
        assert!(held.tripped);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("breaker.json");
        clear_breaker(&path, &p, later).unwrap();
        let (cleared, w) = read_breaker(&path);
        assert!(w.is_none());
        assert!(!evaluate_breaker(&two, cleared.as_ref(), &p, later).tripped);
        // A new cluster after the clear trips it again.
        let new = [later + Duration::minutes(1), later + Duration::minutes(2)];
        assert!(evaluate_breaker(&new, cleared.as_ref(), &p, later + Duration::minutes(3)).tripped);
    }

    #[test]
    fn implausible_or_damaged_files_do_not_lock() {
        let p = BreakerPolicy::default();
        let file = BreakerFile {
            cooldown_until: Some(timefmt::to_unix_f64(NOW + Duration::days(400))),
            ..Default::default()
        };
        assert!(!evaluate_breaker(&[], Some(&file), &p, NOW).tripped);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("breaker.json");
        for bad in [
            &b""[..],
            b"{\"cooldown_until\": \"soon\"}",
            b"\x00\x01",
            b"{\"panic_count\": -1",
        ] {
            std::fs::write(&path, bad).unwrap();
            let (f, w) = read_breaker(&path);
            assert!(f.is_none() && w.is_some());
        }
        // The Python tool's file reads.
        std::fs::write(
            &path,
            br#"{"cooldown_until": 1790000000.5, "panic_count": 2, "entered_at": 1789996400.5, "window_sec": 3600, "threshold": 2}"#,
        )
        .unwrap();
        assert!(read_breaker(&path).0.is_some());
    }
}
