//! `GuardConfig`: every setting of the injected guard, read from the
//! environment once at load. A malformed value never stops the host: it is
//! replaced by its default and reported in `warnings` (the interposer prints
//! them to stderr and the breadcrumb log).

use super::ceiling::{LimitSpec, DEFAULT_BUDGET_PCT, DEFAULT_SINGLE_PCT};
use super::NS_PER_SEC;
use crate::cadence::burst::BurstShape;
use crate::cadence::rule::{CadenceMode, CadencePolicy};
use crate::warnings::Warnings;
use std::path::PathBuf;
use std::time::Duration;

/// `METALGUARD_MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Act: refuse, retain, defer, stall, exit on cooldown (default).
    Defensive,
    /// Log what would have been done and change nothing.
    Observer,
}

/// `METALGUARD_RESIDENCY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResidencyPolicy {
    /// Defer `removeAllocation:` (and its set `commit`) until every command
    /// buffer committed before it has completed (default).
    Defer,
    /// Pass residency calls through unchanged.
    Keep,
    /// `addAllocation:`/`removeAllocation:` become no-ops: nothing is wired,
    /// the configuration that ran clean 10 of 10 times in mlx#3186.
    Off,
}

/// Fault injection for tests (`METALGUARD_TEST_FAULT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestFault {
    /// Every hook panics inside the library before deciding anything.
    HookPanic,
}

/// Everything the guard reads from the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardConfig {
    /// `METALGUARD_DISABLED=1`: the library loads and does nothing else.
    pub disabled: bool,
    pub mode: Mode,
    /// `METALGUARD_CEILING=off` turns the size ceiling off.
    pub ceiling_enabled: bool,
    pub max_single_alloc: LimitSpec,
    pub max_live: LimitSpec,
    /// Lever (a): `METALGUARD_RETAIN_REFERENCES=off` keeps unretained command buffers.
    pub retain_references: bool,
    /// Levers (b) and (d).
    pub residency: ResidencyPolicy,
    /// Extra wait after the last completion before a deferred removal runs,
    /// for completion bookkeeping that arrives late.
    pub residency_grace: Duration,
    /// How long removals may wait for a moment with nothing in flight before
    /// the reaper stops new commits to make one (continuous GPU work).
    pub residency_max_defer: Duration,
    /// Lever (c): bounded wait for in-flight work at exit; `None` = off.
    pub exit_drain: Option<Duration>,
    /// Lever (e): `METALGUARD_GATE=off` skips the cooldown check at first device.
    pub gate_enabled: bool,
    pub cadence: CadencePolicy,
    /// What makes a load or an unload.
    pub burst: BurstShape,
    /// A burst of frees is an unload (not a cache trim) when it gives back at
    /// least this fraction of what was live before it.
    pub unload_min_fraction: f64,
    /// `METALGUARD_MODEL_ID`: names this process's model in `cadence.json`.
    /// Unset: same-model checks stay inside this process.
    pub model_id: Option<String>,
    pub breadcrumb_path: PathBuf,
    /// The log is rotated to `<path>.1` when it would grow past this.
    pub breadcrumb_max_bytes: u64,
    /// `METALGUARD_HANDSHAKE_PATH`: the constructor writes pid + version there.
    pub handshake_path: Option<PathBuf>,
    pub test_fault: Option<TestFault>,
    /// One line per ignored or malformed variable.
    pub warnings: Warnings,
}

/// Defaults, named so docs and tests agree.
pub mod defaults {
    pub use crate::cadence::rule::{
        DEFAULT_AFTER_UNLOAD_INTERVAL_S as AFTER_UNLOAD_INTERVAL_S,
        DEFAULT_MAX_STALL_S as MAX_STALL_S, DEFAULT_SAME_MODEL_INTERVAL_S as SAME_MODEL_INTERVAL_S,
    };
    pub const BURST_MIN_MB: f64 = 16.0;
    pub const BURST_N: u64 = 4;
    pub const BURST_WINDOW_MS: f64 = 5000.0;
    pub const BURST_QUIET_MS: f64 = 2000.0;
    pub const UNLOAD_MIN_PCT: f64 = 50.0;
    pub const RESIDENCY_GRACE_MS: f64 = 50.0;
    pub const RESIDENCY_MAX_DEFER_MS: f64 = 500.0;
    pub const EXIT_DRAIN_S: f64 = 10.0;
    pub const BREADCRUMB_MAX_KB: f64 = 4096.0;
}

struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    warnings: Warnings,
}

impl Reader<'_> {
    fn raw(&self, key: &str) -> Option<String> {
        (self.lookup)(key)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn choice<T: Copy>(&mut self, key: &str, default: T, options: &[(&str, T)]) -> T {
        let Some(v) = self.raw(key) else {
            return default;
        };
        let lower = v.to_ascii_lowercase();
        if let Some((_, t)) = options.iter().find(|(name, _)| *name == lower) {
            return *t;
        }
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        self.warnings.push(format!(
            "{key}={v} is not one of {}; using the default",
            names.join("|")
        ));
        default
    }

    /// A switch, by the one flag rule (`crate::env_vars::parse_switch`).
    fn switch(&mut self, key: &str, default: bool) -> bool {
        let Some(v) = self.raw(key) else {
            return default;
        };
        crate::env_vars::parse_switch(&v).unwrap_or_else(|| {
            self.warnings.push(format!(
                "{key}={v} is not one of on|1|true|yes|off|0|false|no; using the default"
            ));
            default
        })
    }

    fn number(&mut self, key: &str) -> Option<f64> {
        let v = self.raw(key)?;
        match v.parse::<f64>() {
            Ok(n) if n.is_finite() && n >= 0.0 => Some(n),
            _ => {
                self.warnings.push(format!(
                    "{key}={v} is not a non-negative number; using the default"
                ));
                None
            }
        }
    }

    fn number_or(&mut self, key: &str, default: f64) -> f64 {
        self.number(key).unwrap_or(default)
    }
}

impl Reader<'_> {
    /// `METALGUARD_CADENCE*` and `METALGUARD_CROSS_MODEL_INTERVAL`.
    fn cadence_policy(&mut self) -> CadencePolicy {
        let mode = self.choice(
            "METALGUARD_CADENCE",
            CadenceMode::Wait,
            &[
                ("off", CadenceMode::Off),
                ("warn", CadenceMode::Warn),
                ("wait", CadenceMode::Wait),
            ],
        );
        let same_model = self.number_or(
            "METALGUARD_CADENCE_INTERVAL_S",
            defaults::SAME_MODEL_INTERVAL_S,
        );
        // The Python tool's cross-model interval: loads of different models
        // (in `cadence.json`) and, unless set on its own, the interval after
        // an unload in the guard's process. Unset or 0: not spaced.
        let cross_model = self.number("METALGUARD_CROSS_MODEL_INTERVAL");
        let after_unload = self
            .number("METALGUARD_CADENCE_UNLOAD_INTERVAL_S")
            .or(cross_model)
            .unwrap_or(defaults::AFTER_UNLOAD_INTERVAL_S);
        let max_stall = self.number_or("METALGUARD_CADENCE_MAX_STALL_S", defaults::MAX_STALL_S);
        CadencePolicy {
            mode,
            same_model_interval_ns: secs_ns(same_model),
            after_unload_interval_ns: secs_ns(after_unload),
            cross_model_interval_ns: cross_model.filter(|s| *s > 0.0).map(secs_ns),
            max_stall_ns: secs_ns(max_stall),
        }
    }
}

impl CadencePolicy {
    /// The cadence settings alone (for `metal-guard cadence`), with one
    /// warning per malformed variable, read exactly as the guard reads them.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> (CadencePolicy, Warnings) {
        let mut r = Reader {
            lookup,
            warnings: Warnings::new(),
        };
        let policy = r.cadence_policy();
        (policy, r.warnings)
    }
}

fn secs_ns(s: f64) -> u64 {
    (s * NS_PER_SEC as f64) as u64
}

impl GuardConfig {
    /// Reads the process environment.
    pub fn from_env() -> Self {
        Self::from_lookup(&|k| std::env::var(k).ok())
    }

