//! The cadence guard: the same model may not be loaded again within
//! `min_interval` (180 s: a panic once hit two loads about 40 s apart), and
//! optionally no model at all within `cross_model_interval` of another
//! model's load (`METALGUARD_CROSS_MODEL_INTERVAL`, off by default).
//!
//! State: `~/.cache/metal-guard/cadence.json`, `{"<model id>": <unix
//! seconds>}` exactly as the Python tool keeps it (so there is no version
//! key: the Python tool would read it as a model). The check and the mark
//! are one step across processes: an exclusive `flock` on
//! `cadence.json.lock` is held around read-modify-write, and the file is
//! replaced atomically. Of N processes racing on a fresh model, one passes.

use crate::env_vars::{self, Lookup};
use crate::state::file_lock::{FileLock, Wait};
use crate::state::tolerant_json::{self, Loaded};
use crate::timefmt;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// Entries older than this are dropped on every write.
pub const ENTRY_MAX_AGE: Duration = Duration::hours(4);
/// Default same-model interval, seconds.
pub const DEFAULT_MIN_INTERVAL_SEC: f64 = 180.0;

/// The intervals to enforce.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CadencePolicy {
    pub min_interval: Duration,
    /// `None`: loads of different models are not spaced.
    pub cross_model_interval: Option<Duration>,
}

impl Default for CadencePolicy {
    fn default() -> Self {
        CadencePolicy {
            min_interval: Duration::seconds_f64(DEFAULT_MIN_INTERVAL_SEC),
            cross_model_interval: None,
        }
    }
}

impl CadencePolicy {
    /// Defaults plus `METALGUARD_CROSS_MODEL_INTERVAL` (seconds; unset, empty or `0`: off).
    pub fn from_env(get: Lookup<'_>, warnings: &mut Vec<String>) -> CadencePolicy {
        let cross = match get("METALGUARD_CROSS_MODEL_INTERVAL") {
            Some(v) if v.trim().is_empty() || v.trim() == "0" => None,
            Some(_) => Some(Duration::seconds_f64(env_vars::positive_seconds(
                get,
                "METALGUARD_CROSS_MODEL_INTERVAL",
                DEFAULT_MIN_INTERVAL_SEC,
                warnings,
            ))),
            None => None,
        };
        CadencePolicy {
            min_interval: CadencePolicy::default().min_interval,
            cross_model_interval: cross,
        }
    }
}

/// The outcome of one check-and-mark.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum CadenceDecision {
    /// Clear; the load was marked at `marked_at`.
    Clear {
        #[serde(with = "time::serde::rfc3339")]
        marked_at: OffsetDateTime,
    },
    /// Too soon: wait `wait_sec` seconds.
    TooSoon {
        wait_sec: f64,
        /// The model whose earlier load blocks this one.
        blocking_model: String,
        #[serde(with = "time::serde::rfc3339")]
        last_load: OffsetDateTime,
        /// `same_model` or `cross_model`.
        rule: &'static str,
    },
}

/// A check-and-mark that could not run.
#[derive(Debug)]
pub struct CadenceError(pub String);

impl std::fmt::Display for CadenceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CadenceError {}

/// `~/.cache/metal-guard/cadence.json`.
pub fn cadence_path() -> PathBuf {
    crate::paths::state_dir().join("cadence.json")
}

/// Check-and-mark at the real cadence file. Warnings (a damaged file that
/// was reset) are printed to stderr.
pub fn check_and_mark(
    model_id: &str,
    policy: &CadencePolicy,
    now: OffsetDateTime,
) -> Result<CadenceDecision, CadenceError> {
    let mut warnings = Vec::new();
    let d = check_and_mark_at(&cadence_path(), model_id, policy, now, &mut warnings);
    for w in warnings {
        eprintln!("{w}");
    }
    d
}

