//! The one cooldown verdict. `panic-gate`, `status`, the wizard, the
//! launcher and the interposer all call [`current_verdict`], so they can
//! never disagree.
//!
//! The staircase (defaults, each overridable by the Python tool's env vars):
//! - any IOGPU panic: a cooldown until the latest panic + 2 h
//!   (`METALGUARD_PANIC_COOLDOWN_STAGE1_H`). This holds whatever the lockout
//!   thresholds are, which closes the Python tool's hole where
//!   `METALGUARD_PANIC_LOCKOUT_24H_N=3` let two panics in 24 h through;
//! - 2 or more panics within 24 h (`METALGUARD_PANIC_LOCKOUT_24H_N`) or 3 or
//!   more within 72 h (`METALGUARD_PANIC_LOCKOUT_72H_N`): a lockout until
//!   `metal-guard ack`, or until the oldest panic counted is 72 h old
//!   (`METALGUARD_PANIC_LOCKOUT_MAX_H`);
//! - the postmortem sentinel and the circuit breaker add cooldowns of their own;
//! - `METALGUARD_PANIC_GATE_DISABLED=1` turns the gate off (the verdict still
//!   reports what it would have said).
//!
//! [`evaluate_cooldown`] is the pure rule over its inputs and a clock;
//! [`current_verdict`] gathers the inputs from disk and the environment.

use super::ack;
use super::breaker::{self, BreakerFile, BreakerPolicy, BreakerStatus};
use super::panic_sources::{self, GateError, PanicEvent};
use super::sentinel::{self, Sentinel};
use crate::env_vars::{self, Lookup};
use crate::timefmt;
use crate::warnings::Warnings;
use serde::Serialize;
use std::path::PathBuf;
use time::{Duration, OffsetDateTime};

/// Exit code: proceed.
pub const EXIT_PROCEED: u8 = crate::exit_status::SUCCESS;
/// Exit code: a cooldown or a lockout is in force.
pub const EXIT_BLOCKED: u8 = crate::exit_status::GATE_BLOCKED;
/// Exit code: the gate itself failed; the caller decides whether to fail open.
pub const EXIT_GATE_FAILED: u8 = crate::exit_status::COULD_NOT_ANSWER;

/// Panic reports with a time further in the future than this are ignored
/// (a wrong clock must not lock the machine until the clock catches up).
const FUTURE_TOLERANCE: Duration = Duration::hours(24);

/// What the gate says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    Proceed,
    Cooldown,
    Lockout,
    Disabled,
}

/// The staircase thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct CooldownPolicy {
    pub stage1: Duration,
    pub lockout_24h_n: usize,
    pub lockout_72h_n: usize,
    pub lockout_max: Duration,
    pub disabled: bool,
    pub breaker: BreakerPolicy,
}

impl Default for CooldownPolicy {
    fn default() -> Self {
        CooldownPolicy {
            stage1: Duration::hours(2),
            lockout_24h_n: 2,
            lockout_72h_n: 3,
            lockout_max: Duration::hours(72),
            disabled: false,
            breaker: BreakerPolicy::default(),
        }
    }
}

impl CooldownPolicy {
    /// The policy from environment variables (bad values: a warning and the default).
    pub fn from_env(get: Lookup<'_>, warnings: &mut Warnings) -> CooldownPolicy {
        let d = CooldownPolicy::default();
        let hours = |h: f64| Duration::seconds_f64(h * 3600.0);
        CooldownPolicy {
            stage1: hours(env_vars::positive_hours(
                get,
                "METALGUARD_PANIC_COOLDOWN_STAGE1_H",
                2.0,
                warnings,
            )),
            lockout_24h_n: env_vars::positive_count(
                get,
                "METALGUARD_PANIC_LOCKOUT_24H_N",
                d.lockout_24h_n,
                warnings,
            ),
            lockout_72h_n: env_vars::positive_count(
                get,
                "METALGUARD_PANIC_LOCKOUT_72H_N",
                d.lockout_72h_n,
                warnings,
            ),
            lockout_max: hours(env_vars::positive_hours(
                get,
                "METALGUARD_PANIC_LOCKOUT_MAX_H",
                72.0,
                warnings,
            )),
            disabled: env_vars::flag(get, "METALGUARD_PANIC_GATE_DISABLED"),
            breaker: d.breaker,
        }
    }
}

