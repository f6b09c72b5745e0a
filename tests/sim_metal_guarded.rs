//! Ring 2, with the guard: the same workloads preloaded with
//! `libmetal_guard_inject.so` finish with exit 0 and no panic report, and the
//! breadcrumbs show which lever did it; with that lever switched off the bug
//! comes back; observer mode logs and still panics; a hook that panics inside
//! the library leaves the host running.

use metal_guard_core::breadcrumbs::{parse_line, BreadcrumbLine};
use sim_metal::{
    artifacts, build_inject_library, SimArtifacts, Workload, WorkloadOutcome, WorkloadRun,
};
use std::path::PathBuf;
use tempfile::TempDir;

fn built() -> &'static SimArtifacts {
    artifacts().unwrap_or_else(|e| panic!("{e}"))
}

fn guard() -> PathBuf {
    build_inject_library().unwrap_or_else(|e| panic!("{e}"))
}

struct GuardedRun {
    _scratch: TempDir,
    spec: WorkloadRun,
    out: WorkloadOutcome,
}

impl GuardedRun {
    fn breadcrumbs(&self) -> Vec<BreadcrumbLine> {
        self.spec
            .breadcrumbs()
            .lines()
            .filter_map(parse_line)
            .collect()
    }

    fn has(&self, tag: &str, payload: &str) -> bool {
        self.breadcrumbs()
            .iter()
            .any(|l| l.tag == tag && l.payload == payload)
    }

    /// A numeric field of the exit summary line.
    fn summary(&self, key: &str) -> u64 {
        self.breadcrumbs()
            .iter()
            .rev()
            .find(|l| l.tag == "GUARD_SUMMARY")
            .and_then(|l| l.field(key).and_then(|v| v.parse().ok()))
            .unwrap_or(0)
    }

    fn explain(&self) -> String {
        format!(
            "{}\n--- breadcrumbs\n{}",
            self.out.describe(),
            self.spec.breadcrumbs()
        )
    }
}

fn run_guarded(workload: Workload, env: &[(&str, &str)], args: &[(&str, &str)]) -> GuardedRun {
    let scratch = tempfile::tempdir().unwrap();
    let mut spec = WorkloadRun::new(workload, scratch.path()).guarded(guard());
    for (k, v) in env {
        spec = spec.env(*k, *v);
    }
    for (k, v) in args {
        spec = spec.arg(k, *v);
    }
    let out = spec.run(built()).expect("start the workload");
    GuardedRun {
        _scratch: scratch,
        spec,
        out,
    }
}

#[test]
fn load_unload_is_stalled_between_loads() {
    let r = run_guarded(Workload::LoadUnload, &[], &[]);
    assert!(r.out.clean(), "{}", r.explain());
    let stalled = r.breadcrumbs().iter().any(|l| {
        l.tag == "GUARD_CADENCE" && l.payload == "too_soon" && l.field("action") == Some("stalled")
    });
    assert!(stalled, "{}", r.explain());
    assert!(r.has("SUBPROC_PRE", "model_load"), "{}", r.explain());
    assert!(r.has("SUBPROC_PRE", "release_burst"), "{}", r.explain());
}

#[test]
fn concurrent_trim_runs_on_retained_command_buffers() {
    let r = run_guarded(Workload::ConcurrentTrim, &[], &[]);
    assert!(r.out.clean(), "{}", r.explain());
    assert!(
        r.has("GUARD_RETAIN", "unretained_command_buffers_now_retained"),
        "{}",
        r.explain()
    );
    assert!(r.summary("retained_upgrades") >= 80, "{}", r.explain());
}

#[test]
fn residency_churn_removals_wait_for_completion() {
    let r = run_guarded(Workload::ResidencyChurn, &[], &[]);
    assert!(r.out.clean(), "{}", r.explain());
    assert!(
        r.has("SUBPROC_PRE", "residency_removal_batch")
            && r.has("SUBPROC_POST", "residency_removal_batch"),
        "{}",
        r.explain()
    );
    assert!(r.summary("deferred_removals") > 0, "{}", r.explain());
}

