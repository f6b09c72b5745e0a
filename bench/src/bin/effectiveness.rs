//! `effectiveness`: runs every panicking workload of the simulated Metal
//! driver N times unguarded and N times with the guard preloaded, and counts
//! the simulated kernel panics each way.
//!
//! One line per workload, then the verdict line
//! `effectiveness: unguarded_panics=A/N guarded_panics=B/N`, where A is the
//! fewest unguarded panics of any workload and B the most guarded panics of
//! any workload (so "A >= 18 and B = 0 at N = 20" holds for every workload).
//!
//! Run: `cargo build -p metal-guard-inject && cargo run -p metal-guard-bench --bin effectiveness -- --runs 20`

use clap::Parser;
use sim_metal::{artifacts, inject_library, Workload, WorkloadRun};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "effectiveness",
    about = "Count simulated kernel panics per workload, unguarded vs guarded."
)]
struct Args {
    /// Runs per workload and mode.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    runs: u32,
    /// The guard library to preload (default: target/debug/libmetal_guard_inject.so).
    #[arg(long, value_name = "PATH")]
    guard: Option<PathBuf>,
    /// Only these workloads (repeatable; default: every panicking workload).
    #[arg(long = "workload", value_name = "NAME")]
    workloads: Vec<String>,
}

#[derive(Default)]
struct Tally {
    panics: u32,
    clean: u32,
    other: u32,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let built = match artifacts() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("effectiveness: {e}");
            return ExitCode::from(1);
        }
    };
    let guard = match args.guard.clone().or_else(inject_library) {
        Some(path) if path.is_file() => path,
        Some(path) => {
            eprintln!(
                "effectiveness: guard library {} not found; build it with `cargo build -p metal-guard-inject`",
                path.display()
            );
            return ExitCode::from(1);
        }
        None => {
            eprintln!(
                "effectiveness: target/debug/libmetal_guard_inject.so not found; build it with `cargo build -p metal-guard-inject` or pass --guard PATH"
            );
            return ExitCode::from(1);
        }
    };
    let mut selected: Vec<Workload> = Vec::new();
    for name in &args.workloads {
        match Workload::PANICKING.iter().find(|w| w.name() == name) {
            Some(w) => selected.push(*w),
            None => {
                let names: Vec<&str> = Workload::PANICKING.iter().map(|w| w.name()).collect();
                eprintln!(
                    "effectiveness: unknown workload `{name}`; choose from {}",
                    names.join(", ")
                );
                return ExitCode::from(64);
            }
        }
    }
    if selected.is_empty() {
        selected = Workload::PANICKING.to_vec();
    }

    let n = args.runs;
    let mut fewest_unguarded = u32::MAX;
    let mut most_guarded = 0;
    for workload in selected {
        let mut tallies = [Tally::default(), Tally::default()];
        for (mode, tally) in tallies.iter_mut().enumerate() {
            for _ in 0..n {
                let scratch = match tempfile::tempdir() {
                    Ok(d) => d,
                    Err(e) => {
                        eprintln!("effectiveness: cannot create a temporary folder: {e}");
                        return ExitCode::from(1);
                    }
                };
                let mut run = WorkloadRun::new(workload, scratch.path());
                if mode == 1 {
                    run = run.guarded(&guard);
                }
                match run.run(built) {
                    Ok(out) if out.panicked() => tally.panics += 1,
                    Ok(out) if out.clean() => tally.clean += 1,
                    Ok(out) => {
                        tally.other += 1;
                        eprintln!(
                            "effectiveness: {workload} ({}) neither panicked nor finished cleanly: {}",
                            if mode == 1 { "guarded" } else { "unguarded" },
                            out.describe()
                        );
                    }
                    Err(e) => {
                        eprintln!("effectiveness: cannot start {workload}: {e}");
                        return ExitCode::from(1);
                    }
                }
            }
        }
        let [unguarded, guarded] = tallies;
        println!(
            "{:<17} unguarded: {:>3}/{n} panicked ({} clean, {} other)   guarded: {:>3}/{n} panicked ({} clean, {} other)",
            workload.name(),
            unguarded.panics,
            unguarded.clean,
            unguarded.other,
            guarded.panics,
            guarded.clean,
            guarded.other
        );
        fewest_unguarded = fewest_unguarded.min(unguarded.panics);
        most_guarded = most_guarded.max(guarded.panics);
    }
    println!(
        "effectiveness: unguarded_panics={fewest_unguarded}/{n} guarded_panics={most_guarded}/{n}"
    );
    ExitCode::SUCCESS
}
