//! `overhead`: what the guard costs on the hot path, measured side by side
//! in one run. A churn client (`bench/churn/churn.m`) drives the simulated
//! Metal driver; each measurement runs it twice as a child process, once
//! bare and once with `libmetal_guard_inject.so` preloaded, alternating,
//! and keeps the median of each.
//!
//! Three loops:
//! - `alloc`: allocate + free (2 hooked calls per iteration), the fast path;
//! - `cycle`: allocate, bind, commit, complete, free (5 hooked calls plus
//!   our completion handler per iteration, with the unretained command
//!   buffer upgraded to retained);
//! - `residency`: add, commit, remove, commit on a residency set (4 hooked
//!   calls per iteration; in the default `defer` mode the removal goes into
//!   the reaper's ring and the next add of the same buffer cancels it).
//!
//! Output: per loop, ns per iteration each way (median, and the spread of
//! the runs: lowest..highest), ns added per hooked call, and the throughput
//! ratio (guarded / unguarded); then one verdict line against the targets
//! (<= 50 ns per hooked call on the fast path and on the residency calls,
//! throughput ratio >= 0.95 on the full cycle).
//!
//! Run: `cargo build --release -p metal-guard-inject && cargo run --release -p metal-guard-bench --bin overhead`

use clap::Parser;
use sim_metal::{artifacts, workspace_root};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

#[derive(Parser, Debug)]
#[command(
    name = "overhead",
    about = "Guard overhead per hooked call, guarded vs unguarded."
)]
struct Args {
    /// Iterations of the fast-path (alloc/free) loop per run.
    #[arg(long, default_value_t = 200_000)]
    alloc_iterations: u64,
    /// Iterations of the full cycle loop per run.
    #[arg(long, default_value_t = 5_000)]
    cycle_iterations: u64,
    /// Iterations of the residency loop per run.
    #[arg(long, default_value_t = 200_000)]
    residency_iterations: u64,
    /// Runs per side (the median is kept).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=1000))]
    runs: u32,
    /// The guard library (default: target/release, else target/debug).
    #[arg(long, value_name = "PATH")]
    guard: Option<PathBuf>,
    /// A prebuilt churn client (skips building the driver and the client:
    /// for machines without clang; its libraries must be on LD_LIBRARY_PATH).
    #[arg(long, value_name = "PATH")]
    churn: Option<PathBuf>,
}

const ALLOC_HOOKED_CALLS: f64 = 2.0;
const CYCLE_HOOKED_CALLS: f64 = 6.0;
const RESIDENCY_HOOKED_CALLS: f64 = 4.0;