#[test]
fn residency_off_keeps_every_set_empty() {
    let r = run_guarded(
        Workload::ResidencyChurn,
        &[("METALGUARD_RESIDENCY", "off")],
        &[],
    );
    assert!(r.out.clean(), "{}", r.explain());
    assert!(r.summary("residency_noops") > 0, "{}", r.explain());
}

#[test]
fn oversize_prefill_is_refused_cleanly() {
    let r = run_guarded(Workload::OversizePrefill, &[], &[]);
    assert!(r.out.clean(), "{}", r.explain());
    assert!(
        r.out
            .stdout
            .contains("caught RuntimeError: [malloc] Unable to allocate"),
        "{}",
        r.explain()
    );
    assert!(
        !r.out.stderr.contains("exceeds the working set"),
        "the driver's out-of-memory path was never reached: {}",
        r.explain()
    );
    assert!(
        r.has("SUBPROC_PRE", "allocation_refusal") && r.has("SUBPROC_POST", "allocation_refusal"),
        "{}",
        r.explain()
    );
}

#[test]
fn exit_waits_for_work_in_flight() {
    let r = run_guarded(Workload::ExitInflight, &[], &[]);
    assert!(r.out.clean(), "{}", r.explain());
    let drained = r.breadcrumbs().iter().any(|l| {
        l.tag == "SUBPROC_POST"
            && l.payload == "exit_drain"
            && l.field("outcome") == Some("drained")
    });
    let had_work = r.breadcrumbs().iter().any(|l| {
        l.tag == "SUBPROC_PRE"
            && l.payload == "exit_drain"
            && l.field("in_flight").and_then(|v| v.parse::<u64>().ok()) > Some(0)
    });
    assert!(drained && had_work, "{}", r.explain());
}

#[test]
fn the_control_workload_stays_clean_under_the_guard() {
    let r = run_guarded(Workload::Steady, &[], &[]);
    assert!(r.out.clean(), "{}", r.explain());
    assert!(r.has("GUARD_ACTIVE", "defensive"), "{}", r.explain());
}

/// Each lever is what prevents its workload's bug: switched off (everything
/// else still on), the bug comes back. For the oversize prefill the cadence
/// stall is switched off too: the huge allocation counts as a load, and a
/// stall before it lets the work in flight finish, which under the model also
/// avoids the out-of-memory reclaim.
#[test]
fn each_lever_switched_off_lets_its_bug_through() {
    let cases: [(Workload, &[(&str, &str)]); 5] = [
        (Workload::LoadUnload, &[("METALGUARD_CADENCE", "warn")]),
        (
            Workload::ConcurrentTrim,
            &[("METALGUARD_RETAIN_REFERENCES", "off")],
        ),
        (
            Workload::ResidencyChurn,
            &[("METALGUARD_RESIDENCY", "keep")],
        ),
        (
            Workload::OversizePrefill,
            &[
                ("METALGUARD_CEILING", "off"),
                ("METALGUARD_CADENCE", "warn"),
            ],
        ),
        (Workload::ExitInflight, &[("METALGUARD_EXIT_DRAIN_S", "0")]),
    ];
    for (workload, switches) in cases {
        let r = run_guarded(workload, switches, &[]);
        assert!(
            r.out.panicked() && r.out.aborted(),
            "{workload} with {switches:?}: {}",
            r.explain()
        );
    }
}