/// Check-and-mark at `path` (its lock file is `path` + `.lock`).
pub fn check_and_mark_at(
    path: &Path,
    model_id: &str,
    policy: &CadencePolicy,
    now: OffsetDateTime,
    warnings: &mut Vec<String>,
) -> Result<CadenceDecision, CadenceError> {
    let mut lock_name = path.file_name().unwrap_or_default().to_os_string();
    lock_name.push(".lock");
    let lock_path = path.with_file_name(lock_name);
    let _lock = FileLock::acquire(&lock_path, Wait::Block)
        .map_err(|e| CadenceError(format!("cadence check failed: {e}")))?
        .expect("a blocking acquire returns a lock");

    let raw: BTreeMap<String, serde_json::Value> = match tolerant_json::load(path) {
        Loaded::Missing => BTreeMap::new(),
        Loaded::Ok(m) => m,
        Loaded::Reset { warning } => {
            warnings.push(warning);
            BTreeMap::new()
        }
    };
    let mut entries: BTreeMap<String, OffsetDateTime> = BTreeMap::new();
    let mut dropped = 0usize;
    for (model, v) in raw {
        match v.as_f64().and_then(timefmt::from_unix_f64) {
            // A load "in the future" (clock moved back) counts as now: it
            // blocks for at most one interval, never longer.
            Some(t) => {
                entries.insert(model, t.min(now));
            }
            None => dropped += 1,
        }
    }
    if dropped > 0 {
        warnings.push(format!(
            "metal-guard: warning: dropped {dropped} unreadable entr{} from {}",
            if dropped == 1 { "y" } else { "ies" },
            path.display()
        ));
    }

    let decision = decide(&entries, model_id, policy, now);
    if let CadenceDecision::Clear { .. } = decision {
        entries.retain(|_, t| now - *t <= ENTRY_MAX_AGE);
        entries.insert(model_id.to_string(), now);
        let out: BTreeMap<&str, f64> = entries
            .iter()
            .map(|(k, v)| (k.as_str(), timefmt::to_unix_f64(*v)))
            .collect();
        let mut bytes = serde_json::to_vec_pretty(&out).expect("a map of floats serializes");
        bytes.push(b'\n');
        match crate::state::write_state::write_state(path, &bytes) {
            Ok(w) => warnings.extend(w),
            Err(e) => return Err(CadenceError(format!("cadence check failed: {e}"))),
        }
    }
    Ok(decision)
}