fn objc_dir() -> Option<PathBuf> {
    let base = Path::new("/usr/lib/gcc/x86_64-linux-gnu");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(base)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("include/objc/runtime.h").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn build_churn(sim_dir: &Path) -> Result<PathBuf, String> {
    let root = workspace_root();
    let src = root.join("bench/churn/churn.m");
    let header_dir = root.join("tests/sim-metal");
    let out = sim_dir.join("churn");
    let gcc = objc_dir().ok_or("GCC's Objective-C headers are missing; install them with `apt-get install clang libobjc-12-dev libblocksruntime-dev`")?;
    let status = Command::new("clang")
        .args(["-fobjc-runtime=gcc", "-fblocks", "-O2", "-idirafter"])
        .arg(gcc.join("include"))
        .arg("-I")
        .arg(&header_dir)
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .arg(format!("-L{}", sim_dir.display()))
        .arg("-lsim_metal")
        .arg(format!("-Wl,-rpath,{}", sim_dir.display()))
        .arg(format!("-L{}", gcc.display()))
        .args(["-lobjc", "-lBlocksRuntime", "-lpthread"])
        .status()
        .map_err(|e| format!("cannot run clang: {e}"))?;
    if !status.success() {
        return Err(format!("clang failed to build {}", src.display()));
    }
    Ok(out)
}

fn guard_library(explicit: Option<PathBuf>) -> Option<PathBuf> {
    explicit.or_else(|| {
        let target = sim_metal::target_dir();
        ["release", "debug"]
            .iter()
            .map(|p| target.join(p).join("libmetal_guard_inject.so"))
            .find(|p| p.is_file())
    })
}

fn run_once(
    churn: &Path,
    mode: &str,
    n: u64,
    guard: Option<&Path>,
    scratch: &Path,
) -> Result<f64, String> {
    let mut cmd = Command::new(churn);
    cmd.args([mode, &n.to_string()])
        .env_remove("LD_PRELOAD")
        .env("SIM_METAL_GPU_DELAY_US", "0")
        .env("HOME", scratch)
        .env(
            "METALGUARD_BREADCRUMB_PATH",
            scratch.join("breadcrumbs.log"),
        )
        .env("METALGUARD_PANIC_REPORT_DIRS", scratch.join("no-reports"))
        .env("METALGUARD_SIM_PANIC_DIR", scratch.join("panics"));
    if let Some(g) = guard {
        cmd.env("LD_PRELOAD", g);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", churn.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "churn {mode} ({}) failed ({}): {}{}",
            if guard.is_some() {
                "guarded"
            } else {
                "unguarded"
            },
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("ns_per_iter="))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("churn printed no ns_per_iter: {stdout}"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

struct Measured {
    bare: f64,
    guarded: f64,
    /// Lowest and highest run of each side.
    bare_spread: (f64, f64),
    guarded_spread: (f64, f64),
}

fn spread(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

fn measure(
    churn: &Path,
    mode: &str,
    n: u64,
    runs: u32,
    guard: &Path,
    scratch: &Path,
) -> Result<Measured, String> {
    let (mut bare, mut guarded) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        bare.push(run_once(churn, mode, n, None, scratch)?);
        guarded.push(run_once(churn, mode, n, Some(guard), scratch)?);
    }
    Ok(Measured {
        bare_spread: spread(&bare),
        guarded_spread: spread(&guarded),
        bare: median(bare),
        guarded: median(guarded),
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = (|| -> Result<bool, String> {
        let churn = match args.churn.clone() {
            Some(prebuilt) => prebuilt,
            None => build_churn(&artifacts().map_err(|e| e.to_string())?.dir)?,
        };
        let guard = guard_library(args.guard.clone()).ok_or(
            "libmetal_guard_inject.so not found; build it with `cargo build --release -p metal-guard-inject`",
        )?;
        let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
        println!("guard: {}", guard.display());
        let alloc = measure(
            &churn,
            "alloc",
            args.alloc_iterations,
            args.runs,
            &guard,
            scratch.path(),
        )?;
        let cycle = measure(
            &churn,
            "cycle",
            args.cycle_iterations,
            args.runs,
            &guard,
            scratch.path(),
        )?;
        let residency = measure(
            &churn,
            "residency",
            args.residency_iterations,
            args.runs,
            &guard,
            scratch.path(),
        )?;
        let per_call = |m: &Measured, calls: f64| (m.guarded - m.bare) / calls;
        let ratio = |m: &Measured| m.bare / m.guarded;
        for (name, m, calls) in [
            ("alloc (fast path)", &alloc, ALLOC_HOOKED_CALLS),
            (
                "cycle (alloc+bind+commit+complete+free)",
                &cycle,
                CYCLE_HOOKED_CALLS,
            ),
            (
                "residency (add+commit+remove+commit)",
                &residency,
                RESIDENCY_HOOKED_CALLS,
            ),
        ] {
            println!(
                "{name}: unguarded {:.0} ns/iter [{:.0}..{:.0}], guarded {:.0} ns/iter [{:.0}..{:.0}], added {:.1} ns per hooked call ({calls} per iter), throughput ratio {:.3}",
                m.bare,
                m.bare_spread.0,
                m.bare_spread.1,
                m.guarded,
                m.guarded_spread.0,
                m.guarded_spread.1,
                per_call(m, calls),
                ratio(m)
            );
        }
        let fast_ns = per_call(&alloc, ALLOC_HOOKED_CALLS);
        let cycle_ratio = ratio(&cycle);
        let residency_ns = per_call(&residency, RESIDENCY_HOOKED_CALLS);
        let ok = fast_ns <= 50.0 && cycle_ratio >= 0.95 && residency_ns <= 50.0;
        println!(
            "overhead: fast_path_ns_per_call={fast_ns:.1} (target <= 50) cycle_throughput_ratio={cycle_ratio:.3} (target >= 0.95) residency_ns_per_call={residency_ns:.1} (target <= 50) {}",
            if ok { "PASS" } else { "MISS" }
        );
        Ok(ok)
    })();
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("overhead: {e}");
            ExitCode::from(2)
        }
    }
}