    /// Reads settings through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Self {
        let mut r = Reader {
            lookup,
            warnings: Warnings::new(),
        };
        let disabled = r.switch("METALGUARD_DISABLED", false);
        let mode = r.choice(
            "METALGUARD_MODE",
            Mode::Defensive,
            &[("defensive", Mode::Defensive), ("observer", Mode::Observer)],
        );
        let ceiling_enabled = r.switch("METALGUARD_CEILING", true);
        let max_single_alloc = match (
            r.number("METALGUARD_MAX_SINGLE_ALLOC_GB"),
            r.number("METALGUARD_MAX_SINGLE_ALLOC_PCT"),
        ) {
            (Some(gb), _) => LimitSpec::gigabytes(gb),
            (None, Some(pct)) => LimitSpec::PercentOfWorkingSet(pct),
            (None, None) => LimitSpec::PercentOfWorkingSet(DEFAULT_SINGLE_PCT),
        };
        let max_live = match (
            r.number("METALGUARD_MAX_LIVE_GB"),
            r.number("METALGUARD_MAX_LIVE_PCT"),
        ) {
            (Some(gb), _) => LimitSpec::gigabytes(gb),
            (None, Some(pct)) => LimitSpec::PercentOfWorkingSet(pct),
            (None, None) => LimitSpec::PercentOfWorkingSet(DEFAULT_BUDGET_PCT),
        };
        let retain_references = r.switch("METALGUARD_RETAIN_REFERENCES", true);
        let residency = r.choice(
            "METALGUARD_RESIDENCY",
            ResidencyPolicy::Defer,
            &[
                ("defer", ResidencyPolicy::Defer),
                ("keep", ResidencyPolicy::Keep),
                ("off", ResidencyPolicy::Off),
            ],
        );
        let residency_grace = Duration::from_secs_f64(
            r.number_or(
                "METALGUARD_RESIDENCY_GRACE_MS",
                defaults::RESIDENCY_GRACE_MS,
            ) / 1000.0,
        );
        let residency_max_defer = Duration::from_secs_f64(
            r.number_or(
                "METALGUARD_RESIDENCY_MAX_DEFER_MS",
                defaults::RESIDENCY_MAX_DEFER_MS,
            ) / 1000.0,
        );
        let drain_s = r.number_or("METALGUARD_EXIT_DRAIN_S", defaults::EXIT_DRAIN_S);
        let exit_drain = (drain_s > 0.0).then(|| Duration::from_secs_f64(drain_s));
        let gate_enabled = r.switch("METALGUARD_GATE", true);
        let cadence = r.cadence_policy();
        let burst_n = r.number_or("METALGUARD_BURST_N", defaults::BURST_N as f64) as u64;
        let burst = BurstShape {
            min_bytes: (r.number_or("METALGUARD_BURST_MIN_MB", defaults::BURST_MIN_MB)
                * 1024.0
                * 1024.0) as u64,
            count: burst_n.max(1),
            window_ns: secs_ns(
                r.number_or("METALGUARD_BURST_WINDOW_MS", defaults::BURST_WINDOW_MS) / 1000.0,
            ),
            quiet_ns: secs_ns(
                r.number_or("METALGUARD_BURST_QUIET_MS", defaults::BURST_QUIET_MS) / 1000.0,
            ),
        };
        let unload_min_fraction =
            (r.number_or("METALGUARD_UNLOAD_MIN_PCT", defaults::UNLOAD_MIN_PCT) / 100.0).min(1.0);
        let model_id = r.raw("METALGUARD_MODEL_ID");
        let breadcrumb_path = crate::breadcrumbs::breadcrumb_path();
        let breadcrumb_max_bytes = (r
            .number_or("METALGUARD_BREADCRUMB_MAX_KB", defaults::BREADCRUMB_MAX_KB)
            * 1024.0) as u64;
        let handshake_path = r.raw("METALGUARD_HANDSHAKE_PATH").map(PathBuf::from);
        let test_fault = match r.raw("METALGUARD_TEST_FAULT") {
            None => None,
            Some(v) if v == "hook_panic" => Some(TestFault::HookPanic),
            Some(v) => {
                r.warnings.push(format!(
                    "METALGUARD_TEST_FAULT={v} is not a known fault (hook_panic); ignored"
                ));
                None
            }
        };
        GuardConfig {
            disabled,
            mode,
            ceiling_enabled,
            max_single_alloc,
            max_live,
            retain_references,
            residency,
            residency_grace,
            residency_max_defer,
            exit_drain,
            gate_enabled,
            cadence,
            burst,
            unload_min_fraction,
            model_id,
            breadcrumb_path,
            breadcrumb_max_bytes,
            handshake_path,
            test_fault,
            warnings: r.warnings,
        }
    }

    /// Whether the guard changes behaviour (defensive) or only reports (observer).
    pub fn acts(&self) -> bool {
        self.mode == Mode::Defensive
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> GuardConfig {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        GuardConfig::from_lookup(&move |k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_defensive_with_every_lever_on() {
        let c = cfg(&[]);
        assert!(!c.disabled);
        assert_eq!(c.mode, Mode::Defensive);
        assert!(c.acts());
        assert!(c.ceiling_enabled && c.retain_references && c.gate_enabled);
        assert_eq!(c.residency, ResidencyPolicy::Defer);
        assert_eq!(c.exit_drain, Some(Duration::from_secs(10)));
        assert_eq!(c.cadence.mode, CadenceMode::Wait);
        assert_eq!(c.cadence.same_model_interval_ns, 180 * NS_PER_SEC);
        assert_eq!(
            c.max_single_alloc,
            LimitSpec::PercentOfWorkingSet(DEFAULT_SINGLE_PCT)
        );
        assert!(c.warnings.is_empty());
        assert_eq!(c.test_fault, None);
        assert_eq!(c.unload_min_fraction, 0.5);
    }

    #[test]
    fn each_lever_has_its_off_switch() {
        let c = cfg(&[
            ("METALGUARD_MODE", "Observer"),
            ("METALGUARD_CEILING", "off"),
            ("METALGUARD_RETAIN_REFERENCES", "0"),
            ("METALGUARD_RESIDENCY", "off"),
            ("METALGUARD_EXIT_DRAIN_S", "0"),
            ("METALGUARD_GATE", "off"),
            ("METALGUARD_CADENCE", "warn"),
        ]);
        assert_eq!(c.mode, Mode::Observer);
        assert!(!c.ceiling_enabled && !c.retain_references && !c.gate_enabled);
        assert_eq!(c.residency, ResidencyPolicy::Off);
        assert_eq!(c.exit_drain, None);
        assert_eq!(c.cadence.mode, CadenceMode::Warn);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn limits_prefer_bytes_over_percent() {
        let c = cfg(&[
            ("METALGUARD_MAX_SINGLE_ALLOC_GB", "2"),
            ("METALGUARD_MAX_SINGLE_ALLOC_PCT", "10"),
            ("METALGUARD_MAX_LIVE_PCT", "80"),
        ]);
        assert_eq!(c.max_single_alloc, LimitSpec::Bytes(2 << 30));
        assert_eq!(c.max_live, LimitSpec::PercentOfWorkingSet(80.0));
    }

    #[test]
    fn garbage_falls_back_with_one_warning_each() {
        let c = cfg(&[
            ("METALGUARD_MODE", "paranoid"),
            ("METALGUARD_EXIT_DRAIN_S", "-3"),
            ("METALGUARD_MAX_SINGLE_ALLOC_GB", "lots"),
            ("METALGUARD_TEST_FAULT", "explode"),
        ]);
        assert_eq!(c.mode, Mode::Defensive);
        assert_eq!(c.exit_drain, Some(Duration::from_secs(10)));
        assert_eq!(
            c.max_single_alloc,
            LimitSpec::PercentOfWorkingSet(DEFAULT_SINGLE_PCT)
        );
        assert_eq!(c.warnings.len(), 4, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("METALGUARD_MODE=paranoid"));
    }

    #[test]
    fn cadence_intervals_and_compat_cross_model() {
        let c = cfg(&[
            ("METALGUARD_CADENCE_INTERVAL_S", "0.5"),
            ("METALGUARD_CROSS_MODEL_INTERVAL", "2"),
            ("METALGUARD_BURST_N", "0"),
            ("METALGUARD_TEST_FAULT", "hook_panic"),
        ]);
        assert_eq!(c.cadence.same_model_interval_ns, NS_PER_SEC / 2);
        assert_eq!(c.cadence.after_unload_interval_ns, 2 * NS_PER_SEC);
        assert_eq!(c.cadence.cross_model_interval_ns, Some(2 * NS_PER_SEC));
        assert_eq!(c.burst.count, 1);
        assert_eq!(c.test_fault, Some(TestFault::HookPanic));
    }
}
