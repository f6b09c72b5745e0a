//! Ring 2 under valgrind: guarded runs of the workloads that exercise every
//! hook (heap, copy and no-copy buffers with a deallocator block, retained
//! command buffers with our completion blocks, deferred
//! residency removals on the reaper thread, the size refusal, the exit drain)
//! show no invalid access and no definite leak. Only GCC libobjc's own
//! permanent allocations are suppressed (`tests/sim-metal/valgrind.supp`).
//! Skipped, with a note, where valgrind is not installed.

use sim_metal::{artifacts, build_inject_library, valgrind_suppressions, Workload, WorkloadRun};
use std::process::{Command, Stdio};
use std::time::Duration;

fn valgrind_available() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn guarded_workloads_are_clean_under_valgrind() {
    if !valgrind_available() {
        eprintln!("skipping: valgrind is not installed (apt-get install valgrind)");
        return;
    }
    let built = artifacts().unwrap_or_else(|e| panic!("{e}"));
    let guard = build_inject_library().unwrap_or_else(|e| panic!("{e}"));
    for workload in [
        Workload::Steady,
        Workload::ConcurrentTrim,
        Workload::ResidencyChurn,
        Workload::OversizePrefill,
        Workload::ExitInflight,
    ] {
        let scratch = tempfile::tempdir().unwrap();
        let log = scratch.path().join("valgrind.log");
        let mut options = vec![
            "--error-exitcode=99".to_string(),
            "--leak-check=full".to_string(),
            "--errors-for-leak-kinds=definite".to_string(),
            "--track-origins=no".to_string(),
        ];
        options.push(format!(
            "--suppressions={}",
            valgrind_suppressions().display()
        ));
        options.push(format!("--log-file={}", log.display()));
        let mut run = WorkloadRun::new(workload, scratch.path())
            .guarded(&guard)
            .wrapped("valgrind", options);
        run.timeout = Duration::from_secs(300);
        let out = run.run(built).expect("start valgrind");
        let report = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            out.clean(),
            "{workload} under valgrind: {}\n--- valgrind\n{report}\n--- breadcrumbs\n{}",
            out.describe(),
            run.breadcrumbs()
        );
        assert!(
            report.contains("ERROR SUMMARY: 0 errors"),
            "{workload}: {report}"
        );
    }
}