/// The pure rule over the recorded loads.
pub fn decide(
    entries: &BTreeMap<String, OffsetDateTime>,
    model_id: &str,
    policy: &CadencePolicy,
    now: OffsetDateTime,
) -> CadenceDecision {
    let mut worst: Option<(Duration, &str, OffsetDateTime, &'static str)> = None;
    if let Some(&last) = entries.get(model_id) {
        let wait = policy.min_interval - (now - last);
        if wait > Duration::ZERO {
            worst = Some((wait, model_id, last, "same_model"));
        }
    }
    if let Some(cross) = policy.cross_model_interval {
        for (model, &last) in entries.iter().filter(|(m, _)| m.as_str() != model_id) {
            let wait = cross - (now - last);
            if wait > Duration::ZERO && worst.is_none_or(|w| wait > w.0) {
                worst = Some((wait, model, last, "cross_model"));
            }
        }
    }
    match worst {
        None => CadenceDecision::Clear { marked_at: now },
        Some((wait, model, last, rule)) => CadenceDecision::TooSoon {
            wait_sec: (wait.as_seconds_f64() * 10.0).ceil() / 10.0,
            blocking_model: model.to_string(),
            last_load: last,
            rule,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-25 12:00 UTC);

    #[test]
    fn same_model_waits_and_other_models_pass_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cadence.json");
        let pol = CadencePolicy::default();
        let mut w = Vec::new();
        assert!(matches!(
            check_and_mark_at(&p, "m", &pol, NOW, &mut w).unwrap(),
            CadenceDecision::Clear { .. }
        ));
        match check_and_mark_at(&p, "m", &pol, NOW + Duration::seconds(40), &mut w).unwrap() {
            CadenceDecision::TooSoon { wait_sec, rule, .. } => {
                assert_eq!(wait_sec, 140.0);
                assert_eq!(rule, "same_model");
            }
            d => panic!("{d:?}"),
        }
        assert!(matches!(
            check_and_mark_at(&p, "other", &pol, NOW + Duration::seconds(41), &mut w).unwrap(),
            CadenceDecision::Clear { .. }
        ));
        assert!(matches!(
            check_and_mark_at(&p, "m", &pol, NOW + Duration::seconds(181), &mut w).unwrap(),
            CadenceDecision::Clear { .. }
        ));
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn cross_model_interval_and_old_entries_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cadence.json");
        std::fs::write(
            &p,
            format!(
                r#"{{"old": {}, "recent": {}}}"#,
                timefmt::to_unix_f64(NOW - Duration::hours(5)),
                timefmt::to_unix_f64(NOW - Duration::seconds(30))
            ),
        )
        .unwrap();
        let pol = CadencePolicy {
            cross_model_interval: Some(Duration::seconds(60)),
            ..Default::default()
        };
        let mut w = Vec::new();
        match check_and_mark_at(&p, "new", &pol, NOW, &mut w).unwrap() {
            CadenceDecision::TooSoon {
                blocking_model,
                rule,
                wait_sec,
                ..
            } => {
                assert_eq!(blocking_model, "recent");
                assert_eq!(rule, "cross_model");
                assert_eq!(wait_sec, 30.0);
            }
            d => panic!("{d:?}"),
        }
        let later = NOW + Duration::seconds(31);
        assert!(matches!(
            check_and_mark_at(&p, "new", &pol, later, &mut w).unwrap(),
            CadenceDecision::Clear { .. }
        ));
        let map: BTreeMap<String, f64> =
            serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(map.keys().collect::<Vec<_>>(), ["new", "recent"]);
    }

    #[test]
    fn every_kind_of_damage_resets_and_marks() {
        use std::os::unix::fs::PermissionsExt;
        let pol = CadencePolicy::default();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cadence.json");
        let cases: [&[u8]; 6] = [
            b"",
            b"{\"m\": 17",
            b"\x89PNG\x00\xff",
            b"{\"m\": \"yesterday\"}",
            b"[1, 2]",
            b"{\"m\": 1e400}",
        ];
        for bytes in cases {
            std::fs::write(&p, bytes).unwrap();
            let mut w = Vec::new();
            let d = check_and_mark_at(&p, "m", &pol, NOW, &mut w).unwrap();
            assert!(matches!(d, CadenceDecision::Clear { .. }), "{bytes:?}");
            assert_eq!(w.len(), 1, "{bytes:?}: {w:?}");
            let map: BTreeMap<String, f64> =
                serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            assert!(map.contains_key("m"));
        }
        // A directory in its place: moved aside, then marked.
        std::fs::remove_file(&p).unwrap();
        std::fs::create_dir(&p).unwrap();
        let mut w = Vec::new();
        check_and_mark_at(&p, "m", &pol, NOW, &mut w).unwrap();
        assert!(p.is_file());
        assert!(w.iter().any(|l| l.contains("moved it to")), "{w:?}");
        // A symlink to elsewhere: replaced, the target untouched.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        std::fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        check_and_mark_at(&p, "m", &pol, NOW, &mut Vec::new()).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(!std::fs::symlink_metadata(&p)
            .unwrap()
            .file_type()
            .is_symlink());
        // No permission to read: reset (when not root) and marked.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
        let mut w = Vec::new();
        check_and_mark_at(&p, "x", &pol, NOW, &mut w).unwrap();
        assert!(p.is_file());
        // A future entry blocks for one interval at most.
        std::fs::write(
            &p,
            format!(
                "{{\"m\": {}}}",
                timefmt::to_unix_f64(NOW + Duration::days(30))
            ),
        )
        .unwrap();
        match check_and_mark_at(&p, "m", &pol, NOW, &mut Vec::new()).unwrap() {
            CadenceDecision::TooSoon { wait_sec, .. } => assert_eq!(wait_sec, 180.0),
            d => panic!("{d:?}"),
        }
    }
}
