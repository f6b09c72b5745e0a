//! Ring 2, without the guard: every panicking workload trips the simulated
//! IOGPU bug (an Apple-format panic report appears and the process aborts),
//! the control workload never does, and each guard lever applied by hand in
//! the workload is enough to prevent its bug under the model.

use metal_guard_core::forensics::{scan_reports, PanicSignature, ReportScan};
use serde_json::Value;
use sim_metal::{artifacts, SimArtifacts, Workload, WorkloadOutcome, WorkloadRun};
use std::path::Path;
use std::process::Command;

fn built() -> &'static SimArtifacts {
    match artifacts() {
        Ok(a) => a,
        Err(e) => panic!("{e}"),
    }
}

fn run(run: WorkloadRun) -> WorkloadOutcome {
    run.run(built()).expect("start the workload")
}

/// Splits an `.ips` report into its header line and body, both JSON.
fn parse_ips(text: &str) -> (Value, Value) {
    let (header, body) = text.split_once('\n').expect("header line");
    (
        serde_json::from_str(header).expect("header is JSON"),
        serde_json::from_str(body).expect("body is JSON"),
    )
}

#[test]
fn each_unguarded_workload_writes_a_panic_report_and_aborts() {
    for workload in Workload::PANICKING {
        let scratch = tempfile::tempdir().unwrap();
        let out = run(WorkloadRun::new(workload, scratch.path()));
        assert!(
            out.aborted() && out.reports.len() == 1,
            "{workload}: {}",
            out.describe()
        );
        let name = out.reports[0].file_name().unwrap().to_string_lossy();
        assert!(
            name.starts_with("panic-full-") && name.ends_with(".ips"),
            "{name}"
        );
        let text = std::fs::read_to_string(&out.reports[0]).unwrap();
        let (header, body) = parse_ips(&text);
        assert_eq!(header["bug_type"], "210", "{workload}");
        assert!(header["timestamp"].is_string(), "{workload}");
        let panic = body["panicString"].as_str().expect("panicString");
        assert!(
            panic.starts_with("panic(cpu "),
            "{workload}: panicString starts with the panic line: {panic}"
        );
        assert!(
            panic.contains(workload.expected_panic().unwrap()),
            "{workload}: {panic}"
        );
        assert!(
            panic.contains(
                "Kernel Extensions in backtrace:\n    com.apple.iokit.IOGPUFamily(130.13)["
            ),
            "{workload}: {panic}"
        );
        assert!(panic.contains("Kernel version: Darwin Kernel Version 25.4.0"));
        assert!(
            text.contains("\\/RELEASE_ARM64_T8132"),
            "slashes are escaped as Apple does"
        );
        assert!(
            out.stderr.contains("SIMULATED KERNEL PANIC"),
            "{}",
            out.describe()
        );
    }
}

/// `metal-guard diagnose --reports DIR --json`, with HOME inside `scratch`.
fn diagnose_json(dir: &Path, scratch: &Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_metal-guard"))
        .args(["diagnose", "--json", "--reports"])
        .arg(dir)
        .env("HOME", scratch)
        .env_remove("METALGUARD_PANIC_REPORT_DIRS")
        .output()
        .expect("run metal-guard diagnose");
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).expect("diagnose --json prints JSON")
}

fn expected_signature(workload: Workload) -> PanicSignature {
    match workload {
        Workload::ResidencyChurn => PanicSignature::PendingMemorySet,
        _ => PanicSignature::PrepareCountUnderflow,
    }
}

#[test]
fn forensics_classifies_every_simulated_report() {
    for workload in Workload::PANICKING {
        let scratch = tempfile::tempdir().unwrap();
        let run_spec = WorkloadRun::new(workload, scratch.path());
        let out = run(run_spec.clone());
        assert!(out.panicked(), "{workload}: {}", out.describe());

        let scan = scan_reports(&ReportScan::all(vec![run_spec.panic_dir.clone()]));
        assert!(scan.skipped.is_empty(), "{workload}: {:?}", scan.skipped);
        assert_eq!(scan.reports.len(), 1, "{workload}");
        let report = &scan.reports[0];
        assert_eq!(
            report.signature,
            Some(expected_signature(workload)),
            "{workload}"
        );
        assert!(report.is_iogpu());
        assert_eq!(report.os_build.as_deref(), Some("25E253"), "{workload}");
        assert_eq!(
            report.process.as_deref(),
            Some("mlx_workload"),
            "{workload}"
        );
        assert!(report.time.is_some(), "{workload}");

        let json = diagnose_json(&run_spec.panic_dir, scratch.path());
        let reports = json["reports"].as_array().expect("reports array");
        assert_eq!(reports.len(), 1, "{workload}: {json}");
        assert_eq!(
            reports[0]["signature"],
            expected_signature(workload).as_str(),
            "{workload}: {json}"
        );
    }
}

fn panic_gate(dir: &Path, scratch: &Path) -> (Option<i32>, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_metal-guard"))
        .args(["panic-gate", "--json", "--reports"])
        .arg(dir)
        .env("HOME", scratch)
        .env_remove("METALGUARD_PANIC_REPORT_DIRS")
        .env_remove("METALGUARD_PANIC_GATE_DISABLED")
        .env_remove("MLX_SAFE_PYTHON_FORCE")
        .output()
        .expect("run metal-guard panic-gate");
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("panic-gate --json: {e}: {out:?}"));
    (out.status.code(), json)
}