/// Everything the verdict depends on, gathered.
#[derive(Debug, Clone, Default)]
pub struct CooldownInputs {
    /// IOGPU panics (any order, duplicates allowed: same time and signature count once).
    pub panics: Vec<PanicEvent>,
    pub sentinel: Option<Sentinel>,
    /// Modification time of `~/.metal-guard-ack`.
    pub ack: Option<OffsetDateTime>,
    pub breaker_file: Option<BreakerFile>,
    pub policy: CooldownPolicy,
    /// Warnings met while gathering (damaged state, bad env values).
    pub warnings: Warnings,
}

/// The verdict. `exit_code`, `reason`, `recent_panics_24h`,
/// `recent_panics_72h` and `cooldown_until` are the Python tool's JSON keys.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CooldownVerdict {
    pub kind: VerdictKind,
    pub exit_code: u8,
    pub reason: String,
    pub recent_panics_24h: usize,
    pub recent_panics_72h: usize,
    #[serde(with = "time::serde::rfc3339::option")]
    pub cooldown_until: Option<OffsetDateTime>,
    pub how_to_clear: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub latest_panic: Option<OffsetDateTime>,
    /// The lockout that an ack set aside, if any.
    #[serde(with = "time::serde::rfc3339::option")]
    pub acknowledged_at: Option<OffsetDateTime>,
    pub breaker: BreakerStatus,
    pub sentinel: Option<Sentinel>,
    /// IOGPU panics of the last 72 h, newest first.
    pub panics: Vec<PanicEvent>,
    pub warnings: Warnings,
    #[serde(with = "time::serde::rfc3339")]
    pub evaluated_at: OffsetDateTime,
}

impl CooldownVerdict {
    /// Whether the caller may go ahead (proceed or gate disabled).
    pub fn allows_run(&self) -> bool {
        self.exit_code == EXIT_PROCEED
    }
}

