//! `~/.cache/metal-guard/cadence.json`: the loads every process marked, as
//! `{"<model id>": <unix seconds>}` exactly as the Python tool keeps it (so
//! there is no version key: the Python tool would read it as a model). The
//! rule is [`super::rule::decide`], the same the injected guard applies in
//! its own process.
//!
//! The check and the mark are one step across processes: an exclusive
//! `flock` on `cadence.json.lock` is held around read-modify-write, and the
//! file is replaced atomically. Of N processes racing on a fresh model, one
//! passes.

use super::rule::{decide, CadenceDecision, CadencePolicy, LoadHistory, TooSoonReason};
use crate::state::file_lock::{FileLock, Wait};
use crate::state::tolerant_json::{self, Loaded};
use crate::timefmt;
use crate::warnings::Warnings;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// Entries older than this are dropped on every write.
pub const ENTRY_MAX_AGE: Duration = Duration::hours(4);

/// The outcome of one check-and-mark.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadCheck {
    pub decision: CadenceDecision,
    /// When the load was marked (a clear decision marks it).
    pub marked_at: Option<OffsetDateTime>,
    /// The model whose earlier load blocks this one, and when it was loaded.
    pub blocking: Option<(String, OffsetDateTime)>,
}

impl LoadCheck {
    /// Seconds still to wait, rounded up to a tenth (0 when clear).
    pub fn wait_sec(&self) -> f64 {
        match self.decision {
            CadenceDecision::Clear => 0.0,
            CadenceDecision::TooSoon { short_by_ns, .. } => {
                (short_by_ns as f64 / 1e8).ceil() / 10.0
            }
        }
    }

    /// The JSON of `metal-guard cadence --json` (the Python tool's keys):
    /// `{"decision": "clear", "marked_at"}` or `{"decision": "too_soon",
    /// "wait_sec", "blocking_model", "last_load", "rule"}`.
    pub fn to_json(&self) -> serde_json::Value {
        let rfc3339 = |t: OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        };
        match self.decision {
            CadenceDecision::Clear => serde_json::json!({
                "decision": "clear",
                "marked_at": self.marked_at.and_then(rfc3339),
            }),
            CadenceDecision::TooSoon { reason, .. } => serde_json::json!({
                "decision": "too_soon",
                "wait_sec": self.wait_sec(),
                "blocking_model": self.blocking.as_ref().map(|(m, _)| m.clone()),
                "last_load": self.blocking.as_ref().and_then(|(_, t)| rfc3339(*t)),
                "rule": reason.rule(),
            }),
        }
    }
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
) -> Result<LoadCheck, CadenceError> {
    let mut warnings = Warnings::new();
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
    warnings: &mut Warnings,
) -> Result<LoadCheck, CadenceError> {
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

    let check = check_entries(&entries, model_id, policy, now);
    if check.decision == CadenceDecision::Clear {
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
    Ok(check)
}

/// The rule over the recorded loads: this model's last load, and the most
/// recent load of any other model.
fn check_entries(
    entries: &BTreeMap<String, OffsetDateTime>,
    model_id: &str,
    policy: &CadencePolicy,
    now: OffsetDateTime,
) -> LoadCheck {
    let since = |t: OffsetDateTime| (now - t).whole_nanoseconds().max(0) as u64;
    let same = entries.get(model_id).map(|&t| (model_id, t));
    let other = entries
        .iter()
        .filter(|(m, _)| m.as_str() != model_id)
        .max_by_key(|(_, t)| **t)
        .map(|(m, &t)| (m.as_str(), t));
    let history = LoadHistory {
        since_unload_ns: None,
        since_same_model_load_ns: same.map(|(_, t)| since(t)),
        since_other_model_load_ns: other.map(|(_, t)| since(t)),
    };
    let decision = decide(policy, &history);
    let blocking = match decision {
        CadenceDecision::Clear => None,
        CadenceDecision::TooSoon { reason, .. } => match reason {
            TooSoonReason::AfterLoadOfOtherModel => other,
            _ => same,
        }
        .map(|(m, t)| (m.to_string(), t)),
    };
    LoadCheck {
        marked_at: (decision == CadenceDecision::Clear).then_some(now),
        decision,
        blocking,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const SEC: u64 = 1_000_000_000;

    const NOW: OffsetDateTime = datetime!(2026-11-25 12:00 UTC);

    #[test]
    fn same_model_waits_and_other_models_pass_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cadence.json");
        let pol = CadencePolicy::default();
        let mut w = Warnings::new();
        assert_eq!(
            check_and_mark_at(&p, "m", &pol, NOW, &mut w)
                .unwrap()
                .decision,
            CadenceDecision::Clear
        );
        let c = check_and_mark_at(&p, "m", &pol, NOW + Duration::seconds(40), &mut w).unwrap();
        assert_eq!(c.wait_sec(), 140.0);
        assert_eq!(c.to_json()["rule"], "same_model");
        assert_eq!(c.blocking.as_ref().unwrap().0, "m");
        assert_eq!(
            check_and_mark_at(&p, "other", &pol, NOW + Duration::seconds(41), &mut w)
                .unwrap()
                .decision,
            CadenceDecision::Clear
        );
        assert_eq!(
            check_and_mark_at(&p, "m", &pol, NOW + Duration::seconds(181), &mut w)
                .unwrap()
                .decision,
            CadenceDecision::Clear
        );
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
            cross_model_interval_ns: Some(60 * SEC),
            ..Default::default()
        };
        let mut w = Warnings::new();
        let c = check_and_mark_at(&p, "new", &pol, NOW, &mut w).unwrap();
        assert_eq!(c.blocking.as_ref().unwrap().0, "recent");
        assert_eq!(c.to_json()["rule"], "cross_model");
        assert_eq!(c.to_json()["blocking_model"], "recent");
        assert_eq!(c.wait_sec(), 30.0);
        let later = NOW + Duration::seconds(31);
        assert_eq!(
            check_and_mark_at(&p, "new", &pol, later, &mut w)
                .unwrap()
                .decision,
            CadenceDecision::Clear
        );
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
            let mut w = Warnings::new();
            let d = check_and_mark_at(&p, "m", &pol, NOW, &mut w).unwrap();
            assert_eq!(d.decision, CadenceDecision::Clear, "{bytes:?}");
            assert_eq!(w.len(), 1, "{bytes:?}: {w:?}");
            let map: BTreeMap<String, f64> =
                serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            assert!(map.contains_key("m"));
        }
        // A directory in its place: left untouched, the check says why it
        // could not mark (the caller fails open).
        std::fs::remove_file(&p).unwrap();
        std::fs::create_dir(&p).unwrap();
        let e = check_and_mark_at(&p, "m", &pol, NOW, &mut Warnings::new()).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        assert!(p.is_dir());
        std::fs::remove_dir(&p).unwrap();
        std::fs::write(&p, b"{}").unwrap();
        // A symlink to elsewhere: replaced, the target untouched.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        std::fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        check_and_mark_at(&p, "m", &pol, NOW, &mut Warnings::new()).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(!std::fs::symlink_metadata(&p)
            .unwrap()
            .file_type()
            .is_symlink());
        // No permission to read: reset (when not root) and marked.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
        let mut w = Warnings::new();
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
        let c = check_and_mark_at(&p, "m", &pol, NOW, &mut Warnings::new()).unwrap();
        assert_eq!(c.wait_sec(), 180.0);
    }
}
