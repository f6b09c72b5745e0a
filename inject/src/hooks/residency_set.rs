//! Residency-set hooks: levers (b) and (d), per `METALGUARD_RESIDENCY`.
//!
//! - `defer` (default): `removeAllocation:` is queued for the reaper, which
//!   performs it (and the set's `commit`) once every command buffer
//!   committed before it has completed. The set's own `commit` passes
//!   through (it commits additions). Re-adding an allocation whose removal
//!   is still queued cancels the removal instead.
//! - `keep`: everything passes through.
//! - `off`: `addAllocation:` and `removeAllocation:` do nothing, so nothing
//!   is wired (the configuration that ran clean in mlx#3186).
//!
//! In observer mode every call passes through and the first of each kind
//! is logged with what would have happened.

use super::{install_on, original, policy};
use crate::breadcrumb_sink::Event;
use crate::depth::{DepthGuard, HookFamily};
use crate::guard::{guard, Guard, FULL_RING_WAIT};
use crate::hook_table::HookSlot;
use crate::objc_messages::{object_length, object_release, object_retain};
use crate::objc_runtime::{Class, Id, Imp, ObjcRuntime, Sel};
use crate::reaper::Removal;
use metal_guard_core::engine::commit_gate::CommitPass;
use metal_guard_core::engine::config::ResidencyPolicy;
use std::sync::atomic::{AtomicBool, Ordering::*};

pub static ADD_ALLOCATION: HookSlot = HookSlot::new(c"addAllocation:");
pub static REMOVE_ALLOCATION: HookSlot = HookSlot::new(c"removeAllocation:");
pub static SET_COMMIT: HookSlot = HookSlot::new(c"commit");

type VoidObjMethod = unsafe extern "C-unwind" fn(Id, Sel, Id);
type VoidMethod = unsafe extern "C-unwind" fn(Id, Sel);

static NOTED_NOOP: AtomicBool = AtomicBool::new(false);
static NOTED_DEFER: AtomicBool = AtomicBool::new(false);

pub fn install(guard: &Guard, rt: &ObjcRuntime, cls: Class) {
    crate::objc_messages::warm_up(rt);
    install_on(
        guard,
        rt,
        cls,
        "residency_set",
        &[
            (&ADD_ALLOCATION, add_allocation as Imp),
            (&REMOVE_ALLOCATION, remove_allocation as Imp),
            (&SET_COMMIT, set_commit as Imp),
        ],
    );
}

fn note_once(guard: &Guard, flag: &AtomicBool, acted: &'static str, observed: &'static str) {
    if !flag.swap(true, Relaxed) {
        guard.post(Event::new(
            "GUARD_RESIDENCY",
            if guard.acts() { acted } else { observed },
        ));
    }
}

/// What a residency hook does with one call.
enum Action<'g> {
    PassThrough,
    /// `defer` mode: pass through holding a pass through the residency gate
    /// (an atomic count the reaper waits to drain; `None`: the wait for a
    /// reaper batch timed out and the call goes on without one).
    PassThroughInGate(Option<CommitPass<'g>>),
    Skip,
}

unsafe extern "C-unwind" fn add_allocation(this: Id, cmd: Sel, allocation: Id) {
    let Some((rt, imp)) = original(&ADD_ALLOCATION, this) else {
        return;
    };
    // SAFETY: original IMP of `addAllocation:` (`void (id, SEL, id)`).
    let orig: VoidObjMethod = unsafe { std::mem::transmute::<Imp, _>(imp) };
    let Some(guard) = guard() else {
        // SAFETY: as above.
        return unsafe { orig(this, cmd, allocation) };
    };
    let depth = DepthGuard::enter(HookFamily::Residency);
    if !depth.outermost() {
        // SAFETY: as above.
        return unsafe { orig(this, cmd, allocation) };
    }
    let action = policy(guard, "addAllocation:", || match guard.config().residency {
        ResidencyPolicy::Keep => Action::PassThrough,
        ResidencyPolicy::Off => {
            note_once(
                guard,
                &NOTED_NOOP,
                "add_allocation_skipped_wired_limit_off",
                "would_skip_add_allocation",
            );
            if guard.acts() {
                guard.stats().residency_noops.fetch_add(1, Relaxed);
                Action::Skip
            } else {
                Action::PassThrough
            }
        }
        ResidencyPolicy::Defer => {
            // Inside the gate first: the reaper cannot be taking removals
            // while we look for one to cancel.
            let pass = guard.enter_residency_call();
            if guard.acts() {
                if let Some(cancelled) = guard.cancel_removal(this as usize, allocation as usize) {
                    // Still in the set: the queued removal is dropped, and
                    // so is our hold on both objects.
                    object_release(rt, cancelled.allocation as Id);
                    object_release(rt, cancelled.set as Id);
                    return Action::Skip;
                }
            }
            Action::PassThroughInGate(pass)
        }
    })
    .unwrap_or(Action::PassThrough);
    match action {
        Action::Skip => {}
        // SAFETY: as above.
        Action::PassThrough => unsafe { orig(this, cmd, allocation) },
        Action::PassThroughInGate(pass) => {
            // SAFETY: as above.
            unsafe { orig(this, cmd, allocation) };
            drop(pass);
        }
    }
}

