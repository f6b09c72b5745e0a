//! The status snapshot: everything a person or a dashboard needs in one
//! versioned JSON document. `metal-guard status` prints it; `status-write`
//! keeps `~/.cache/metal-guard/status.json` current. Its verdict is the one
//! verdict (`gates::cooldown::current_verdict`), so status and panic-gate
//! can never disagree.

use crate::gates::cooldown::{self, CooldownVerdict};
use crate::gates::mlx_lock::{self, LockPaths, LockStatus};
use crate::hardware::{self, HardwareInfo};
use crate::orphans::{self, Orphan};
use crate::registry::{self, installed::InstalledPackages, AdvisoryReport};
use crate::shell_guard::{self, GuardPaths, GuardStatus};
use crate::warnings::Warnings;
use serde::Serialize;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

/// Version of the snapshot layout (the Python tool wrote "1.0"; ours has
/// different sections, so it starts at "2.0").
pub const SCHEMA_VERSION: &str = "2.0";

/// The snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct StatusSnapshot {
    pub schema_version: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    pub captured_at: OffsetDateTime,
    pub version: &'static str,
    /// `METALGUARD_MODE`, as an object like the Python tool's.
    pub mode: ModeInfo,
    /// 0 proceed, 2 blocked, 3 the gate failed: what `panic-gate` would exit with.
    pub exit_code: u8,
    pub ok: bool,
    pub verdict: Option<CooldownVerdict>,
    pub gate_error: Option<String>,
    pub lock: LockStatus,
    pub shell_guard: GuardStatus,
    pub hardware: HardwareInfo,
    pub installed: InstalledPackages,
    pub advisories: Vec<AdvisoryReport>,
    pub breadcrumbs: BreadcrumbTail,
    pub orphans: Vec<Orphan>,
    pub warnings: Warnings,
    // The keys dashboards read from the Python tool's documents (its
    // `status.json` and its `status --json`), filled from the same facts.
    /// The verdict in the Python tool's keys.
    pub panic_cooldown: Option<PanicCooldown>,
    /// IOGPU panics of the last 72 h, oldest first.
    pub recent_panics: Vec<crate::gates::panic_sources::PanicEvent>,
    pub panics_window_hours: u32,
    pub panics_count: usize,
    pub panics: Vec<crate::gates::panic_sources::PanicEvent>,
    /// `ok`, `cooldown`, `lockout` or `gate_failed`.
    pub health: &'static str,
    /// The holder record, if any.
    pub mlx_lock: Option<mlx_lock::HolderRecord>,
    /// MLX memory: only a process that runs MLX knows it.
    pub memory: Unavailable,
    /// The Python tool's KV-cache monitor (an in-process thread of its API).
    pub kv_monitor: KvMonitor,
    #[serde(serialize_with = "crate::paths::lossy::path")]
    pub breadcrumb_path: PathBuf,
    pub breadcrumb_tail: Vec<String>,
    pub breadcrumb: BreadcrumbSection,
}

/// `METALGUARD_MODE` described, with the Python tool's keys of both its
/// documents (`current` in `status.json`, `mode` in `status --json`).
#[derive(Debug, Clone, Serialize)]
pub struct ModeInfo {
    pub current: &'static str,
    pub mode: &'static str,
    pub description: &'static str,
    pub env_var: String,
    /// What `METALGUARD_MODE` asked for, when set.
    pub requested: Option<String>,
    /// Why the request was not honoured, if it was not.
    pub downgrade_reason: Option<String>,
}

