//! The one place the CUDA hooks meet the guard's policy. The hooks speak in
//! backend-neutral terms (an allocation of N bytes of some kind is asked for,
//! was made, was freed; GPU work was submitted, completed; the process is
//! exiting); this module turns them into ledger updates, ceiling verdicts and
//! breadcrumbs. Nothing outside `cuda/` sees a CUDA type.
//!
//! Hot path: `admit`, `allocated` and `freed` use atomics only. Breadcrumbs
//! are written only on rare transitions (hooks installed, a refusal, the exit
//! drain and summary), synchronously and durably (append + fsync), from the
//! thread that hit the transition.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metal_guard::breadcrumbs::{breadcrumb_path, BreadcrumbLine, TAG_POST, TAG_PRE};

use super::pointer_table::MemoryKind;

const GIB: f64 = (1u64 << 30) as f64;
/// Default single-allocation ceiling as a share of the device's memory.
const DEFAULT_SINGLE_ALLOC_PCT: f64 = 90.0;
/// Default bound on the exit drain.
const DEFAULT_EXIT_DRAIN: Duration = Duration::from_secs(10);

/// What the guard does with what it sees (`METALGUARD_MODE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuardMode {
    /// Refuse, wait, drain (default).
    Defensive,
    /// Log what would have been done; change nothing.
    Observer,
}

/// The configuration the CUDA backend reads once, at load.
#[derive(Clone, Debug)]
pub struct CudaGuardConfig {
    pub mode: GuardMode,
    /// `METALGUARD_CUDA=off`: hand every driver function back unwrapped.
    pub enabled: bool,
    /// `METALGUARD_MAX_SINGLE_ALLOC_GB`: an absolute single-allocation ceiling.
    pub single_alloc_bytes: Option<u64>,
    /// `METALGUARD_MAX_SINGLE_ALLOC_PCT`: the ceiling as a share of the
    /// device's total memory (used when no absolute ceiling is set).
    pub single_alloc_pct: f64,
    /// `METALGUARD_EXIT_DRAIN_MS`: how long the exit path waits for GPU work
    /// in flight.
    pub exit_drain: Duration,
    /// `METALGUARD_FAULT_INJECT=cuda-hook-panic`: make the allocation hook's
    /// guard logic panic, to prove the hooks fail open (tests only).
    pub inject_hook_panic: bool,
}

impl CudaGuardConfig {
    /// Reads the environment through `get` (std::env::var in production).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> (CudaGuardConfig, Vec<String>) {
        let mut warnings = Vec::new();
        let mode = match get("METALGUARD_MODE").as_deref().map(str::trim) {
            None | Some("") | Some("defensive") => GuardMode::Defensive,
            Some("observer") => GuardMode::Observer,
            Some(other) => {
                warnings.push(format!(
                    "METALGUARD_MODE={other} is not defensive or observer; using defensive"
                ));
                GuardMode::Defensive
            }
        };
        let enabled = !matches!(
            get("METALGUARD_CUDA").as_deref().map(str::trim),
            Some("off") | Some("0") | Some("false")
        );
        let positive = |name: &str, warnings: &mut Vec<String>| -> Option<f64> {
            let raw = get(name)?;
            match raw.trim().parse::<f64>() {
                Ok(v) if v.is_finite() && v > 0.0 => Some(v),
                _ => {
                    warnings.push(format!(
                        "{name}={raw} is not a positive number; using the default"
                    ));
                    None
                }
            }
        };
        let single_alloc_bytes =
            positive("METALGUARD_MAX_SINGLE_ALLOC_GB", &mut warnings).map(|gb| (gb * GIB) as u64);
        let single_alloc_pct = positive("METALGUARD_MAX_SINGLE_ALLOC_PCT", &mut warnings)
            .map(|p| p.min(100.0))
            .unwrap_or(DEFAULT_SINGLE_ALLOC_PCT);
        let exit_drain = positive("METALGUARD_EXIT_DRAIN_MS", &mut warnings)
            .map(|ms| Duration::from_millis(ms as u64))
            .unwrap_or(DEFAULT_EXIT_DRAIN);
        let inject_hook_panic =
            get("METALGUARD_FAULT_INJECT").as_deref() == Some("cuda-hook-panic");
        (
            CudaGuardConfig {
                mode,
                enabled,
                single_alloc_bytes,
                single_alloc_pct,
                exit_drain,
                inject_hook_panic,
            },
            warnings,
        )
    }
}

static CONFIG: OnceLock<CudaGuardConfig> = OnceLock::new();

