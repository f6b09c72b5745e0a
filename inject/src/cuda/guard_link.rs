//! The one place the CUDA hooks meet the guard. The hooks speak in
//! backend-neutral terms (an allocation of N bytes of some kind is asked
//! for, was made, was freed; GPU work was queued and completed; the process
//! is exiting) and this module hands them to the process's [`Guard`]
//! (`crate::guard`, policy from `metal_guard_core::engine`): the same allocation
//! ledger, size ceiling, cadence detector, breadcrumb sink and summary the
//! Metal hooks feed. What only CUDA has (pinned host memory, host functions,
//! graph launches, stream syncs, which lookup path activated the chain) is
//! counted here and written as one `CUDA_SUMMARY` line at exit.
//!
//! Hot path (`admit`, `allocated`, `freed`): atomics only, as in `Guard`.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use super::pointer_table::MemoryKind;
use crate::guard::{guard, AllocDecision};

/// How often the breadcrumb writer wakes when idle (closes load/unload
/// sections), as for Metal.
const WRITER_TICK: Duration = Duration::from_millis(100);

/// The verdict on one allocation request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Allow,
    /// Return the driver's own out-of-memory error instead of allocating.
    Refuse,
}

/// Which lookup first handed out a wrapper; one bit each.
#[derive(Clone, Copy, Debug)]
pub enum ChainPath {
    /// `dlsym(libcuda, "cuGetProcAddress_v2")` or `"cuGetProcAddress"`.
    DlsymGetter = 1,
    /// The getter the driver hands back for `"cuGetProcAddress"`.
    DriverGetter = 2,
    /// A driver memory or stream function looked up by `dlsym` directly.
    DlsymFunction = 4,
}

impl ChainPath {
    fn describe(self) -> &'static str {
        match self {
            ChainPath::DlsymGetter => "dlsym(cuGetProcAddress_v2) wrapped",
            ChainPath::DriverGetter => "the driver's own cuGetProcAddress wrapped",
            ChainPath::DlsymFunction => {
                "a driver memory/stream function looked up by dlsym wrapped"
            }
        }
    }
}

/// CUDA-only counters (the shared ones live in `Guard`).
struct CudaCounters {
    live_host: AtomicU64,
    host_allocations: AtomicU64,
    untracked_frees: AtomicU64,
    untracked_allocations: AtomicU64,
    /// 0: device memory not asked yet, 1: being asked, 2: settled.
    device_memory_state: AtomicU8,
    /// Bits of `ChainPath` already reported.
    paths_reported: AtomicU8,
}

static COUNTERS: CudaCounters = CudaCounters {
    live_host: AtomicU64::new(0),
    host_allocations: AtomicU64::new(0),
    untracked_frees: AtomicU64::new(0),
    untracked_allocations: AtomicU64::new(0),
    device_memory_state: AtomicU8::new(0),
    paths_reported: AtomicU8::new(0),
};

/// `METALGUARD_CUDA=off`: hand every driver function back unwrapped (the
/// guard itself, with `METALGUARD_DISABLED=1`, switches off every backend).
/// The switch is read once; whether the guard exists is asked each time, so
/// a lookup before the constructor ran does not switch the backend off.
pub fn enabled() -> bool {
    static SWITCHED_OFF: OnceLock<bool> = OnceLock::new();
    let off = *SWITCHED_OFF.get_or_init(|| {
        // The one flag rule, so `METALGUARD_CUDA=OFF` switches it off too.
        metal_guard_core::env_vars::is_switched_off(
            std::env::var("METALGUARD_CUDA").ok().as_deref(),
        )
    });
    !off && guard().is_some()
}

/// Whether the device's memory has not been settled yet (cheap check on the
/// allocation path before `claim_device_memory_query`).
#[inline]
pub fn device_memory_pending() -> bool {
    COUNTERS.device_memory_state.load(Ordering::Acquire) == 0
}

/// Whether this thread won the one query of the device's memory.
pub fn claim_device_memory_query() -> bool {
    COUNTERS
        .device_memory_state
        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok()
}

/// The device's total memory is known (`None`: could not be learnt, then
/// percentage limits mean no limit). It plays the part of Metal's
/// `recommendedMaxWorkingSetSize` for the ceiling.
pub fn device_memory_known(total: Option<u64>) {
    if let Some(g) = guard() {
        g.set_working_set(total.unwrap_or(0));
    }
    COUNTERS.device_memory_state.store(2, Ordering::Release);
}

/// Asked before every allocation: may `bytes` of `kind` be allocated?
/// `hook` names the driver function (breadcrumb `selector=`).
#[inline]
pub fn admit(kind: MemoryKind, bytes: u64, hook: &'static str) -> Admission {
    let Some(g) = guard() else {
        return Admission::Allow;
    };
    g.maybe_inject_fault(hook);
    if kind == MemoryKind::PinnedHost {
        return Admission::Allow;
    }
    match g.before_allocation(bytes, hook) {
        AllocDecision::Proceed => Admission::Allow,
        AllocDecision::Refuse => Admission::Refuse,
    }
}