impl ModeInfo {
    /// The mode from `METALGUARD_MODE` (an unknown value: a warning and `defensive`).
    pub fn from_env(warnings: &mut Warnings) -> ModeInfo {
        let requested = std::env::var("METALGUARD_MODE")
            .ok()
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty());
        let current: &'static str = if mode(warnings) == "observer" {
            "observer"
        } else {
            "defensive"
        };
        let downgrade_reason = requested
            .as_deref()
            .filter(|r| !r.eq_ignore_ascii_case(current))
            .map(|r| format!("{r:?} is neither defensive nor observer"));
        ModeInfo {
            current,
            mode: current,
            description: match current {
                "observer" => "Watches only: logs what it would have done and changes nothing.",
                _ => "Acts: refuses oversized allocations, keeps buffers alive until the GPU is done, defers residency teardown, spaces model loads and stops at the cooldown gate.",
            },
            env_var: match &requested {
                Some(r) => format!("METALGUARD_MODE={r}"),
                None => "METALGUARD_MODE=<unset> (default: defensive)".to_string(),
            },
            requested,
            downgrade_reason,
        }
    }
}

/// The verdict in the Python tool's `panic_cooldown` keys.
#[derive(Debug, Clone, Serialize)]
pub struct PanicCooldown {
    pub exit_code: u8,
    pub reason: String,
    pub recent_panics_24h: usize,
    pub recent_panics_72h: usize,
    #[serde(with = "time::serde::rfc3339::option")]
    pub cooldown_until: Option<OffsetDateTime>,
}

/// A section only an MLX process can fill.
#[derive(Debug, Clone, Serialize)]
pub struct Unavailable {
    pub available: bool,
    pub reason: &'static str,
}

/// The Python tool's KV monitor, which lives inside an app's process.
#[derive(Debug, Clone, Serialize)]
pub struct KvMonitor {
    pub running: bool,
    pub active_requests: Vec<String>,
}

/// The breadcrumb tail in the Python tool's `status --json` form.
#[derive(Debug, Clone, Serialize)]
pub struct BreadcrumbSection {
    #[serde(serialize_with = "crate::paths::lossy::option")]
    pub path: Option<PathBuf>,
    pub lines: Vec<String>,
}

/// The end of the breadcrumb log.
#[derive(Debug, Clone, Serialize)]
pub struct BreadcrumbTail {
    #[serde(serialize_with = "crate::paths::lossy::path")]
    pub path: PathBuf,
    pub last: Vec<String>,
}

/// `METALGUARD_MODE`: `observer` or `defensive` (the default; anything else
/// is a warning and the default).
pub fn mode(warnings: &mut Warnings) -> String {
    match std::env::var("METALGUARD_MODE")
        .ok()
        .as_deref()
        .map(str::trim)
    {
        None | Some("") => "defensive".into(),
        Some(m) if m.eq_ignore_ascii_case("defensive") => "defensive".into(),
        Some(m) if m.eq_ignore_ascii_case("observer") => "observer".into(),
        Some(m) => {
            warnings.push(format!(
                "metal-guard: warning: METALGUARD_MODE={m:?} is neither defensive nor observer; using defensive"
            ));
            "defensive".into()
        }
    }
}

/// The last `n` lines of the breadcrumb log.
pub fn breadcrumb_tail(path: &Path, n: usize, warnings: &mut Warnings) -> Vec<String> {
    match orphans::read_tail_text(path, 256 * 1024) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            lines[lines.len().saturating_sub(n)..]
                .iter()
                .map(|s| s.to_string())
                .collect()
        }
        Err(e) => {
            warnings.push(format!(
                "metal-guard: warning: cannot read the breadcrumb log {} ({e})",
                path.display()
            ));
            Vec::new()
        }
    }
}

/// The orphan threshold: `METALGUARD_SUBPROC_ORPHAN_THRESHOLD_SEC`, else 90 s.
pub fn orphan_threshold(warnings: &mut Warnings) -> f64 {
    crate::env_vars::positive_seconds(
        &crate::env_vars::process_env,
        "METALGUARD_SUBPROC_ORPHAN_THRESHOLD_SEC",
        orphans::DEFAULT_THRESHOLD_SEC,
        warnings,
    )
}