unsafe extern "C-unwind" fn remove_allocation(this: Id, cmd: Sel, allocation: Id) {
    let Some((rt, imp)) = original(&REMOVE_ALLOCATION, this) else {
        return;
    };
    // SAFETY: original IMP of `removeAllocation:` (`void (id, SEL, id)`).
    let orig: VoidObjMethod = unsafe { std::mem::transmute::<Imp, _>(imp) };
    let Some(guard) = guard() else {
        // SAFETY: as above.
        return unsafe { orig(this, cmd, allocation) };
    };
    let depth = DepthGuard::enter(HookFamily::Residency);
    if !depth.outermost() {
        // SAFETY: as above.
        return unsafe { orig(this, cmd, allocation) };
    }
    let action = policy(guard, "removeAllocation:", || {
        let bytes = object_length(rt, allocation).unwrap_or(0);
        guard.record_unload_event(bytes);
        match guard.config().residency {
            ResidencyPolicy::Keep => Action::PassThrough,
            ResidencyPolicy::Off => {
                if guard.acts() {
                    guard.stats().residency_noops.fetch_add(1, Relaxed);
                    Action::Skip
                } else {
                    Action::PassThrough
                }
            }
            ResidencyPolicy::Defer => {
                note_once(
                    guard,
                    &NOTED_DEFER,
                    "removals_deferred_until_completion",
                    "would_defer_removals",
                );
                let commit_imp = SET_COMMIT.original_for(rt, this);
                match (guard.acts(), commit_imp) {
                    (true, Some(commit_imp)) => {
                        object_retain(rt, this);
                        object_retain(rt, allocation);
                        let tag = guard.last_committed();
                        let queued = guard.defer_removal(Removal {
                            set: this as usize,
                            allocation: allocation as usize,
                            remove_imp: imp as usize,
                            commit_imp: commit_imp as usize,
                            tag,
                            queued_ns: guard.now_ns(),
                        });
                        match queued {
                            Ok(()) => Action::Skip,
                            Err(_) => {
                                // The ring is full (thousands of removals
                                // waiting: never seen in practice). Passing
                                // through at once would race the GPU work
                                // committed before it, the very bug lever
                                // (b) prevents; waiting without bound could
                                // hang the application. So: wait, bounded,
                                // for that work to complete, then perform
                                // the removal here, serialised with the
                                // reaper like any residency call.
                                object_release(rt, allocation);
                                object_release(rt, this);
                                guard.wait_for_completion_through(tag, FULL_RING_WAIT);
                                Action::PassThroughInGate(guard.enter_residency_call())
                            }
                        }
                    }
                    _ => Action::PassThroughInGate(guard.enter_residency_call()),
                }
            }
        }
    })
    .unwrap_or(Action::PassThrough);
    match action {
        Action::Skip => {}
        // SAFETY: as above.
        Action::PassThrough => unsafe { orig(this, cmd, allocation) },
        Action::PassThroughInGate(pass) => {
            // SAFETY: as above.
            unsafe { orig(this, cmd, allocation) };
            drop(pass);
        }
    }
}

unsafe extern "C-unwind" fn set_commit(this: Id, cmd: Sel) {
    let Some((_, imp)) = original(&SET_COMMIT, this) else {
        return;
    };
    // SAFETY: original IMP of the residency set's `commit` (`void (id, SEL)`).
    let orig: VoidMethod = unsafe { std::mem::transmute::<Imp, _>(imp) };
    let Some(guard) = guard().filter(|g| g.config().residency == ResidencyPolicy::Defer) else {
        // SAFETY: as above.
        return unsafe { orig(this, cmd) };
    };
    let depth = DepthGuard::enter(HookFamily::Residency);
    let pass = if depth.outermost() {
        policy(guard, "commit", || guard.enter_residency_call()).flatten()
    } else {
        None
    };
    // SAFETY: as above.
    unsafe { orig(this, cmd) };
    drop(pass);
}