/// What observer mode must say it would have done, per workload, where the
/// guard writes that line synchronously before letting the risky call
/// through. The retain and residency notes (`GUARD_RETAIN:
/// would_retain_unretained_command_buffers`, `GUARD_RESIDENCY:
/// would_defer_removals`) go through the asynchronous writer and can be lost
/// when the simulated panic aborts the process a few milliseconds later, as
/// they would be in a real reboot, so they are not required here.
fn observed_lever(
    workload: Workload,
) -> Option<(&'static str, &'static str, (&'static str, &'static str))> {
    match workload {
        Workload::LoadUnload => Some(("GUARD_CADENCE", "too_soon", ("action", "observed_only"))),
        Workload::OversizePrefill => Some((
            "SUBPROC_POST",
            "allocation_refusal",
            ("action", "observed_only"),
        )),
        Workload::ExitInflight => {
            Some(("SUBPROC_POST", "exit_drain", ("outcome", "observed_only")))
        }
        Workload::ConcurrentTrim | Workload::ResidencyChurn | Workload::Steady => None,
    }
}

#[test]
fn observer_mode_logs_and_still_panics() {
    for workload in Workload::PANICKING {
        let r = run_guarded(workload, &[("METALGUARD_MODE", "observer")], &[]);
        assert!(
            r.out.panicked() && r.out.aborted(),
            "{workload}: {}",
            r.explain()
        );
        assert!(
            r.has("GUARD_ACTIVE", "observer"),
            "{workload}: {}",
            r.explain()
        );
        if let Some((tag, payload, (key, value))) = observed_lever(workload) {
            let logged = r
                .breadcrumbs()
                .iter()
                .any(|l| l.tag == tag && l.payload == payload && l.field(key) == Some(value));
            assert!(
                logged,
                "{workload}: observer mode should log {tag}: {payload} {key}={value}: {}",
                r.explain()
            );
        }
    }
}

#[test]
fn a_hook_that_panics_leaves_the_host_running() {
    let r = run_guarded(
        Workload::Steady,
        &[("METALGUARD_TEST_FAULT", "hook_panic")],
        &[],
    );
    assert!(r.out.clean(), "{}", r.explain());
    assert!(
        r.breadcrumbs().iter().any(|l| l.tag == "GUARD_FAULT"),
        "{}",
        r.explain()
    );
}

/// Lever (e): after a (simulated) panic the guard's gate, checked when the
/// process first gets a device, stops the next run before any GPU work with
/// exit code 10; the Python tool's override lets it run anyway; observer
/// mode only tells.
#[test]
fn after_a_panic_the_next_guarded_run_is_stopped_at_the_gate() {
    let scratch = tempfile::tempdir().unwrap();
    let first = WorkloadRun::new(Workload::ConcurrentTrim, scratch.path())
        .run(built())
        .expect("start the workload");
    assert!(first.panicked(), "{}", first.describe());

    let gated = |env: &[(&str, &str)]| {
        let mut spec = WorkloadRun::new(Workload::Steady, scratch.path()).guarded(guard());
        for (k, v) in env {
            spec = spec.env(*k, *v);
        }
        let out = spec.run(built()).expect("start the workload");
        (spec, out)
    };

    let (spec, out) = gated(&[]);
    let crumbs = spec.breadcrumbs();
    assert_eq!(
        out.status.code(),
        Some(10),
        "{}\n--- breadcrumbs\n{crumbs}",
        out.describe()
    );
    assert_eq!(out.reports.len(), 1, "no new panic: {}", out.describe());
    assert!(
        !out.stdout.contains("workload steady: done"),
        "stopped before the work: {}",
        out.describe()
    );
    assert!(
        !out.stderr.trim().is_empty(),
        "says why: {}",
        out.describe()
    );
    assert!(
        crumbs
            .lines()
            .filter_map(parse_line)
            .any(|l| l.tag == "GUARD_GATE"),
        "{crumbs}"
    );

    let (_, out) = gated(&[("MLX_SAFE_PYTHON_FORCE", "1")]);
    assert!(
        out.status.success() && out.stdout.contains("workload steady: done"),
        "{}",
        out.describe()
    );

    let (_, out) = gated(&[("METALGUARD_MODE", "observer")]);
    assert!(
        out.status.success() && out.stdout.contains("workload steady: done"),
        "{}",
        out.describe()
    );
}