/// The configuration; read from the environment on first use.
pub fn config() -> &'static CudaGuardConfig {
    CONFIG.get_or_init(|| {
        let (config, warnings) = CudaGuardConfig::from_lookup(|k| std::env::var(k).ok());
        for w in warnings {
            breadcrumb("CUDA_CONFIG", &w, &[]);
            eprintln!("metal-guard: {w}");
        }
        config
    })
}

/// Live-memory ledger: atomics only.
struct Ledger {
    live_device: AtomicU64,
    live_host: AtomicU64,
    peak_device: AtomicU64,
    largest: AtomicU64,
    allocations: AtomicU64,
    frees: AtomicU64,
    untracked_frees: AtomicU64,
    refusals: AtomicU64,
    would_refuse: AtomicU64,
    /// Single-allocation ceiling in bytes; 0 = not known yet (no ceiling).
    ceiling: AtomicU64,
    /// Device memory in bytes; 0 = not known yet.
    device_total: AtomicU64,
    /// 0: device memory not asked yet, 1: being asked, 2: settled.
    device_total_state: AtomicU8,
    hook_panics: AtomicU64,
    hooks_reported: AtomicBool,
    exit_done: AtomicBool,
}

static LEDGER: Ledger = Ledger {
    live_device: AtomicU64::new(0),
    live_host: AtomicU64::new(0),
    peak_device: AtomicU64::new(0),
    largest: AtomicU64::new(0),
    allocations: AtomicU64::new(0),
    frees: AtomicU64::new(0),
    untracked_frees: AtomicU64::new(0),
    refusals: AtomicU64::new(0),
    would_refuse: AtomicU64::new(0),
    ceiling: AtomicU64::new(0),
    device_total: AtomicU64::new(0),
    device_total_state: AtomicU8::new(0),
    hook_panics: AtomicU64::new(0),
    hooks_reported: AtomicBool::new(false),
    exit_done: AtomicBool::new(false),
};

/// The verdict on one allocation request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Allow,
    /// Return the driver's own out-of-memory error instead of allocating.
    Refuse,
}

/// Whether the device's memory still has to be asked for (once per process,
/// by the first allocating thread that wins the claim).
pub fn claim_device_memory_query() -> bool {
    LEDGER
        .device_total_state
        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok()
}

/// The device's total memory is known (or could not be learnt: `None`); the
/// ceiling is set from it and the configuration.
pub fn device_memory_known(total: Option<u64>) {
    let c = config();
    let ceiling = match (c.single_alloc_bytes, total) {
        (Some(abs), _) => abs,
        (None, Some(t)) => (t as f64 * c.single_alloc_pct / 100.0) as u64,
        (None, None) => 0,
    };
    LEDGER
        .device_total
        .store(total.unwrap_or(0), Ordering::Relaxed);
    LEDGER.ceiling.store(ceiling, Ordering::Release);
    LEDGER.device_total_state.store(2, Ordering::Release);
    let mut fields = vec![(
        "ceiling_bytes".to_string(),
        if ceiling == 0 {
            "none".to_string()
        } else {
            ceiling.to_string()
        },
    )];
    if let Some(t) = total {
        fields.push(("device_bytes".into(), t.to_string()));
    }
    let source = if c.single_alloc_bytes.is_some() {
        "METALGUARD_MAX_SINGLE_ALLOC_GB".to_string()
    } else if total.is_some() {
        format!("{}% of device memory", c.single_alloc_pct)
    } else {
        "device memory unknown; no ceiling".to_string()
    };
    breadcrumb("CUDA_CEILING", &source, &fields);
}

/// Asked before every allocation: may `bytes` of `kind` be allocated?
/// Atomics only, except on a refusal (rare: breadcrumb + one stderr line).
pub fn admit(kind: MemoryKind, bytes: u64) -> Admission {
    let c = config();
    if c.inject_hook_panic {
        panic!("METALGUARD_FAULT_INJECT=cuda-hook-panic: injected fault in the allocation hook");
    }
    if kind == MemoryKind::PinnedHost {
        return Admission::Allow;
    }
    let ceiling = LEDGER.ceiling.load(Ordering::Acquire);
    if ceiling == 0 || bytes <= ceiling {
        return Admission::Allow;
    }
    let live = LEDGER.live_device.load(Ordering::Relaxed);
    let fields = [
        ("bytes", bytes.to_string()),
        ("ceiling_bytes", ceiling.to_string()),
        ("live_bytes", live.to_string()),
        ("kind", kind_name(kind).to_string()),
    ];
    match c.mode {
        GuardMode::Observer => {
            LEDGER.would_refuse.fetch_add(1, Ordering::Relaxed);
            breadcrumb_kv(
                "CUDA_WOULD_REFUSE",
                "observer mode: allocation above the ceiling let through",
                &fields,
            );
            Admission::Allow
        }
        GuardMode::Defensive => {
            LEDGER.refusals.fetch_add(1, Ordering::Relaxed);
            breadcrumb_kv(
                "CUDA_REFUSE",
                "allocation above the single-allocation ceiling refused with CUDA_ERROR_OUT_OF_MEMORY",
                &fields,
            );
            eprintln!(
                "metal-guard: refused a {:.2} GiB GPU allocation (ceiling {:.2} GiB); the caller gets \
                 out-of-memory. Raise it with METALGUARD_MAX_SINGLE_ALLOC_GB if this was intended.",
                bytes as f64 / GIB,
                ceiling as f64 / GIB
            );
            Admission::Refuse
        }
    }
}

