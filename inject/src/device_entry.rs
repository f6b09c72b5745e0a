//! Where hooks get installed: the platform interposers of Metal's two C
//! entry points call in here with what the real function returned, before
//! returning it to the application.
//!
//! - Linux: `ld_preload.rs` exports `MTLCreateSystemDefaultDevice` and
//!   `MTLCopyAllDevices` (`LD_PRELOAD`).
//! - macOS: `dyld_interpose.rs` (the macOS part, dyld `__interpose`) calls
//!   [`on_device_created`] from its `MTLCreateSystemDefaultDevice`
//!   replacement and [`on_devices_copied`] from its `MTLCopyAllDevices`
//!   replacement.
//!
//! The first device triggers, once: the cooldown gate (lever (e)), the
//! breadcrumb writer, the size ceiling from `recommendedMaxWorkingSetSize`
//! and the exit drain. Every device's concrete class is then hooked once.

use crate::breadcrumb_sink::Event;
use crate::guard::{guard, Guard};
use crate::hooks;
use crate::objc_runtime::{Id, ObjcRuntime};
use metal_guard_core::gates::start_gate::{
    self, CooldownGate, Handoff, HandoffOutcome, StartOutcome, VerdictSource, FORCE_VAR,
};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;
use std::time::Duration;

static FIRST_DEVICE: Once = Once::new();

/// How often the breadcrumb writer wakes when idle (closes load/unload sections).
const WRITER_TICK: Duration = Duration::from_millis(100);

/// Call with the device `MTLCreateSystemDefaultDevice` returned (may be nil).
pub(crate) fn on_device_created(device: Id) {
    if device.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| hook_device(device)));
}

/// Call with the array `MTLCopyAllDevices` returned (may be nil).
pub(crate) fn on_devices_copied(array: Id) {
    if array.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let Some(rt) = ObjcRuntime::get() else {
            return;
        };
        let count = crate::objc_messages::send_u64(rt, array, c"count").unwrap_or(0);
        for i in 0..count.min(64) {
            let device = crate::objc_messages::object_at_index(rt, array, i);
            if !device.is_null() {
                hook_device(device);
            }
        }
    }));
}

fn hook_device(device: Id) {
    let Some(guard) = guard() else {
        return;
    };
    let Some(rt) = ObjcRuntime::get() else {
        eprintln!("metal-guard: no Objective-C runtime in this process; not guarding.");
        return;
    };
    FIRST_DEVICE.call_once(|| first_device(guard, rt, device));
    hooks::policy(guard, "device", || {
        hooks::device::install(guard, rt, rt.class_of(device));
    });
}

fn first_device(guard: &'static Guard, rt: &ObjcRuntime, device: Id) {
    quiet_panic_messages();
    if guard.config().gate_enabled {
        apply_gate(guard);
    }
    let _ = guard.sink().start_writer(WRITER_TICK, move || guard.tick());
    for w in &guard.config().warnings {
        eprintln!("metal-guard: {w}");
    }
    let working_set =
        crate::objc_messages::send_u64(rt, device, c"recommendedMaxWorkingSetSize").unwrap_or(0);
    guard.set_working_set(working_set);
    guard.sink().write_now(
        "GUARD_ACTIVE",
        guard.mode_name(),
        &[
            ("version", crate::VERSION.to_string()),
            ("device_class", rt.class_name(rt.class_of(device))),
            (
                "residency",
                format!("{:?}", guard.config().residency).to_lowercase(),
            ),
            ("retain", guard.config().retain_references.to_string()),
            (
                "cadence",
                format!("{:?}", guard.config().cadence.mode).to_lowercase(),
            ),
            (
                "exit_drain_ms",
                guard
                    .config()
                    .exit_drain
                    .map_or(0, |d| d.as_millis())
                    .to_string(),
            ),
            ("config_warnings", guard.config().warnings.len().to_string()),
        ],
        false,
    );
    crate::exit_drain::register();
}

/// After the first panic in a hook, later ones are counted, not printed:
/// fault injection (or a real bug) must not flood the host's stderr. This
/// hook belongs to the library's own copy of the Rust runtime, so a Rust
/// host's panic hook is untouched.
pub(crate) fn quiet_panic_messages() {
    let default = std::panic::take_hook();
    let printed = std::sync::atomic::AtomicBool::new(false);
    std::panic::set_hook(Box::new(move |info| {
        if !printed.swap(true, std::sync::atomic::Ordering::Relaxed) {
            eprintln!("metal-guard: internal error inside a hook; the hook fell back to the original call (breadcrumb GUARD_FAULT). Details:");
            default(info);
        }
    }));
}

/// Lever (e): the start gate, once, when the process first gets a device and
/// before any GPU work. The launcher's decision is taken when it was made
/// for this very process (`METALGUARD_GATE_HANDOFF`); otherwise (injected
/// without the launcher, or a child forked later) the library asks the gate
/// itself, through the one rule every part of metal-guard uses.
fn apply_gate(guard: &Guard) {
    let env = metal_guard_core::env_vars::process_env;
    if let Some(handoff) = Handoff::for_process(&env, std::process::id()) {
        let outcome = match handoff.outcome {
            HandoffOutcome::Proceed => "proceed",
            HandoffOutcome::Overridden => "overridden",
            HandoffOutcome::FailedOpen => "failed_open",
        };
        guard.sink().write_now(
            "GUARD_GATE",
            "decided_by_launcher",
            &[("outcome", outcome.into())],
            false,
        );
        guard.sink().post(Event::new("GUARD_GATE", "checked"));
        return;
    }
    if metal_guard_core::env_vars::flag(&env, "METALGUARD_PANIC_GATE_DISABLED") {
        // Switched off: not even the report folders are read.
        guard.sink().post(Event::new("GUARD_GATE", "checked"));
        return;
    }
    let decision = start_gate::decide(
        CooldownGate::from_environment().verdict(),
        start_gate::force_requested(&env),
        "metal-guard",
    );
    for line in decision.lines() {
        eprintln!("{line}");
    }
    match decision.outcome {
        StartOutcome::Proceed => {}
        StartOutcome::FailedOpen { error } => {
            guard
                .sink()
                .write_now("GUARD_GATE", "failed_open", &[("error", error)], true);
        }
        StartOutcome::Overridden { reason, .. } => {
            guard.sink().write_now(
                "GUARD_GATE",
                "overridden",
                &[("reason", reason), ("by", format!("{FORCE_VAR}=1"))],
                true,
            );
        }
        StartOutcome::Blocked { reason, .. } => {
            let acts = guard.acts();
            eprintln!(
                "metal-guard: {}",
                if acts {
                    "exiting before any GPU work (exit code 10)."
                } else {
                    "observer mode: continuing."
                }
            );
            guard.sink().write_now(
                "GUARD_GATE",
                if acts {
                    "blocked_exit_10"
                } else {
                    "would_block"
                },
                &[("reason", reason)],
                true,
            );
            if acts {
                // SAFETY: exit(3) is safe to call from any thread; nothing of
                // ours is mid-update (no GPU work has started).
                unsafe { libc::exit(i32::from(start_gate::EXIT_BLOCKED)) };
            }
        }
    }
    guard.sink().post(Event::new("GUARD_GATE", "checked"));
}
