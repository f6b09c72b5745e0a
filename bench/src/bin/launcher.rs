//! `launcher`: start-up cost of the launcher, side by side in one run.
//!
//! Median wall time of `-c pass` through
//! 1. the interpreter itself (bare),
//! 2. our `mlx-safe-python` (gate + injection + handshake watcher),
//! 3. the Python tool's `mlx-safe-python` (PyPI `metal-guard`, installed into a
//!    throwaway virtual environment by this benchmark),
//!
//! all three running the same interpreter (`MLX_SAFE_PYTHON_BIN`), interleaved
//! round by round so load on the machine hits them alike. Target: ours adds
//! at most 5 ms to bare Python.
//!
//! ```sh
//! cargo build --release -p metal-guard-inject
//! cargo build --release -p metal-guard --bin mlx-safe-python
//! cargo run --release -p metal-guard-bench --bin launcher -- --rounds 40
//! ```

use clap::Parser;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Start-up cost: bare python vs our mlx-safe-python vs the Python tool's")]
struct Args {
    /// Timed rounds (each runs every variant once).
    #[arg(long, default_value_t = 40)]
    rounds: usize,
    /// Our launcher (default: `mlx-safe-python` beside this benchmark, i.e. target/release).
    #[arg(long)]
    launcher: Option<PathBuf>,
    /// The interpreter to run (default: `python3` on PATH, resolved to the real binary).
    #[arg(long)]
    python: Option<PathBuf>,
    /// The Python tool to install: a PyPI requirement, or a wheel file (installed offline).
    #[arg(long, default_value = "metal-guard==1.1.0")]
    theirs: String,
    /// Skip installing the Python tool.
    #[arg(long)]
    no_theirs: bool,
}

struct Variant {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
}

fn main() {
    let args = Args::parse();
    let scratch = tempfile::tempdir().expect("a temporary folder");
    let home = scratch.path().join("home");
    let reports = scratch.path().join("reports");
    let tmp = scratch.path().join("tmp");
    for d in [&home, &reports, &tmp] {
        std::fs::create_dir_all(d).expect("scratch folders");
    }

    let launcher = args.launcher.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("mlx-safe-python")))
            .unwrap_or_else(|| PathBuf::from("mlx-safe-python"))
    });
    if !launcher.is_file() {
        eprintln!(
            "launcher bench: {} not found; build it with `cargo build --release -p metal-guard --bin mlx-safe-python` and `cargo build --release -p metal-guard-inject`",
            launcher.display()
        );
        std::process::exit(2);
    }
    let python = args.python.clone().unwrap_or_else(real_python);
    println!("interpreter: {}", python.display());
    println!("ours:        {}", launcher.display());

    let mut variants = vec![
        Variant {
            name: "python3 -c pass",
            program: python.clone(),
            args: vec!["-c".into(), "pass".into()],
        },
        Variant {
            name: "ours: mlx-safe-python -c pass",
            program: launcher.clone(),
            args: vec!["-c".into(), "pass".into()],
        },
    ];
    if args.no_theirs {
        println!("theirs:      skipped (--no-theirs)");
    } else {
        match install_theirs(&python, scratch.path(), &args.theirs) {
            Ok(theirs) => {
                println!("theirs:      {} ({})", theirs.display(), args.theirs);
                variants.push(Variant {
                    name: "theirs: mlx-safe-python -c pass",
                    program: theirs,
                    args: vec!["-c".into(), "pass".into()],
                });
            }
            Err(why) => println!("theirs:      unavailable ({why})"),
        }
    }

    let run_once = |v: &Variant| -> Duration {
        let started = Instant::now();
        let status = Command::new(&v.program)
            .args(&v.args)
            .env("HOME", &home)
            .env("TMPDIR", &tmp)
            .env("METALGUARD_PANIC_REPORT_DIRS", &reports)
            .env("MLX_SAFE_PYTHON_BIN", &python)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("the variant starts");
        let took = started.elapsed();
        assert!(status.success(), "{} failed: {status}", v.name);
        took
    };

    // Confirm ours really injects (otherwise the number means nothing).
    let check = Command::new(&launcher)
        .arg("--check")
        .env("HOME", &home)
        .env("TMPDIR", &tmp)
        .env("METALGUARD_PANIC_REPORT_DIRS", &reports)
        .env("MLX_SAFE_PYTHON_BIN", &python)
        .output()
        .expect("ours --check runs");
    let check_text = String::from_utf8_lossy(&check.stdout);
    if !check.status.success() {
        eprintln!("launcher bench: our launcher is not ready (`mlx-safe-python --check` exit {}):\n{check_text}", check.status);
        std::process::exit(2);
    }
    if let Some(line) = check_text
        .lines()
        .find(|l| l.trim_start().starts_with("probe:"))
    {
        println!("ours --check {}", line.trim());
    }

    for _ in 0..3 {
        for v in &variants {
            run_once(v);
        }
    }
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
    for round in 0..args.rounds {
        // Rotate the order each round so no variant always runs first.
        for k in 0..variants.len() {
            let i = (round + k) % variants.len();
            samples[i].push(run_once(&variants[i]));
        }
    }
    let medians: Vec<Duration> = samples.iter_mut().map(|s| median(s)).collect();
    let bare = medians[0];
    println!();
    println!(
        "{:<34} {:>10} {:>12} {:>8}",
        "variant", "median", "vs bare", "ratio"
    );
    for (v, m) in variants.iter().zip(&medians) {
        let delta = m.as_secs_f64() * 1e3 - bare.as_secs_f64() * 1e3;
        println!(
            "{:<34} {:>8.2}ms {:>+10.2}ms {:>7.2}x",
            v.name,
            m.as_secs_f64() * 1e3,
            delta,
            m.as_secs_f64() / bare.as_secs_f64()
        );
    }
    let ours_added = medians[1].as_secs_f64() * 1e3 - bare.as_secs_f64() * 1e3;
    println!();
    println!(
        "launcher: ours adds {ours_added:.2} ms to bare python (target <= 5 ms: {}){}",
        if ours_added <= 5.0 { "met" } else { "NOT met" },
        medians
            .get(2)
            .map(|t| format!(
                "; theirs adds {:.2} ms",
                t.as_secs_f64() * 1e3 - bare.as_secs_f64() * 1e3
            ))
            .unwrap_or_default()
    );
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// `python3` on PATH, resolved through shims to the interpreter itself.
fn real_python() -> PathBuf {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 on PATH");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A throwaway venv with the Python tool; returns its `mlx-safe-python`.
fn install_theirs(python: &Path, scratch: &Path, requirement: &str) -> Result<PathBuf, String> {
    let venv = scratch.join("theirs-venv");
    let status = Command::new(python)
        .args(["-m", "venv"])
        .arg(&venv)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("python -m venv: {e}"))?;
    if !status.success() {
        return Err("python -m venv failed".into());
    }
    let out = Command::new(venv.join("bin/python"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            requirement,
        ])
        .output()
        .map_err(|e| format!("pip: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "pip install {requirement} failed: {}",
            err.lines().last().unwrap_or("").trim()
        ));
    }
    let exe = venv.join("bin/mlx-safe-python");
    if exe.is_file() {
        Ok(exe)
    } else {
        Err(format!("{requirement} installed no mlx-safe-python script"))
    }
}