/// Takes the snapshot now.
pub fn capture(report_dirs: &[PathBuf], breadcrumb_lines: usize) -> StatusSnapshot {
    let mut warnings = Warnings::new();
    let mode = ModeInfo::from_env(&mut warnings);
    let (verdict, gate_error, exit_code) = match cooldown::current_verdict(report_dirs) {
        Ok(v) => {
            warnings.extend(v.warnings.iter().cloned());
            let code = v.exit_code;
            (Some(v), None, code)
        }
        Err(e) => (None, Some(e.to_string()), cooldown::EXIT_GATE_FAILED),
    };
    let lock = mlx_lock::lock_status(&LockPaths::from_env());
    warnings.extend(lock.warnings.iter().cloned());
    let installed = registry::installed::installed_packages(None, &registry::WATCHED_PACKAGES);
    let advisories = registry::check_advisories(&registry::registry(), &installed.versions);
    let bc_path = crate::breadcrumbs::breadcrumb_path();
    let last = breadcrumb_tail(&bc_path, breadcrumb_lines, &mut warnings);
    let threshold = orphan_threshold(&mut warnings);
    let now = OffsetDateTime::now_utc();
    let orphans = match orphans::read_log(&bc_path) {
        Ok(lines) => orphans::find_orphans(&lines, time::Duration::seconds_f64(threshold), now),
        Err(_) => Vec::new(),
    };
    let recent = verdict.as_ref().map(|v| {
        let mut p = v.panics.clone();
        p.reverse();
        p
    });
    let recent = recent.unwrap_or_default();
    let health = match (&verdict, exit_code) {
        (None, _) => "gate_failed",
        (Some(_), 0) => "ok",
        (Some(v), _) => match v.kind {
            cooldown::VerdictKind::Lockout => "lockout",
            _ => "cooldown",
        },
    };
    let bc_exists = bc_path.is_file();
    StatusSnapshot {
        panic_cooldown: verdict.as_ref().map(|v| PanicCooldown {
            exit_code: v.exit_code,
            reason: v.reason.clone(),
            recent_panics_24h: v.recent_panics_24h,
            recent_panics_72h: v.recent_panics_72h,
            cooldown_until: v.cooldown_until,
        }),
        panics_window_hours: 72,
        panics_count: recent.len(),
        panics: recent.clone(),
        recent_panics: recent,
        health,
        mlx_lock: lock.record.clone().filter(|_| lock.held),
        memory: Unavailable {
            available: false,
            reason: "the CLI runs outside any MLX process; a guarded process reports its own in its breadcrumbs (GUARD_SUMMARY)",
        },
        kv_monitor: KvMonitor {
            running: false,
            active_requests: Vec::new(),
        },
        breadcrumb_path: bc_path.clone(),
        breadcrumb_tail: last.clone(),
        breadcrumb: BreadcrumbSection {
            path: bc_exists.then(|| bc_path.clone()),
            lines: last.clone(),
        },
        schema_version: SCHEMA_VERSION,
        captured_at: now,
        version: env!("CARGO_PKG_VERSION"),
        mode,
        exit_code,
        ok: exit_code == cooldown::EXIT_PROCEED,
        verdict,
        gate_error,
        lock,
        shell_guard: shell_guard::status(&GuardPaths::from_env()),
        hardware: hardware::detect(),
        installed,
        advisories,
        breadcrumbs: BreadcrumbTail {
            path: bc_path,
            last,
        },
        orphans,
        warnings,
    }
}

/// `~/.cache/metal-guard/status.json`.
pub fn status_path() -> PathBuf {
    crate::paths::state_dir().join("status.json")
}

/// Writes the snapshot atomically.
pub fn write_snapshot(path: &Path, snap: &StatusSnapshot) -> std::io::Result<Option<String>> {
    let mut bytes = serde_json::to_vec_pretty(snap).expect("the snapshot serializes");
    bytes.push(b'\n');
    crate::state::write_state::write_state(path, &bytes)
}
