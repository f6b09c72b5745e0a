//! `Guard`: the process-wide state the hooks consult. Policy comes from
//! `metal_guard_core::engine`; this type wires it to the clock, the breadcrumb
//! sink, the command-buffer bookkeeping and the reaper.

use crate::breadcrumb_sink::{BreadcrumbSink, Event};
use crate::command_buffer_table::CommandBufferTable;
use crate::cross_process_cadence;
use crate::depth;
use crate::reaper::{Reaper, Removal, RemovalContext};
use metal_guard_core::cadence::burst::{is_unload, BurstDetector};
use metal_guard_core::cadence::rule::{decide, CadenceAction, CadenceMode, LoadHistory};
use metal_guard_core::engine::ceiling::{CeilingVerdict, SizeCeiling};
use metal_guard_core::engine::commit_gate::{CommitGate, CommitPass};
use metal_guard_core::engine::config::{GuardConfig, Mode, TestFault};
use metal_guard_core::engine::ledger::AllocationLedger;
use metal_guard_core::engine::watermark::CommandBufferWatermark;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static GUARD: OnceLock<&'static Guard> = OnceLock::new();

/// The guard, once the constructor created it (`None`: disabled or not yet loaded).
#[inline]
pub fn guard() -> Option<&'static Guard> {
    GUARD.get().copied()
}

/// Creates the process's guard (constructor; later calls return the first).
pub fn init(config: GuardConfig) -> &'static Guard {
    GUARD.get_or_init(|| Box::leak(Box::new(Guard::new(config))))
}

/// Counters for the summary line and tests.
#[derive(Debug, Default)]
pub struct Stats {
    pub refusals: AtomicU64,
    pub retained_upgrades: AtomicU64,
    pub commits_tracked: AtomicU64,
    pub completions: AtomicU64,
    pub deferred_removals: AtomicU64,
    pub removal_batches: AtomicU64,
    pub residency_noops: AtomicU64,
    pub cadence_stalls: AtomicU64,
    pub loads: AtomicU64,
    pub unloads: AtomicU64,
    pub release_bursts: AtomicU64,
    pub hook_faults: AtomicU64,
    pub waits: AtomicU64,
    /// Removals the ring had no room for (performed synchronously instead).
    pub removal_ring_full: AtomicU64,
    /// Residency calls that went on without waiting out a reaper batch
    /// (it held the residency gate past `RESIDENCY_GATE_WAIT`).
    pub residency_gate_timeouts: AtomicU64,
}

/// Longest an application residency call waits while the reaper performs a
/// batch before it goes on anyway (fail open).
pub const RESIDENCY_GATE_WAIT: Duration = Duration::from_millis(100);
/// Longest a removal the ring had no room for waits for the command buffers
/// committed before it, on the application's thread, before it is performed.
pub const FULL_RING_WAIT: Duration = Duration::from_millis(100);

/// What an allocation hook does with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocDecision {
    Proceed,
    /// Return nil without calling the driver.
    Refuse,
}

const NONE: u64 = u64::MAX;

pub struct Guard {
    config: GuardConfig,
    /// `config.model_id` or `"unknown"`, leaked once: breadcrumb events
    /// carry it without allocating.
    model_name: &'static str,
    ledger: AllocationLedger,
    max_single: AtomicU64,
    budget: AtomicU64,
    load_bursts: BurstDetector,
    unload_bursts: BurstDetector,
    /// Monotonic ns of the previous load / unload start, +1 (0: never).
    last_load: AtomicU64,
    last_unload: AtomicU64,
    load_open: AtomicBool,
    unload_open: AtomicBool,
    /// An unload was recognised and no large allocation has come since: the
    /// next one starts a reload and is where a cadence stall must happen
    /// (allocations made before the stall would already sit on the memory
    /// whose late completion bookkeeping the stall waits out).
    reload_pending: AtomicBool,
    /// Whether the process's first load has been recognised; later bursts
    /// of allocations (a prefill, a KV cache growing) are not loads unless
    /// they follow an unload.
    first_load_done: AtomicBool,
    /// Highest live bytes since the last unload decision: what an unload is
    /// measured against.
    live_high_water: AtomicU64,
    /// Cadence stalls in progress (the load section stays open meanwhile).
    stalling: AtomicU64,
    watermark: CommandBufferWatermark,
    commit_gate: CommitGate,
    /// Closed by the reaper while it performs removals; the application's
    /// residency calls hold a pass for the length of their original call.
    residency_gate: CommitGate,
    command_buffers: CommandBufferTable,
    sink: BreadcrumbSink,
    stats: Stats,
    reaper: Reaper,
    epoch: Instant,
    first_fault_reported: AtomicBool,
}