/// The pure rule: the verdict at `now` from `inputs`.
pub fn evaluate_cooldown(inputs: &CooldownInputs, now: OffsetDateTime) -> CooldownVerdict {
    let policy = &inputs.policy;
    let mut warnings = inputs.warnings.clone();

    // Usable panic times: ignore far-future ones, clamp slight skew to now,
    // drop duplicates (the same panic seen as a report and in the ledger).
    let mut events: Vec<PanicEvent> = Vec::new();
    for e in &inputs.panics {
        if e.time > now + FUTURE_TOLERANCE {
            warnings.push(format!(
                "metal-guard: warning: ignoring panic {} dated {}, more than a day in the future (check the clock)",
                e.source,
                timefmt::iso(e.time)
            ));
            continue;
        }
        let mut e = e.clone();
        if e.time > now {
            e.time = now;
        }
        events.push(e);
    }
    panic_sources::dedup_panics(&mut events);
    let times: Vec<OffsetDateTime> = events.iter().map(|e| e.time).collect();

    let within = |span: Duration| times.iter().filter(|&&t| t >= now - span).count();
    let recent_24h = within(Duration::hours(24));
    let recent_72h = within(Duration::hours(72));
    let latest = times.last().copied();

    // Lockout: at some panic's arrival the 24 h or 72 h count reached its
    // threshold; it lasts until the oldest panic counted then is lockout_max old.
    let horizon: Vec<OffsetDateTime> = times
        .iter()
        .copied()
        .filter(|&t| t > now - policy.lockout_max)
        .collect();
    let mut lockout: Option<(OffsetDateTime, usize, &'static str)> = None;
    for (i, &t) in horizon.iter().enumerate() {
        for (span, n, label) in [
            (Duration::hours(24), policy.lockout_24h_n, "24 h"),
            (Duration::hours(72), policy.lockout_72h_n, "72 h"),
        ] {
            let counted: Vec<&OffsetDateTime> =
                horizon[..=i].iter().filter(|&&p| p >= t - span).collect();
            if counted.len() >= n {
                let until = *counted[0] + policy.lockout_max;
                if until > now && lockout.is_none_or(|(u, _, _)| until > u) {
                    lockout = Some((until, counted.len(), label));
                }
            }
        }
    }

    let acked = ack::ack_is_valid(inputs.ack, latest, now);
    let stage1_until = latest.map(|t| t + policy.stage1).filter(|u| *u > now);
    let sentinel_until = inputs
        .sentinel
        .as_ref()
        .map(|s| s.cooldown_until)
        .filter(|u| *u > now);
    let breaker_status =
        breaker::evaluate_breaker(&times, inputs.breaker_file.as_ref(), &policy.breaker, now);
    let latest_desc = events
        .last()
        .map(|e| format!("latest {} at {}", e.signature, timefmt::human(e.time)))
        .unwrap_or_default();

    let mut kind = VerdictKind::Proceed;
    let mut until: Option<OffsetDateTime> = None;
    let mut reasons: Vec<String> = Vec::new();
    let mut how: Vec<String> = Vec::new();

    if let (Some((lock_until, count, label)), false) = (lockout, acked) {
        kind = VerdictKind::Lockout;
        until = Some(lock_until);
        reasons.push(format!(
            "lockout: {count} IOGPU kernel panics within {label} ({latest_desc}); MLX stays paused until you acknowledge them or until {}",
            timefmt::human(lock_until)
        ));
        how.push("read `metal-guard diagnose`, then run `metal-guard ack` (clears the lockout; the 2 h cooldown after the latest panic still applies)".to_string());
    } else {
        let mut cooldowns: Vec<(OffsetDateTime, String, String)> = Vec::new();
        if let Some(u) = stage1_until {
            cooldowns.push((
                u,
                format!(
                    "cooldown: an IOGPU kernel panic {} ago ({latest_desc}); the next MLX run waits {} after a panic",
                    timefmt::human_duration(now - latest.unwrap_or(now)),
                    timefmt::human_duration(policy.stage1)
                ),
                "wait it out; to override once at your own risk: METALGUARD_PANIC_GATE_DISABLED=1".to_string(),
            ));
        }
        if let (Some(u), Some(s)) = (sentinel_until, inputs.sentinel.as_ref()) {
            cooldowns.push((
                u,
                format!("cooldown: postmortem sentinel ({})", s.reason),
                format!(
                    "wait it out, or remove the sentinel: rm {}",
                    sentinel::sentinel_path().display()
                ),
            ));
        }
        if let (true, Some(u)) = (breaker_status.tripped, breaker_status.cooldown_until) {
            cooldowns.push((
                u,
                format!(
                    "cooldown: circuit breaker tripped ({} panics within {} s)",
                    breaker_status.panic_count, breaker_status.window_sec
                ),
                "wait it out, or run `metal-guard breaker clear`".to_string(),
            ));
        }
        if !cooldowns.is_empty() {
            kind = VerdictKind::Cooldown;
            until = cooldowns.iter().map(|c| c.0).max();
            for (_, r, h) in cooldowns {
                reasons.push(r);
                how.push(h);
            }
            if acked && lockout.is_some() {
                reasons.push(format!(
                    "(lockout acknowledged at {})",
                    timefmt::human(inputs.ack.unwrap_or(now))
                ));
            }
        }
    }

    let mut reason = if reasons.is_empty() {
        match recent_72h {
            0 => "no IOGPU kernel panic in the last 72 h".to_string(),
            n => format!(
                "{n} IOGPU kernel panic(s) in the last 72 h, none holding a cooldown now ({latest_desc})"
            ),
        }
    } else {
        reasons.join("; ")
    };
    let mut exit_code = if kind == VerdictKind::Proceed {
        EXIT_PROCEED
    } else {
        EXIT_BLOCKED
    };
    let mut how_to_clear = (!how.is_empty()).then(|| how.join("; "));
    if policy.disabled {
        reason =
            format!("gate disabled by METALGUARD_PANIC_GATE_DISABLED (it would say: {reason})");
        kind = VerdictKind::Disabled;
        exit_code = EXIT_PROCEED;
        how_to_clear = None;
    }

    let mut recent: Vec<PanicEvent> = events
        .iter()
        .filter(|e| e.time >= now - Duration::hours(72))
        .cloned()
        .collect();
    recent.reverse();
    CooldownVerdict {
        kind,
        exit_code,
        reason,
        recent_panics_24h: recent_24h,
        recent_panics_72h: recent_72h,
        cooldown_until: if kind == VerdictKind::Disabled {
            None
        } else {
            until
        },
        how_to_clear,
        latest_panic: latest,
        acknowledged_at: (acked && lockout.is_some()).then_some(inputs.ack).flatten(),
        breaker: breaker_status,
        sentinel: inputs.sentinel.clone(),
        panics: recent,
        warnings,
        evaluated_at: now,
    }
}

/// Where the gate's state lives (injected in tests).
#[derive(Debug, Clone)]
pub struct GatePaths {
    pub sentinel: PathBuf,
    pub ack: PathBuf,
    pub breaker: PathBuf,
    pub ledger: PathBuf,
}

impl GatePaths {
    /// The real locations under `$HOME`.
    pub fn from_home() -> GatePaths {
        let state = crate::paths::state_dir();
        GatePaths {
            sentinel: state.join("panic-sentinel.json"),
            ack: ack::ack_path(),
            breaker: state.join("breaker.json"),
            ledger: state.join("panics.jsonl"),
        }
    }
}

/// THE verdict: scans `report_dirs` (see `forensics::report_dirs`), reads
/// the ledger, sentinel, ack and breaker, applies the environment, and
/// records a fresh breaker trip. Exit codes: 0 proceed, 2 blocked; an `Err`
/// is exit code 3.
pub fn current_verdict(report_dirs: &[PathBuf]) -> Result<CooldownVerdict, GateError> {
    verdict_with(
        report_dirs,
        &GatePaths::from_home(),
        &env_vars::process_env,
        OffsetDateTime::now_utc(),
    )
}

/// [`current_verdict`] with its paths, environment and clock injected.
pub fn verdict_with(
    report_dirs: &[PathBuf],
    paths: &GatePaths,
    env: Lookup<'_>,
    now: OffsetDateTime,
) -> Result<CooldownVerdict, GateError> {
    let mut warnings = Warnings::new();
    let policy = CooldownPolicy::from_env(env, &mut warnings);
    let since = now - policy.lockout_max.max(Duration::hours(72)) - Duration::hours(1);
    let panics =
        panic_sources::panics_since(report_dirs, since, now, &paths.ledger, &mut warnings)?;
    let (sentinel, w) = sentinel::read_sentinel(&paths.sentinel, now);
    warnings.extend(w);
    let (ack_time, w) = ack::read_ack(&paths.ack);
    warnings.extend(w);
    let (breaker_file, w) = breaker::read_breaker(&paths.breaker);
    warnings.extend(w);
    let inputs = CooldownInputs {
        panics,
        sentinel,
        ack: ack_time,
        breaker_file,
        policy,
        warnings,
    };
    let mut verdict = evaluate_cooldown(&inputs, now);
    if breaker::needs_recording(&verdict.breaker, inputs.breaker_file.as_ref()) {
        match breaker::write_breaker(&paths.breaker, &breaker::file_for(&verdict.breaker)) {
            Ok(w) => verdict.warnings.extend(w),
            Err(e) => verdict.warnings.push(format!(
                "metal-guard: warning: could not record the breaker trip ({e})"
            )),
        }
    }
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-25 12:00 UTC);

    fn panic_at(ago: Duration) -> PanicEvent {
        PanicEvent {
            time: NOW - ago,
            signature: "prepare_count_underflow".into(),
            source: format!("report-{}", ago.whole_seconds()),
        }
    }

    fn inputs(ago: &[Duration]) -> CooldownInputs {
        CooldownInputs {
            panics: ago.iter().map(|&a| panic_at(a)).collect(),
            ..Default::default()
        }
    }

    fn h(n: i64) -> Duration {
        Duration::hours(n)
    }

    #[test]
    fn no_panic_proceeds() {
        let v = evaluate_cooldown(&inputs(&[]), NOW);
        assert_eq!((v.kind, v.exit_code), (VerdictKind::Proceed, 0));
        assert_eq!(v.cooldown_until, None);
        assert!(v.how_to_clear.is_none());
    }

    #[test]
    fn stage1_one_panic_two_hours() {
        let v = evaluate_cooldown(&inputs(&[h(1)]), NOW);
        assert_eq!((v.kind, v.exit_code), (VerdictKind::Cooldown, 2));
        assert_eq!(v.cooldown_until, Some(NOW + h(1)));
        assert_eq!((v.recent_panics_24h, v.recent_panics_72h), (1, 1));
        assert!(v.reason.contains("prepare_count_underflow"), "{}", v.reason);
        assert!(v.how_to_clear.is_some());
        // Just after the 2 h: proceed, and the panic is still reported.
        let v = evaluate_cooldown(&inputs(&[h(2) + Duration::seconds(1)]), NOW);
        assert_eq!(v.kind, VerdictKind::Proceed);
        assert_eq!(v.recent_panics_24h, 1);
    }

    #[test]
    fn two_in_24h_lock_out_until_oldest_is_72h_old() {
        let v = evaluate_cooldown(&inputs(&[h(20), h(10)]), NOW);
        assert_eq!((v.kind, v.exit_code), (VerdictKind::Lockout, 2));
        assert_eq!(v.cooldown_until, Some(NOW - h(20) + h(72)));
        assert!(v
            .how_to_clear
            .as_deref()
            .unwrap()
            .contains("metal-guard ack"));
        // The lockout outlives the 24 h window: 30 h later it still holds.
        let later = NOW + h(30);
        let v = evaluate_cooldown(&inputs(&[h(20), h(10)]), later);
        assert_eq!(v.kind, VerdictKind::Lockout);
        // ... and ends when the oldest panic is 72 h old.
        let end = NOW - h(20) + h(72);
        assert_eq!(
            evaluate_cooldown(&inputs(&[h(20), h(10)]), end).kind,
            VerdictKind::Proceed
        );
    }

    #[test]
    fn three_in_72h_lock_out() {
        let v = evaluate_cooldown(&inputs(&[h(70), h(45), h(15)]), NOW);
        assert_eq!(v.kind, VerdictKind::Lockout);
        assert_eq!(v.cooldown_until, Some(NOW + h(2)));
        assert_eq!(v.recent_panics_72h, 3);
        assert_eq!(v.recent_panics_24h, 1);
        // Two in 72 h but 30 h apart, none in the last 2 h: proceed.
        assert_eq!(
            evaluate_cooldown(&inputs(&[h(60), h(30)]), NOW).kind,
            VerdictKind::Proceed
        );
    }

    #[test]
    fn ack_clears_the_lockout_but_not_stage1() {
        let mut i = inputs(&[h(3), h(1)]);
        i.ack = Some(NOW - Duration::minutes(30));
        let v = evaluate_cooldown(&i, NOW);
        assert_eq!(v.kind, VerdictKind::Cooldown, "{}", v.reason);
        assert_eq!(v.cooldown_until, Some(NOW + h(1)));
        assert_eq!(v.acknowledged_at, i.ack);
        // Once stage 1 is over, the acked lockout lets runs proceed.
        let v = evaluate_cooldown(&i, NOW + h(1) + Duration::seconds(1));
        assert_eq!(v.kind, VerdictKind::Proceed);
        // An ack older than the latest panic does not count.
        i.ack = Some(NOW - h(2));
        assert_eq!(evaluate_cooldown(&i, NOW).kind, VerdictKind::Lockout);
        // Nor one older than 24 h.
        let mut i = inputs(&[h(40), h(30)]);
        i.ack = Some(NOW - h(25));
        assert_eq!(evaluate_cooldown(&i, NOW).kind, VerdictKind::Lockout);
    }

    #[test]
    fn configuration_hole_is_closed() {
        // The Python tool: LOCKOUT_24H_N=3 let two panics in 24 h through.
        let mut i = inputs(&[h(3), h(1)]);
        i.policy.lockout_24h_n = 3;
        i.policy.lockout_72h_n = 5;
        let v = evaluate_cooldown(&i, NOW);
        assert_eq!(v.kind, VerdictKind::Cooldown);
        assert_eq!(v.cooldown_until, Some(NOW + h(1)));
        // Env values that would open it are refused with a warning.
        let env = |k: &str| match k {
            "METALGUARD_PANIC_COOLDOWN_STAGE1_H" => Some("0".to_string()),
            "METALGUARD_PANIC_LOCKOUT_24H_N" => Some("0".to_string()),
            _ => None,
        };
        let mut w = Warnings::new();
        let p = CooldownPolicy::from_env(&env, &mut w);
        assert_eq!(p.stage1, h(2));
        assert_eq!(p.lockout_24h_n, 2);
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn env_thresholds_apply() {
        let env = |k: &str| match k {
            "METALGUARD_PANIC_COOLDOWN_STAGE1_H" => Some("0.5".to_string()),
            "METALGUARD_PANIC_LOCKOUT_24H_N" => Some("1".to_string()),
            "METALGUARD_PANIC_LOCKOUT_MAX_H" => Some("10".to_string()),
            _ => None,
        };
        let mut w = Warnings::new();
        let mut i = inputs(&[h(1)]);
        i.policy = CooldownPolicy::from_env(&env, &mut w);
        assert!(w.is_empty());
        let v = evaluate_cooldown(&i, NOW);
        assert_eq!(v.kind, VerdictKind::Lockout);
        assert_eq!(v.cooldown_until, Some(NOW + h(9)));
        let mut i = inputs(&[Duration::minutes(20)]);
        i.policy.stage1 = Duration::minutes(30);
        assert_eq!(
            evaluate_cooldown(&i, NOW).cooldown_until,
            Some(NOW + Duration::minutes(10))
        );
    }

    #[test]
    fn disabled_gate_proceeds_but_reports() {
        let mut i = inputs(&[h(3), h(1)]);
        i.policy.disabled = true;
        let v = evaluate_cooldown(&i, NOW);
        assert_eq!((v.kind, v.exit_code), (VerdictKind::Disabled, 0));
        assert!(v.reason.contains("lockout"), "{}", v.reason);
        assert_eq!(v.recent_panics_24h, 2);
        assert!(v.allows_run());
    }

    #[test]
    fn sentinel_holds_without_reports_and_ack_does_not_clear_it() {
        let mut i = inputs(&[]);
        i.sentinel = Some(Sentinel {
            cooldown_until: NOW + h(1),
            created_at: NOW - h(1),
            reason: "postmortem found a panic".into(),
        });
        i.ack = Some(NOW - Duration::minutes(1));
        let v = evaluate_cooldown(&i, NOW);
        assert_eq!(v.kind, VerdictKind::Cooldown);
        assert_eq!(v.cooldown_until, Some(NOW + h(1)));
        assert!(v.reason.contains("sentinel"));
        assert_eq!(evaluate_cooldown(&i, NOW + h(1)).kind, VerdictKind::Proceed);
    }

    #[test]
    fn breaker_folds_in_and_the_latest_until_wins() {
        let mut i = inputs(&[]);
        i.breaker_file = Some(BreakerFile {
            cooldown_until: Some(timefmt::to_unix_f64(NOW + h(1))),
            entered_at: Some(timefmt::to_unix_f64(NOW)),
            panic_count: Some(2),
            ..Default::default()
        });
        let v = evaluate_cooldown(&i, NOW);
        assert_eq!(v.kind, VerdictKind::Cooldown);
        assert!(v.reason.contains("breaker"));
        assert!(v.breaker.tripped);
        i.sentinel = Some(Sentinel {
            cooldown_until: NOW + h(3),
            created_at: NOW,
            reason: "s".into(),
        });
        assert_eq!(evaluate_cooldown(&i, NOW).cooldown_until, Some(NOW + h(3)));
    }

    #[test]
    fn duplicates_and_clock_skew() {
        // The same panic from a report and the ledger counts once.
        let mut i = inputs(&[h(1), h(1)]);
        i.panics[1].source = "ledger".into();
        let v = evaluate_cooldown(&i, NOW);
        assert_eq!(v.recent_panics_24h, 1);
        assert_eq!(v.kind, VerdictKind::Cooldown);
        // A report from far in the future is ignored with a warning.
        let mut i = inputs(&[]);
        i.panics.push(PanicEvent {
            time: NOW + Duration::days(30),
            signature: "x".into(),
            source: "future".into(),
        });
        let v = evaluate_cooldown(&i, NOW);
        assert_eq!(v.kind, VerdictKind::Proceed);
        assert_eq!(v.warnings.len(), 1);
    }

    #[test]
    fn verdict_with_reads_state_files_tolerantly() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join(".cache").join("metal-guard");
        let paths = GatePaths {
            sentinel: state.join("panic-sentinel.json"),
            ack: dir.path().join(".metal-guard-ack"),
            breaker: state.join("breaker.json"),
            ledger: state.join("panics.jsonl"),
        };
        let no_env = |_: &str| None;
        std::fs::create_dir_all(&state).unwrap();
        for bytes in [
            &b""[..],
            b"{\"cooldown_until\": [",
            b"\xff\xfe",
            b"{\"cooldown_until\": {}}",
        ] {
            std::fs::write(&paths.sentinel, bytes).unwrap();
            std::fs::write(&paths.breaker, bytes).unwrap();
            let v = verdict_with(&[], &paths, &no_env, NOW).unwrap();
            assert_eq!(v.kind, VerdictKind::Proceed, "{bytes:?}");
            assert!(v.warnings.len() >= 2, "{bytes:?}: {:?}", v.warnings);
        }
        std::fs::remove_file(&paths.sentinel).unwrap();
        std::fs::create_dir(&paths.sentinel).unwrap();
        let v = verdict_with(&[], &paths, &no_env, NOW).unwrap();
        assert_eq!(v.kind, VerdictKind::Proceed);
        assert!(v.warnings.iter().any(|w| w.contains("directory")));
        // A sentinel reached through a symlink still counts (its content is what matters).
        std::fs::remove_dir(&paths.sentinel).unwrap();
        let elsewhere = dir.path().join("elsewhere.json");
        sentinel::write_sentinel(&elsewhere, NOW + h(1), NOW, "linked").unwrap();
        std::os::unix::fs::symlink(&elsewhere, &paths.sentinel).unwrap();
        let v = verdict_with(&[], &paths, &no_env, NOW).unwrap();
        assert_eq!(v.kind, VerdictKind::Cooldown);
    }

    #[test]
    fn breaker_file_damage_never_blocks_and_a_trip_is_recorded_anyway() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        let paths = GatePaths {
            sentinel: state.join("panic-sentinel.json"),
            ack: dir.path().join(".metal-guard-ack"),
            breaker: state.join("breaker.json"),
            ledger: state.join("panics.jsonl"),
        };
        let no_env = |_: &str| None;
        // A directory in its place: a warning, no cooldown.
        std::fs::create_dir(&paths.breaker).unwrap();
        let v = verdict_with(&[], &paths, &no_env, NOW).unwrap();
        assert_eq!(v.kind, VerdictKind::Proceed);
        assert!(v.warnings.iter().any(|w| w.contains("directory")));
        // A symlink to a file elsewhere that is not breaker state: a warning.
        std::fs::remove_dir(&paths.breaker).unwrap();
        let elsewhere = dir.path().join("notes.txt");
        std::fs::write(&elsewhere, b"my notes").unwrap();
        std::os::unix::fs::symlink(&elsewhere, &paths.breaker).unwrap();
        let v = verdict_with(&[], &paths, &no_env, NOW).unwrap();
        assert_eq!(v.kind, VerdictKind::Proceed);
        assert!(!v.warnings.is_empty());
        // No permission (meaningful when not root): never a lockout.
        std::fs::remove_file(&paths.breaker).unwrap();
        std::fs::write(&paths.breaker, b"{}").unwrap();
        std::fs::set_permissions(&paths.breaker, std::fs::Permissions::from_mode(0o000)).unwrap();
        assert_eq!(
            verdict_with(&[], &paths, &no_env, NOW).unwrap().kind,
            VerdictKind::Proceed
        );
        std::fs::remove_file(&paths.breaker).unwrap();
        // Two panics in the ledger trip the breaker; a directory in the
        // file's place is left untouched (the trip still counts, a warning
        // says it could not be recorded).
        std::fs::create_dir(&paths.breaker).unwrap();
        let line = |ago: i64| {
            format!(
                "{{\"ts\": {}, \"signature\": \"pending_memory_set\"}}\n",
                (NOW - Duration::minutes(ago)).unix_timestamp()
            )
        };
        std::fs::write(&paths.ledger, line(30) + &line(10)).unwrap();
        let v = verdict_with(&[], &paths, &no_env, NOW).unwrap();
        assert!(v.breaker.tripped);
        assert_eq!(v.kind, VerdictKind::Lockout);
        assert!(paths.breaker.is_dir());
        assert!(
            v.warnings.iter().any(|w| w.contains("could not record")),
            "{:?}",
            v.warnings
        );
        std::fs::remove_dir(&paths.breaker).unwrap();
        let v = verdict_with(&[], &paths, &no_env, NOW).unwrap();
        assert!(v.breaker.tripped);
        let (file, w) = breaker::read_breaker(&paths.breaker);
        assert!(w.is_none(), "{w:?}");
        assert!(file.unwrap().cooldown_until.is_some());
        // The recorded trip holds after the ledger is gone; `breaker clear` ends it.
        std::fs::remove_file(&paths.ledger).unwrap();
        let later = NOW + Duration::minutes(20);
        let v = verdict_with(&[], &paths, &no_env, later).unwrap();
        assert!(v.breaker.tripped);
        assert_eq!(v.kind, VerdictKind::Cooldown);
        breaker::clear_breaker(&paths.breaker, &BreakerPolicy::default(), later).unwrap();
        assert_eq!(
            verdict_with(&[], &paths, &no_env, later).unwrap().kind,
            VerdictKind::Proceed
        );
    }

    #[test]
    fn a_missing_report_folder_is_a_warning_not_silence() {
        let dir = tempfile::tempdir().unwrap();
        let paths = GatePaths {
            sentinel: dir.path().join("s.json"),
            ack: dir.path().join("ack"),
            breaker: dir.path().join("b.json"),
            ledger: dir.path().join("l.jsonl"),
        };
        let typo = dir.path().join("Diagnostic-Reprots");
        let v = verdict_with(&[typo], &paths, &|_: &str| None, NOW).unwrap();
        assert_eq!(v.kind, VerdictKind::Proceed);
        assert!(
            v.warnings.iter().any(|w| w.contains("Diagnostic-Reprots")),
            "{:?}",
            v.warnings
        );
    }
}