/// An allocation of `bytes` of `kind` was made.
#[inline]
pub fn allocated(kind: MemoryKind, bytes: u64) {
    if kind == MemoryKind::PinnedHost {
        COUNTERS.host_allocations.fetch_add(1, Ordering::Relaxed);
        COUNTERS.live_host.fetch_add(bytes, Ordering::Relaxed);
    } else if let Some(g) = guard() {
        g.after_allocation(bytes);
    }
}

/// An allocation the address table could not hold (full within its probe
/// limit): left out of the ledger, counted here.
#[inline]
pub fn untracked_allocation() {
    COUNTERS
        .untracked_allocations
        .fetch_add(1, Ordering::Relaxed);
}

/// A tracked allocation was freed (`None`: the address was not tracked).
#[inline]
pub fn freed(freed: Option<(MemoryKind, u64)>) {
    match freed {
        Some((MemoryKind::PinnedHost, bytes)) => {
            COUNTERS.live_host.fetch_sub(bytes, Ordering::Relaxed);
        }
        Some((_, bytes)) => {
            if let Some(g) = guard() {
                g.on_buffer_freed(bytes);
            }
        }
        None => {
            COUNTERS.untracked_frees.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A completion signal (host function) was queued / has run: MLX's commit
/// and its completion, counted where the Metal hooks count theirs.
#[inline]
pub fn commit_queued() {
    if let Some(g) = guard() {
        g.count_commit();
    }
}

#[inline]
pub fn commit_completed() {
    if let Some(g) = guard() {
        g.count_completion();
    }
}

/// A wrapper was handed out through `path`. The first activation starts the
/// breadcrumb writer (as the first Metal device does); each path is
/// reported once.
pub fn chain_active(path: ChainPath) -> bool {
    let Some(g) = guard() else {
        return false;
    };
    let bit = path as u8;
    let before = COUNTERS.paths_reported.fetch_or(bit, Ordering::AcqRel);
    if before & bit != 0 {
        return false;
    }
    if before == 0 {
        crate::device_entry::quiet_panic_messages();
        let _ = g.sink().start_writer(WRITER_TICK, move || g.tick());
        for w in &g.config().warnings {
            eprintln!("metal-guard: {w}");
        }
    }
    g.sink().write_now(
        "GUARD_HOOKED",
        path.describe(),
        &[
            ("backend", "cuda".to_string()),
            ("mode", g.mode_name().to_string()),
            ("version", crate::VERSION.to_string()),
        ],
        false,
    );
    before == 0
}

/// Guard logic inside a hook panicked; the hook went on with the original
/// call.
pub fn hook_panicked(hook: &'static str) {
    if let Some(g) = guard() {
        g.on_hook_fault(hook);
    }
}

/// Something inside the library could not be done and the driver's own
/// function was used instead (fail-open), e.g. a second driver.
pub fn failed_open(what: &str) {
    if let Some(g) = guard() {
        g.sink()
            .write_now("GUARD_NOTE", what, &[("backend", "cuda".to_string())], true);
    }
}

/// CUDA-side counters for the exit summary.
pub struct CompletionCounts {
    pub graph_launches: u64,
    pub host_fns: u64,
    pub host_fns_untracked: u64,
    pub stream_syncs: u64,
}

/// The `CUDA_SUMMARY` line after the guard's summary: what only CUDA has,
/// and what the exit drain found (`drain`).
pub fn write_cuda_summary(
    g: &crate::guard::Guard,
    drain: &crate::exit_drain::DrainReport,
    c: CompletionCounts,
) {
    let pending = drain.in_flight_at_exit;
    let outcome = drain.outcome;
    g.sink().write_now(
        "CUDA_SUMMARY",
        "process exit",
        &[
            ("backend", "cuda".to_string()),
            ("graph_launches", c.graph_launches.to_string()),
            ("host_fns", c.host_fns.to_string()),
            ("host_fns_untracked", c.host_fns_untracked.to_string()),
            ("stream_syncs", c.stream_syncs.to_string()),
            ("in_flight_at_exit", pending.to_string()),
            ("drain", outcome.to_string()),
            (
                "host_allocations",
                COUNTERS
                    .host_allocations
                    .load(Ordering::Relaxed)
                    .to_string(),
            ),
            (
                "live_host_bytes",
                COUNTERS.live_host.load(Ordering::Relaxed).to_string(),
            ),
            (
                "untracked_frees",
                COUNTERS.untracked_frees.load(Ordering::Relaxed).to_string(),
            ),
            (
                "untracked_allocations",
                COUNTERS
                    .untracked_allocations
                    .load(Ordering::Relaxed)
                    .to_string(),
            ),
            (
                "untracked_allocations",
                COUNTERS
                    .untracked_allocations
                    .load(Ordering::Relaxed)
                    .to_string(),
            ),
        ],
        g.acts(),
    );
}
