//! Proof that the hot path allocates nothing: a counting global allocator
//! (per thread, so parallel tests do not interfere) around everything a
//! hook does for an allocation, a commit, a completion and a free when
//! there is nothing to report.

use crate::depth::{DepthGuard, HookFamily};
use crate::guard::{AllocDecision, Guard};
use crate::hooks::policy;
use metal_guard_core::engine::config::GuardConfig;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; the
// counter is a const-initialised thread-local (no allocation to reach it).
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTER: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(|c| c.get())
}

fn test_guard() -> &'static Guard {
    let dir = tempfile::tempdir().unwrap().keep();
    let path = dir.join("bc.log");
    let config = GuardConfig::from_lookup(&move |k| match k {
        "METALGUARD_BREADCRUMB_PATH" => Some(path.display().to_string()),
        // Large buffers count towards a load, but never complete a burst here.
        "METALGUARD_BURST_N" => Some("1000000000".into()),
        _ => None,
    });
    let guard: &'static Guard = Box::leak(Box::new(Guard::new(config)));
    guard.set_working_set(64 << 30);
    guard
}

/// One round of everything a guarded allocate/bind/commit/complete/free
/// cycle does in the hooks, with nothing to report.
fn round(guard: &'static Guard, cb: usize) {
    let d = DepthGuard::enter(HookFamily::Allocation);
    assert!(d.outermost());
    for bytes in [4096u64, 64 << 20] {
        let decision = policy(guard, "newBufferWithLength:options:", || {
            guard.before_allocation(bytes, "newBufferWithLength:options:")
        });
        assert_eq!(decision, Some(AllocDecision::Proceed));
        policy(guard, "newBufferWithLength:options:", || {
            guard.after_allocation(bytes)
        });
    }
    drop(d);
    // Creation (the handler itself is a driver-side Block_copy refcount).
    assert!(guard.track_command_buffer(cb));
    // Commit.
    let c = DepthGuard::enter(HookFamily::Commit);
    let pass = policy(guard, "commit", || guard.begin_commit(cb, false));
    drop(pass);
    drop(c);
    // Completion.
    guard.on_command_buffer_completed(cb);
    // Frees.
    let f = DepthGuard::enter(HookFamily::Free);
    policy(guard, "dealloc", || guard.on_buffer_freed(4096));
    policy(guard, "dealloc", || guard.on_buffer_freed(64 << 20));
    drop(f);
}

#[test]
fn hot_path_makes_no_heap_allocation() {
    let guard = test_guard();
    // Warm-up: first use of thread-locals and clocks.
    round(guard, 0x10_000);
    let before = allocations();
    for i in 0..10_000usize {
        round(guard, 0x20_000 + i * 0x40);
    }
    assert_eq!(
        allocations() - before,
        0,
        "heap allocations on the hot path"
    );
    assert_eq!(guard.in_flight(), 0);
    assert_eq!(guard.ledger().snapshot().live_bytes, 0);
}

#[test]
fn the_counter_counts() {
    let before = allocations();
    let v: Vec<u64> = Vec::with_capacity(16);
    assert!(allocations() > before);
    drop(v);
}