#[test]
fn a_simulated_panic_puts_the_gate_into_cooldown() {
    let scratch = tempfile::tempdir().unwrap();
    let run_spec = WorkloadRun::new(Workload::ConcurrentTrim, scratch.path());
    std::fs::create_dir_all(&run_spec.panic_dir).unwrap();
    let home = scratch.path().join("gate-home");
    std::fs::create_dir_all(&home).unwrap();

    let (code, json) = panic_gate(&run_spec.panic_dir, &home);
    assert_eq!(code, Some(0), "no report yet: {json}");

    let out = run(run_spec.clone());
    assert!(out.panicked(), "{}", out.describe());
    let (code, json) = panic_gate(&run_spec.panic_dir, &home);
    assert_eq!(code, Some(2), "{json}");
    assert_eq!(json["exit_code"], 2, "{json}");
    assert_eq!(json["recent_panics_24h"], 1, "{json}");
}

#[test]
fn residency_churn_panics_with_the_group_memory_signature() {
    let scratch = tempfile::tempdir().unwrap();
    let out = run(WorkloadRun::new(Workload::ResidencyChurn, scratch.path()));
    let text = out.report_text();
    assert!(
        text.contains("@IOGPUGroupMemory.cpp:219"),
        "{}",
        out.describe()
    );
}

#[test]
fn the_report_matches_the_layout_of_the_reconstructed_fixture() {
    let fixture = sim_metal::workspace_root()
        .join("..")
        .join("shared/fixtures/panics/64-ips-reconstructed-iogpu-completememory-550-mlx3186-ronm92130.ips");
    let Ok(fixture_text) = std::fs::read_to_string(&fixture) else {
        eprintln!("skipping: {} not present", fixture.display());
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let out = run(WorkloadRun::new(Workload::ExitInflight, scratch.path()));
    let (ours_header, ours_body) = parse_ips(&out.report_text());
    let (fix_header, fix_body) = parse_ips(&fixture_text);
    for key in fix_header.as_object().unwrap().keys() {
        assert!(ours_header.get(key).is_some(), "header lacks {key}");
    }
    for key in fix_body.as_object().unwrap().keys() {
        assert!(ours_body.get(key).is_some(), "body lacks {key}");
    }
    let first_line = |v: &Value| {
        v["panicString"]
            .as_str()
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .split_once("): ")
            .unwrap()
            .1
            .to_string()
    };
    assert_eq!(first_line(&ours_body), first_line(&fix_body));
}

#[test]
fn the_control_workload_runs_clean() {
    let scratch = tempfile::tempdir().unwrap();
    let out = run(WorkloadRun::new(Workload::Steady, scratch.path()));
    assert!(out.clean(), "{}", out.describe());
    assert!(out.stdout.contains("workload steady: done"));
}

#[test]
fn oversize_prefill_reaches_the_driver_out_of_memory_path_and_is_caught() {
    let scratch = tempfile::tempdir().unwrap();
    let out = run(WorkloadRun::new(Workload::OversizePrefill, scratch.path()));
    assert!(
        out.stderr.contains("exceeds the working set")
            && out.stderr.contains("[malloc] Unable to allocate"),
        "{}",
        out.describe()
    );
    assert!(out.panicked(), "{}", out.describe());

    // With nothing in flight the same allocation is a plain refusal.
    let scratch = tempfile::tempdir().unwrap();
    let out =
        run(WorkloadRun::new(Workload::OversizePrefill, scratch.path()).arg("decode-steps", "0"));
    assert!(out.clean(), "{}", out.describe());
    assert!(out
        .stdout
        .contains("caught RuntimeError: [malloc] Unable to allocate"));
}

/// The levers the guard pulls, applied by hand in the workload: each one is
/// enough under the model. These pin the model to Metal's semantics so the
/// guarded tests measure the guard, not a special case.
#[test]
fn each_guard_lever_by_hand_prevents_its_bug() {
    let cases: Vec<(&str, WorkloadRun)> = vec![
        ("retained command buffers", {
            let s = tempfile::tempdir().unwrap().keep();
            WorkloadRun::new(Workload::ConcurrentTrim, &s).arg("retained", "1")
        }),
        ("pause between loads", {
            let s = tempfile::tempdir().unwrap().keep();
            WorkloadRun::new(Workload::LoadUnload, &s).arg("pause-ms", "250")
        }),
        ("removals after completion", {
            let s = tempfile::tempdir().unwrap().keep();
            WorkloadRun::new(Workload::ResidencyChurn, &s).arg("defer", "1")
        }),
        ("no wired residency", {
            let s = tempfile::tempdir().unwrap().keep();
            WorkloadRun::new(Workload::ResidencyChurn, &s).arg("wired-limit-mb", "0")
        }),
        ("drain before exit", {
            let s = tempfile::tempdir().unwrap().keep();
            WorkloadRun::new(Workload::ExitInflight, &s).arg("drain", "1")
        }),
    ];
    for (lever, case) in cases {
        let out = run(case.clone());
        let _ = std::fs::remove_dir_all(case.panic_dir.parent().unwrap());
        assert!(out.clean(), "{lever}: {}", out.describe());
    }
}

#[test]
fn the_inherited_method_check_catches_a_replaced_superclass_method() {
    let scratch = tempfile::tempdir().unwrap();
    let out = run(WorkloadRun::new(Workload::Steady, scratch.path()).arg("break-superclass", "1"));
    assert_eq!(out.status.code(), Some(3), "{}", out.describe());
    assert!(
        out.stderr
            .contains("inherited-method trap: -[SimIOGPUMetalCommandBuffer commit]"),
        "{}",
        out.describe()
    );
}

#[test]
fn retained_references_alone_do_not_stop_back_to_back_loads() {
    let scratch = tempfile::tempdir().unwrap();
    let out = run(WorkloadRun::new(Workload::LoadUnload, scratch.path()).arg("retained", "1"));
    assert!(out.panicked(), "{}", out.describe());
}