/// An allocation of `bytes` of `kind` was made.
pub fn allocated(kind: MemoryKind, bytes: u64) {
    LEDGER.allocations.fetch_add(1, Ordering::Relaxed);
    LEDGER.largest.fetch_max(bytes, Ordering::Relaxed);
    if kind == MemoryKind::PinnedHost {
        LEDGER.live_host.fetch_add(bytes, Ordering::Relaxed);
    } else {
        let live = LEDGER.live_device.fetch_add(bytes, Ordering::Relaxed) + bytes;
        LEDGER.peak_device.fetch_max(live, Ordering::Relaxed);
    }
}

/// A tracked allocation was freed (`None`: the address was not tracked).
pub fn freed(freed: Option<(MemoryKind, u64)>) {
    LEDGER.frees.fetch_add(1, Ordering::Relaxed);
    match freed {
        Some((MemoryKind::PinnedHost, bytes)) => {
            LEDGER.live_host.fetch_sub(bytes, Ordering::Relaxed);
        }
        Some((_, bytes)) => {
            LEDGER.live_device.fetch_sub(bytes, Ordering::Relaxed);
        }
        None => {
            LEDGER.untracked_frees.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The driver-entry chain is in place (reported once per process).
pub fn hooks_installed(how: &str) {
    if !LEDGER.hooks_reported.swap(true, Ordering::AcqRel) {
        let mode = match config().mode {
            GuardMode::Defensive => "defensive",
            GuardMode::Observer => "observer",
        };
        breadcrumb_kv("CUDA_HOOKS", how, &[("mode", mode.to_string())]);
    }
}

/// Something inside the library went wrong and the original was used
/// instead (fail-open). Rare by construction.
pub fn failed_open(what: &str) {
    breadcrumb("CUDA_FAIL_OPEN", what, &[]);
}

/// Guard logic inside a hook panicked; the hook went on with the original
/// call. The first one is reported, the rest counted (see the summary).
pub fn hook_panicked(hook: &str) {
    if LEDGER.hook_panics.fetch_add(1, Ordering::Relaxed) == 0 {
        failed_open(&format!(
            "panic caught in the {hook} hook; the original driver call was made instead"
        ));
    }
}

/// Whether the device's memory has not been settled yet (cheap check on the
/// allocation path before `claim_device_memory_query`).
#[inline]
pub fn device_memory_pending() -> bool {
    LEDGER.device_total_state.load(Ordering::Acquire) == 0
}

/// Exit path: wait (bounded) until `in_flight()` is 0, with a PRE/POST pair
/// around the wait, then write the summary. Runs once.
pub fn exit_drain(in_flight: impl Fn() -> u64, extra: impl Fn() -> Vec<(&'static str, String)>) {
    if LEDGER.exit_done.swap(true, Ordering::AcqRel) {
        return;
    }
    let c = config();
    let pending = in_flight();
    let mut drain = String::from("none");
    if pending > 0 && c.mode == GuardMode::Defensive {
        breadcrumb_kv(
            TAG_PRE,
            "cuda exit drain: waiting for GPU work in flight",
            &[
                ("in_flight", pending.to_string()),
                ("timeout_ms", c.exit_drain.as_millis().to_string()),
            ],
        );
        let start = Instant::now();
        let mut left = pending;
        while left > 0 && start.elapsed() < c.exit_drain {
            std::thread::sleep(Duration::from_millis(1));
            left = in_flight();
        }
        let waited = start.elapsed().as_millis().to_string();
        let outcome = if left == 0 { "drained" } else { "timed out" };
        breadcrumb_kv(
            TAG_POST,
            &format!("cuda exit drain: {outcome}"),
            &[("left", left.to_string()), ("waited_ms", waited.clone())],
        );
        drain = format!("{outcome}_after_{waited}ms");
    }
    let l = &LEDGER;
    let mut fields = vec![
        (
            "allocations",
            l.allocations.load(Ordering::Relaxed).to_string(),
        ),
        ("frees", l.frees.load(Ordering::Relaxed).to_string()),
        (
            "untracked_frees",
            l.untracked_frees.load(Ordering::Relaxed).to_string(),
        ),
        (
            "live_device_bytes",
            l.live_device.load(Ordering::Relaxed).to_string(),
        ),
        (
            "live_host_bytes",
            l.live_host.load(Ordering::Relaxed).to_string(),
        ),
        (
            "peak_device_bytes",
            l.peak_device.load(Ordering::Relaxed).to_string(),
        ),
        (
            "largest_bytes",
            l.largest.load(Ordering::Relaxed).to_string(),
        ),
        ("refusals", l.refusals.load(Ordering::Relaxed).to_string()),
        (
            "would_refuse",
            l.would_refuse.load(Ordering::Relaxed).to_string(),
        ),
        (
            "hook_panics",
            l.hook_panics.load(Ordering::Relaxed).to_string(),
        ),
        ("in_flight_at_exit", pending.to_string()),
        ("drain", drain),
    ];
    fields.extend(extra());
    breadcrumb_kv("CUDA_SUMMARY", "process exit", &fields);
}

fn kind_name(kind: MemoryKind) -> &'static str {
    match kind {
        MemoryKind::Device => "device",
        MemoryKind::Managed => "managed",
        MemoryKind::PinnedHost => "pinned_host",
    }
}

fn breadcrumb_kv(tag: &str, payload: &str, fields: &[(&str, String)]) {
    let owned: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    breadcrumb(tag, payload, &owned);
}

/// Appends one line and fsyncs it. Errors are swallowed: a full disk or an
/// unwritable log never reaches the GPU path.
fn breadcrumb(tag: &str, payload: &str, fields: &[(String, String)]) {
    let mut all = vec![
        ("pid".to_string(), std::process::id().to_string()),
        ("backend".to_string(), "cuda".to_string()),
    ];
    all.extend_from_slice(fields);
    let line = BreadcrumbLine {
        time: time::OffsetDateTime::now_utc(),
        tag: tag.to_string(),
        payload: payload.to_string(),
        fields: all,
    };
    let path = breadcrumb_path();
    if let Some(dir) = path.parent() {
        let _ = metal_guard::state::atomic_file::ensure_private_dir(dir);
    }
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(&path) {
        let mut text = line.format();
        text.push('\n');
        if f.write_all(text.as_bytes()).is_ok() {
            let _ = f.sync_data();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> (CudaGuardConfig, Vec<String>) {
        CudaGuardConfig::from_lookup(|k| {
            pairs
                .iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn defaults() {
        let (c, w) = cfg(&[]);
        assert!(w.is_empty());
        assert_eq!(c.mode, GuardMode::Defensive);
        assert!(c.enabled);
        assert_eq!(c.single_alloc_bytes, None);
        assert_eq!(c.single_alloc_pct, DEFAULT_SINGLE_ALLOC_PCT);
        assert_eq!(c.exit_drain, DEFAULT_EXIT_DRAIN);
        assert!(!c.inject_hook_panic);
    }

    #[test]
    fn explicit_values() {
        let (c, w) = cfg(&[
            ("METALGUARD_MODE", "observer"),
            ("METALGUARD_CUDA", "off"),
            ("METALGUARD_MAX_SINGLE_ALLOC_GB", "1.5"),
            ("METALGUARD_MAX_SINGLE_ALLOC_PCT", "250"),
            ("METALGUARD_EXIT_DRAIN_MS", "300"),
        ]);
        assert!(w.is_empty());
        assert_eq!(c.mode, GuardMode::Observer);
        assert!(!c.enabled);
        assert_eq!(c.single_alloc_bytes, Some(3 << 29));
        assert_eq!(c.single_alloc_pct, 100.0);
        assert_eq!(c.exit_drain, Duration::from_millis(300));
    }

    #[test]
    fn garbage_warns_and_falls_back() {
        let (c, w) = cfg(&[
            ("METALGUARD_MODE", "paranoid"),
            ("METALGUARD_MAX_SINGLE_ALLOC_GB", "-3"),
            ("METALGUARD_EXIT_DRAIN_MS", "soon"),
        ]);
        assert_eq!(w.len(), 3, "{w:?}");
        assert_eq!(c.mode, GuardMode::Defensive);
        assert_eq!(c.single_alloc_bytes, None);
        assert_eq!(c.exit_drain, DEFAULT_EXIT_DRAIN);
    }
}