impl Guard {
    pub(crate) fn new(config: GuardConfig) -> Self {
        let sink = BreadcrumbSink::new(config.breadcrumb_path.clone(), config.breadcrumb_max_bytes);
        let model_name: &'static str = Box::leak(
            config
                .model_id
                .clone()
                .unwrap_or_else(|| "unknown".into())
                .into_boxed_str(),
        );
        Guard {
            model_name,
            ledger: AllocationLedger::new(),
            max_single: AtomicU64::new(NONE),
            budget: AtomicU64::new(NONE),
            load_bursts: BurstDetector::new(),
            unload_bursts: BurstDetector::new(),
            last_load: AtomicU64::new(0),
            last_unload: AtomicU64::new(0),
            load_open: AtomicBool::new(false),
            unload_open: AtomicBool::new(false),
            reload_pending: AtomicBool::new(false),
            first_load_done: AtomicBool::new(false),
            live_high_water: AtomicU64::new(0),
            stalling: AtomicU64::new(0),
            watermark: CommandBufferWatermark::new(),
            commit_gate: CommitGate::new(),
            residency_gate: CommitGate::new(),
            command_buffers: CommandBufferTable::new(),
            sink,
            stats: Stats::default(),
            reaper: Reaper::new(),
            epoch: Instant::now(),
            first_fault_reported: AtomicBool::new(false),
            config,
        }
    }

    /// The configuration read at load.
    #[inline]
    pub fn config(&self) -> &GuardConfig {
        &self.config
    }

    /// The counters of the summary line.
    #[inline]
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The breadcrumb log.
    #[inline]
    pub fn sink(&self) -> &BreadcrumbSink {
        &self.sink
    }

    /// Hands a breadcrumb to the writer thread (never blocks).
    #[inline]
    pub fn post(&self, event: Event) {
        self.sink.post(event);
    }

    /// Command buffers committed and not yet completed.
    #[inline]
    pub fn in_flight(&self) -> u64 {
        self.watermark.in_flight()
    }

    /// A new command buffer: tracked for its completion (`false`: table full).
    #[inline]
    pub fn track_command_buffer(&self, cb: usize) -> bool {
        self.command_buffers.register(cb)
    }

    /// Before the original `commit` of command buffer `cb`: a pass through
    /// the commit gate (none from a completion thread, which must never
    /// wait), and its sequence number if it is tracked. The pass is an
    /// atomic count, not a lock: it only makes the reaper wait for this
    /// commit to return.
    #[inline]
    pub fn begin_commit(&self, cb: usize, from_completion_thread: bool) -> Option<CommitPass<'_>> {
        let pass = (!from_completion_thread).then(|| self.commit_gate.enter());
        if self.command_buffers.is_tracked(cb) {
            let seq = self.watermark.begin_commit();
            self.command_buffers.set_seq(cb, seq);
            self.stats.commits_tracked.fetch_add(1, Relaxed);
        }
        pass
    }

    /// A backend without command-buffer tracking (CUDA) queued GPU work with
    /// a completion signal: counted as a commit.
    #[inline]
    #[cfg_attr(
        not(all(target_os = "linux", target_arch = "x86_64")),
        allow(dead_code)
    )] // used by the CUDA backend
    pub fn count_commit(&self) {
        self.stats.commits_tracked.fetch_add(1, Relaxed);
    }

    /// That work's completion signal ran.
    #[inline]
    #[cfg_attr(
        not(all(target_os = "linux", target_arch = "x86_64")),
        allow(dead_code)
    )] // used by the CUDA backend
    pub fn count_completion(&self) {
        self.stats.completions.fetch_add(1, Relaxed);
    }

    /// Our completion handler ran for `cb`.
    #[inline]
    pub fn on_command_buffer_completed(&'static self, cb: usize) {
        if let Some(seq) = self.command_buffers.complete(cb) {
            self.watermark.complete(seq, self.now_ns());
            self.stats.completions.fetch_add(1, Relaxed);
            if self.reaper.pending() > 0 {
                self.wake_reaper();
            }
        }
    }

    /// The sequence number of the last command buffer committed: the tag of
    /// a removal requested now.
    #[inline]
    pub fn last_committed(&self) -> u64 {
        self.watermark.last_committed()
    }

    /// Held by an application residency call (`defer` mode) across its
    /// original call: the reaper performs removals only while no such call
    /// is in progress. Waits at most [`RESIDENCY_GATE_WAIT`] while a batch
    /// runs, then goes on without a pass (counted).
    #[inline]
    pub fn enter_residency_call(&self) -> Option<CommitPass<'_>> {
        let pass = self.residency_gate.enter_within(RESIDENCY_GATE_WAIT);
        if pass.is_none() {
            self.stats.residency_gate_timeouts.fetch_add(1, Relaxed);
        }
        pass
    }

    /// Queues a deferred removal (lock-free) and, for the first one since
    /// the ring was empty, wakes the reaper (later ones find it awake or
    /// woken by completions); `Err` hands it back when the ring is full
    /// (counted).
    #[inline]
    pub fn defer_removal(&'static self, removal: Removal) -> Result<(), Removal> {
        match self.reaper.defer(removal) {
            Ok(first) => {
                self.stats.deferred_removals.fetch_add(1, Relaxed);
                if first {
                    self.wake_reaper();
                }
                Ok(())
            }
            Err(r) => {
                self.stats.removal_ring_full.fetch_add(1, Relaxed);
                Err(r)
            }
        }
    }

    /// Takes back the queued removal of `allocation` from `set`, if any.
    #[inline]
    pub fn cancel_removal(&self, set: usize, allocation: usize) -> Option<Removal> {
        self.reaper.cancel(set, allocation)
    }

    /// Removals waiting for the reaper.
    #[inline]
    pub fn pending_removals(&self) -> u64 {
        self.reaper.pending()
    }

    /// Waits (at most `limit`, never on a completion thread) until every
    /// command buffer committed up to `tag` has completed; whether it has.
    #[cold]
    pub fn wait_for_completion_through(&self, tag: u64, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while self.watermark.completed_through() < tag {
            if depth::is_completion_thread() || std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        true
    }

    #[inline]
    fn wake_reaper(&'static self) {
        self.reaper.wake(self.removal_context());
    }

    fn removal_context(&self) -> RemovalContext<'_> {
        RemovalContext {
            watermark: &self.watermark,
            commit_gate: &self.commit_gate,
            residency_gate: &self.residency_gate,
            sink: &self.sink,
            removal_batches: &self.stats.removal_batches,
            grace_ns: self.config.residency_grace.as_nanos() as u64,
            max_defer_ns: self.config.residency_max_defer.as_nanos() as u64,
            epoch: self.epoch,
        }
    }

    /// Performs the queued removals now (exit drain), bounded by `limit`.
    pub fn run_removal_batch(&self, limit: Duration, force: bool) -> usize {
        self.reaper.run_batch(&self.removal_context(), limit, force)
    }

    /// In a forked child (its `pthread_atfork` handler; see
    /// `fork_handling`): atomics only.
    pub fn reset_after_fork(&self) {
        self.sink.reset_after_fork();
        self.reaper.reset_after_fork();
        self.commit_gate.reset_after_fork();
        self.residency_gate.reset_after_fork();
        self.watermark.forget_in_flight_after_fork();
    }

    /// Monotonic nanoseconds since the guard was created.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Whether levers act (defensive) or only report (observer).
    #[inline]
    pub fn acts(&self) -> bool {
        self.config.mode == Mode::Defensive
    }

    pub fn mode_name(&self) -> &'static str {
        match self.config.mode {
            Mode::Defensive => "defensive",
            Mode::Observer => "observer",
        }
    }

    /// Fault injection for tests: panics inside the library when asked to.
    #[inline]
    pub fn maybe_inject_fault(&self, hook: &'static str) {
        if self.config.test_fault == Some(TestFault::HookPanic) {
            panic!("metal-guard test fault injected in hook {hook}");
        }
    }

    /// A hook's policy panicked: the hook already fell back to the original.
    pub fn on_hook_fault(&self, hook: &'static str) {
        self.stats.hook_faults.fetch_add(1, Relaxed);
        if !self.first_fault_reported.swap(true, Relaxed) {
            // The first one is written durably: it may explain what follows.
            self.sink.post_durable(
                Event::new("GUARD_FAULT", hook).with_text("action", "fell_back_to_original"),
            );
        } else {
            self.sink.post(
                Event::new("GUARD_FAULT", hook)
                    .with("faults", self.stats.hook_faults.load(Relaxed)),
            );
        }
    }

    /// Sets the ceiling from the device's recommended working set.
    pub fn set_working_set(&self, working_set: u64) {
        let c = if self.config.ceiling_enabled {
            SizeCeiling::resolve(
                self.config.max_single_alloc,
                self.config.max_live,
                working_set,
            )
        } else {
            SizeCeiling::UNLIMITED
        };
        self.max_single.store(c.max_single.unwrap_or(NONE), Relaxed);
        self.budget.store(c.budget.unwrap_or(NONE), Relaxed);
        self.sink.write_now(
            "GUARD_CEILING",
            self.mode_name(),
            &[
                ("working_set", working_set.to_string()),
                ("max_single", opt(c.max_single)),
                ("budget", opt(c.budget)),
            ],
            false,
        );
    }

    #[inline]
    fn ceiling(&self) -> SizeCeiling {
        let f = |v: u64| (v != NONE).then_some(v);
        SizeCeiling {
            max_single: f(self.max_single.load(Relaxed)),
            budget: f(self.budget.load(Relaxed)),
        }
    }

    /// Policy before a device buffer allocation of `bytes`.
    #[inline]
    pub fn before_allocation(&self, bytes: u64, selector: &'static str) -> AllocDecision {
        let verdict = self.ceiling().check(bytes, self.ledger.live_bytes());
        if verdict.is_refusal() {
            return self.refuse(verdict, selector);
        }
        if bytes >= self.config.burst.min_bytes {
            let now = self.now_ns();
            let burst = self.load_bursts.record(&self.config.burst, bytes, now);
            if self.reload_pending.load(Relaxed) && self.reload_pending.swap(false, Relaxed) {
                // First large allocation after a burst of frees: if that
                // burst gave back most of what was live, it was an unload and
                // a reload starts here; otherwise it was a cache trim.
                self.decide_reload(now);
            } else if burst.is_some() && !self.first_load_done.load(Relaxed) {
                self.on_load_start(now);
            }
        }
        AllocDecision::Proceed
    }

    /// Bookkeeping after the driver returned a buffer.
    #[inline]
    pub fn after_allocation(&self, bytes: u64) {
        let live = self.ledger.record_allocation(bytes);
        if live > self.live_high_water.load(Relaxed) {
            self.live_high_water.fetch_max(live, Relaxed);
        }
    }

    #[cold]
    fn decide_reload(&self, now: u64) {
        let live = self.ledger.live_bytes();
        let before = self.live_high_water.swap(live, Relaxed);
        if is_unload(before, live, self.config.unload_min_fraction) {
            self.last_unload.fetch_max(
                self.unload_bursts
                    .last_event_ns()
                    .unwrap_or(now)
                    .saturating_add(1),
                Relaxed,
            );
            self.stats.unloads.fetch_add(1, Relaxed);
            self.sink.post(
                Event::new("GUARD_CADENCE", "unload_confirmed")
                    .with("live_before", before)
                    .with("live", live),
            );
            self.on_load_start(now);
        } else {
            self.sink.post(
                Event::new("GUARD_CADENCE", "release_was_not_an_unload")
                    .with("live_before", before)
                    .with("live", live),
            );
        }
    }

    /// A buffer of `bytes` is being freed (its `dealloc`).
    #[inline]
    pub fn on_buffer_freed(&self, bytes: u64) {
        self.ledger.record_free(bytes);
        self.record_unload_event(bytes);
    }

    /// A residency removal of `bytes` was requested.
    pub fn record_unload_event(&self, bytes: u64) {
        if bytes >= self.config.burst.min_bytes {
            let now = self.now_ns();
            if self
                .unload_bursts
                .record(&self.config.burst, bytes, now)
                .is_some()
            {
                self.on_release_burst(now);
            }
        }
    }

    fn refuse(&self, verdict: CeilingVerdict, selector: &'static str) -> AllocDecision {
        self.stats.refusals.fetch_add(1, Relaxed);
        let (rule, requested, limit, live) = match verdict {
            CeilingVerdict::RefuseSingle { requested, limit } => (
                "single_allocation",
                requested,
                limit,
                self.ledger.live_bytes(),
            ),
            CeilingVerdict::RefuseBudget {
                requested,
                live,
                budget,
            } => ("live_budget", requested, budget, live),
            CeilingVerdict::Allow => return AllocDecision::Proceed,
        };
        self.sink.post_durable(
            Event::new(metal_guard_core::breadcrumbs::TAG_PRE, "allocation_refusal")
                .with("bytes", requested)
                .with("limit", limit)
                .with("live", live)
                .with_text("rule", rule)
                .with_text("selector", selector)
                .with_text("mode", self.mode_name()),
        );
        let action = if self.acts() {
            "returned_nil"
        } else {
            "observed_only"
        };
        self.report_refusal(requested, rule, limit, live);
        self.sink.post_durable(
            Event::new(
                metal_guard_core::breadcrumbs::TAG_POST,
                "allocation_refusal",
            )
            .with_text("action", action),
        );
        if self.acts() {
            AllocDecision::Refuse
        } else {
            AllocDecision::Proceed
        }
    }

    /// The refusal on stderr, for the person running the program (cold:
    /// formats on the heap, as `eprintln!` does).
    #[cold]
    fn report_refusal(&self, requested: u64, rule: &str, limit: u64, live: u64) {
        eprintln!(
            "metal-guard: {} a {} byte GPU allocation ({rule} limit {limit} bytes, {live} live); {}",
            if self.acts() { "refused" } else { "would refuse" },
            requested,
            if self.acts() {
                "MLX will raise its own RuntimeError. Raise the limit with METALGUARD_MAX_SINGLE_ALLOC_GB / METALGUARD_MAX_LIVE_GB or turn it off with METALGUARD_CEILING=off."
            } else {
                "observer mode: allocating anyway."
            }
        );
    }

    fn since(&self, stamp: &AtomicU64, now: u64) -> Option<u64> {
        match stamp.load(Relaxed) {
            0 => None,
            t => Some(now.saturating_sub(t - 1)),
        }
    }

    fn on_load_start(&self, now: u64) {
        self.stats.loads.fetch_add(1, Relaxed);
        self.first_load_done.store(true, Relaxed);
        // One PRE per open section: a load recognised while the previous
        // one's section is still open (its burst never went quiet) is
        // checked against the cadence but opens nothing new.
        if !self.load_open.swap(true, Relaxed) {
            self.sink.post_durable(
                Event::new(metal_guard_core::breadcrumbs::TAG_PRE, "model_load")
                    .with_text("model", self.model_name)
                    .with("live", self.ledger.live_bytes()),
            );
        }
        let policy = self.config.cadence;
        let mut decision = decide(
            &policy,
            &LoadHistory {
                since_unload_ns: self.since(&self.last_unload, now),
                since_same_model_load_ns: self.since(&self.last_load, now),
                since_other_model_load_ns: None,
            },
        );
        // Other processes' loads (cadence.json), by the same rule.
        if let Some(id) = &self.config.model_id {
            if let Some(across) = cross_process_cadence::check_and_mark(id, &policy) {
                decision = decision.worst(across);
            }
        }
        match policy.action(decision) {
            CadenceAction::Proceed => {}
            CadenceAction::Warn {
                reason,
                short_by_ns,
            } => {
                if policy.mode != CadenceMode::Off {
                    eprintln!(
                        "metal-guard: model load {:.1} s too soon ({}); METALGUARD_CADENCE=warn, not waiting.",
                        short_by_ns as f64 / 1e9,
                        reason.as_str()
                    );
                }
                self.sink.write_now(
                    "GUARD_CADENCE",
                    "too_soon",
                    &[
                        ("reason", reason.as_str().into()),
                        ("short_by_ms", (short_by_ns / 1_000_000).to_string()),
                        ("action", "warned".into()),
                    ],
                    true,
                );
            }
            CadenceAction::Stall {
                reason,
                wait_ns,
                short_by_ns,
            } => {
                let may_stall = self.acts() && !depth::is_completion_thread();
                let action = if !self.acts() {
                    "observed_only"
                } else if !may_stall {
                    "not_stalled_completion_thread"
                } else {
                    "stalled"
                };
                self.sink.write_now(
                    "GUARD_CADENCE",
                    "too_soon",
                    &[
                        ("reason", reason.as_str().into()),
                        ("short_by_ms", (short_by_ns / 1_000_000).to_string()),
                        ("wait_ms", (wait_ns / 1_000_000).to_string()),
                        ("action", action.into()),
                    ],
                    true,
                );
                if may_stall {
                    self.stats.cadence_stalls.fetch_add(1, Relaxed);
                    eprintln!(
                        "metal-guard: model load {:.1} s after the previous {}; waiting {:.1} s before it continues (METALGUARD_CADENCE=warn to only warn).",
                        policy.interval_ns(reason).saturating_sub(short_by_ns) as f64 / 1e9,
                        reason.previous_event(),
                        wait_ns as f64 / 1e9
                    );
                    self.stalling.fetch_add(1, Relaxed);
                    std::thread::sleep(Duration::from_nanos(wait_ns));
                    self.load_bursts.touch(self.now_ns());
                    self.stalling.fetch_sub(1, Relaxed);
                    if let Some(id) = &self.config.model_id {
                        let _ = cross_process_cadence::check_and_mark(id, &policy);
                    }
                }
            }
        }
        self.last_load.store(self.now_ns() + 1, Relaxed);
    }

    fn on_release_burst(&self, _now: u64) {
        self.stats.release_bursts.fetch_add(1, Relaxed);
        self.reload_pending.store(true, Relaxed);
        if !self.unload_open.swap(true, Relaxed) {
            self.sink.post_durable(
                Event::new(metal_guard_core::breadcrumbs::TAG_PRE, "release_burst")
                    .with("live", self.ledger.live_bytes()),
            );
        }
    }

    /// Called by the writer thread when idle: closes the load/unload
    /// sections once their bursts have gone quiet.
    pub fn tick(&self) {
        let now = self.now_ns();
        self.ledger.sample_rate(now);
        let quiet = self.config.burst.quiet_ns;
        let ended = |d: &BurstDetector| {
            d.last_event_ns()
                .is_some_and(|t| now.saturating_sub(t) >= quiet)
        };
        if self.load_open.load(Relaxed)
            && self.stalling.load(Relaxed) == 0
            && ended(&self.load_bursts)
            && self.load_open.swap(false, Relaxed)
        {
            self.sink.write_durable(
                metal_guard_core::breadcrumbs::TAG_POST,
                "model_load",
                &[("live", self.ledger.live_bytes().to_string())],
            );
        }
        if self.unload_open.load(Relaxed)
            && ended(&self.unload_bursts)
            && self.unload_open.swap(false, Relaxed)
        {
            self.sink.write_durable(
                metal_guard_core::breadcrumbs::TAG_POST,
                "release_burst",
                &[("live", self.ledger.live_bytes().to_string())],
            );
        }
    }

    /// Closes the load/unload sections still open at exit, so a clean exit
    /// never leaves a `SUBPROC_PRE` without its POST (which `orphan-scan`
    /// would report as work stuck on the GPU).
    pub fn close_sections_at_exit(&self) {
        let live = self.ledger.live_bytes().to_string();
        for (open, payload) in [
            (&self.load_open, "model_load"),
            (&self.unload_open, "release_burst"),
        ] {
            if open.swap(false, Relaxed) {
                self.sink.write_now(
                    metal_guard_core::breadcrumbs::TAG_POST,
                    payload,
                    &[("live", live.clone()), ("outcome", "process_exit".into())],
                    self.acts(),
                );
            }
        }
    }

    /// The closing summary (exit).
    pub fn write_summary(&self) {
        let s = &self.stats;
        let l = self.ledger.snapshot();
        let v = |a: &AtomicU64| a.load(Relaxed).to_string();
        self.sink.write_now(
            "GUARD_SUMMARY",
            self.mode_name(),
            &[
                ("allocations", l.total_allocations.to_string()),
                ("frees", l.total_frees.to_string()),
                ("refusals", v(&s.refusals)),
                ("retained_upgrades", v(&s.retained_upgrades)),
                ("commits", v(&s.commits_tracked)),
                ("completions", v(&s.completions)),
                ("deferred_removals", v(&s.deferred_removals)),
                ("removal_batches", v(&s.removal_batches)),
                ("residency_noops", v(&s.residency_noops)),
                ("loads", v(&s.loads)),
                ("unloads", v(&s.unloads)),
                ("release_bursts", v(&s.release_bursts)),
                ("cadence_stalls", v(&s.cadence_stalls)),
                ("hook_faults", v(&s.hook_faults)),
                ("waits", v(&s.waits)),
                ("removal_ring_full", v(&s.removal_ring_full)),
                ("residency_gate_timeouts", v(&s.residency_gate_timeouts)),
                ("peak_bytes", l.peak_bytes.to_string()),
                ("largest", l.largest.to_string()),
                ("allocations_per_sec", l.allocations_per_sec.to_string()),
                ("live_bytes", l.live_bytes.to_string()),
                ("in_flight", self.watermark.in_flight().to_string()),
            ],
            self.acts(),
        );
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "none".into(), |b| b.to_string())
}
