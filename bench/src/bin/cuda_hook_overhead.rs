//! Per-call cost of the CUDA hooks, without a GPU: the fake driver in
//! `tests/fake-cuda/` and its client's `churn` scenario (cuMemAllocAsync +
//! cuMemFreeAsync pairs, a graph launch and a host function every 64),
//! unguarded and guarded (LD_PRELOAD), alternating rounds in one run.
//! Prints the nanoseconds the guard adds per hooked call and the ratio.
//!
//!   cargo build --release -p metal-guard-inject
//!   cargo run --release -p metal-guard-bench --bin cuda_hook_overhead [ROUNDS] [PAIRS]
//!
//! `METALGUARD_INJECT_LIB` overrides the library (default
//! `target/release/libmetal_guard_inject.so`). The GPU counterpart, inside
//! real MLX, is `bench/gpu-overhead/run.sh`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn gcc(args: &[&str]) -> Result<(), String> {
    let out = Command::new("gcc")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run gcc ({e}); install it: apt-get install gcc"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "gcc {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn churn(dir: &Path, lib: Option<&Path>, pairs: u64) -> Result<f64, String> {
    let mut cmd = Command::new(dir.join("client"));
    cmd.args(["churn", &pairs.to_string()])
        .env("LD_LIBRARY_PATH", dir)
        .env("METALGUARD_BREADCRUMB_PATH", dir.join("breadcrumbs.log"));
    if let Some(lib) = lib {
        cmd.env("LD_PRELOAD", lib);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run the client: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("client failed: {text}"));
    }
    if let Some(n) = text
        .lines()
        .find_map(|l| l.strip_prefix("churn_heap_allocations="))
    {
        if lib.is_some() && n != "0" {
            return Err(format!("the guarded hot path allocated {n} times"));
        }
    }
    text.lines()
        .find_map(|l| l.strip_prefix("churn_ns_per_pair="))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("client printed no churn_ns_per_pair: {text}"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(7);
    let pairs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let lib = std::env::var_os("METALGUARD_INJECT_LIB")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/release/libmetal_guard_inject.so"));
    if !lib.exists() {
        return Err(format!(
            "{} not found; run: cargo build --release -p metal-guard-inject",
            lib.display()
        ));
    }
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = tmp.path();
    let src = root.join("tests/fake-cuda");
    let s = |n: &str| src.join(n).to_string_lossy().into_owned();
    let o = |n: &str| dir.join(n).to_string_lossy().into_owned();
    gcc(&[
        "-O2",
        "-shared",
        "-fPIC",
        "-o",
        &o("libcuda.so.1"),
        &s("fake_cuda.c"),
        "-lpthread",
    ])?;
    gcc(&["-O2", "-o", &o("client"), &s("client.c"), "-ldl"])?;

    let (mut plain, mut guarded) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate which goes first so drift cancels.
        if round % 2 == 0 {
            plain.push(churn(dir, None, pairs)?);
            guarded.push(churn(dir, Some(&lib), pairs)?);
        } else {
            guarded.push(churn(dir, Some(&lib), pairs)?);
            plain.push(churn(dir, None, pairs)?);
        }
    }
    let (p, g) = (median(plain), median(guarded));
    // Two hooked calls per pair, plus one graph launch and one host function per 64 pairs.
    let calls_per_pair = 2.0 + 2.0 / 64.0;
    println!(
        "cuda-hook-overhead (fake driver, {rounds} alternating rounds of {pairs} alloc/free pairs, medians): \
         unguarded={p:.1} ns/pair guarded={g:.1} ns/pair added={:.1} ns per hooked call throughput ratio={:.3} \
         heap allocations on the guarded hot path=0",
        (g - p) / calls_per_pair,
        p / g
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
