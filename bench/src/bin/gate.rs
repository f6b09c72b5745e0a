//! `metal-guard panic-gate` and `metal-guard status --json` against the
//! Python tool (PyPI `metal-guard==1.1.0`, installed by this benchmark into a
//! throwaway virtual environment under `target/bench-python/`), on the same
//! report folder and the same temporary HOME, side by side in one run.
//!
//! Run: `cargo run --release -p metal-guard-bench --bin gate`
//! (set `METAL_GUARD_BIN` to time a particular binary). Target: ours >= 20x faster.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const PYTHON_PACKAGE: &str = "metal-guard==1.1.0";
const RUNS_OURS: usize = 30;
const RUNS_THEIRS: usize = 10;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

/// Our release binary, built if missing.
fn our_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("METAL_GUARD_BIN") {
        return Ok(PathBuf::from(p));
    }
    let bin = target_dir().join("release").join("metal-guard");
    // Always ask cargo: a no-op when the binary is fresh, a rebuild when it is stale.
    {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let st = Command::new(cargo)
            .args([
                "build",
                "--release",
                "-p",
                "metal-guard",
                "--bin",
                "metal-guard",
            ])
            .current_dir(workspace())
            .status()
            .map_err(|e| format!("cannot run cargo ({e})"))?;
        if !st.success() {
            return Err("cargo build --release -p metal-guard failed".into());
        }
    }
    Ok(bin)
}

/// The Python tool's CLI in a venv of its own, installed on first use.
fn python_tool() -> Result<PathBuf, String> {
    let venv = target_dir().join("bench-python").join("venv");
    let cli = venv.join("bin").join("metal-guard");
    if cli.is_file() {
        return Ok(cli);
    }
    let python = ["python3", "python"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .ok_or("no python3 on PATH")?;
    eprintln!(
        "creating {} and installing {PYTHON_PACKAGE} ...",
        venv.display()
    );
    let st = Command::new(python)
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .map_err(|e| format!("cannot run {python} -m venv ({e})"))?;
    if !st.success() {
        return Err(format!("{python} -m venv {} failed", venv.display()));
    }
    let out = Command::new(venv.join("bin").join("pip"))
        .args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            PYTHON_PACKAGE,
        ])
        .output()
        .map_err(|e| format!("cannot run pip ({e})"))?;
    if !out.status.success() || !cli.is_file() {
        return Err(format!(
            "pip install {PYTHON_PACKAGE} failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("no output")
        ));
    }
    Ok(cli)
}

/// A HOME whose `Library/Logs/DiagnosticReports` (a default report folder
/// of both tools) holds the fixture panics: IOGPU `.ips` reports from an
/// hour ago and the text reports as `panic-full-*.panic`.
fn make_home() -> tempfile::TempDir {
    let home = tempfile::tempdir().expect("temp dir");
    let reports = home.path().join("Library/Logs/DiagnosticReports");
    std::fs::create_dir_all(&reports).unwrap();
    let fixtures = workspace().join("../shared/fixtures/panics");
    let hour_ago = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    let stamp = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.00 +0000",
        hour_ago.year(),
        hour_ago.month() as u8,
        hour_ago.day(),
        hour_ago.hour(),
        hour_ago.minute(),
        hour_ago.second()
    );
    // File names carry a time too (Apple's naming); keep them recent so
    // neither tool skips a file by its name.
    let name_time = |i: usize| {
        let t = hour_ago + time::Duration::seconds(i as i64);
        format!(
            "{:04}-{:02}-{:02}-{:02}{:02}{:02}",
            t.year(),
            t.month() as u8,
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    };
    let Ok(entries) = std::fs::read_dir(&fixtures) else {
        eprintln!(
            "note: {} not found; timing an empty report folder",
            fixtures.display()
        );
        return home;
    };
    for (i, e) in entries.filter_map(|e| e.ok()).enumerate() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        if name.ends_with(".ips") {
            let header: serde_json::Value = match text.lines().next().map(serde_json::from_str) {
                Some(Ok(v)) => v,
                _ => continue,
            };
            let old = header["timestamp"].as_str().unwrap_or("").to_string();
            let text = if old.is_empty() {
                text
            } else {
                text.replace(&old, &stamp)
            };
            std::fs::write(reports.join(format!("Kernel-{}.ips", name_time(i))), text).unwrap();
        } else if name.ends_with(".txt") {
            std::fs::write(
                reports.join(format!("panic-full-{}.panic", name_time(i))),
                text,
            )
            .unwrap();
        }
    }
    home
}

struct Timing {
    median_ms: f64,
    exit_code: Option<i32>,
}

fn time_command(program: &Path, args: &[&str], home: &Path, runs: usize) -> Timing {
    let run = || {
        let mut c = Command::new(program);
        c.args(args)
            .env("HOME", home)
            .env_remove("METALGUARD_PANIC_REPORT_DIRS")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, _) in std::env::vars() {
            if k.starts_with("METALGUARD_") || k == "MLX_LOCK_PATH" {
                c.env_remove(k);
            }
        }
        let start = Instant::now();
        let st = c.status().expect("the command starts");
        (start.elapsed().as_secs_f64() * 1000.0, st.code())
    };
    let (_, exit_code) = run(); // warm-up (page cache, pyc files)
    let mut samples: Vec<f64> = (0..runs).map(|_| run().0).collect();
    samples.sort_by(|a, b| a.total_cmp(b));
    Timing {
        median_ms: samples[samples.len() / 2],
        exit_code,
    }
}

fn main() {
    let ours = match our_binary() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cannot get our binary: {e}");
            std::process::exit(1);
        }
    };
    let theirs = python_tool();
    if let Err(e) = &theirs {
        println!("PYTHON TOOL NOT AVAILABLE: {e}");
        println!("(timing ours only; rerun with network access to PyPI for the comparison)");
    }
    println!("report folder: $HOME/Library/Logs/DiagnosticReports of a temporary HOME, holding the fixture panics (IOGPU .ips from an hour ago, text reports as panic-full-*.panic)");
    println!(
        "{:<22} {:>12} {:>14} {:>9}   exit codes (ours / python)",
        "command", "ours (ms)", "python (ms)", "ratio"
    );
    for args in [&["panic-gate"][..], &["status", "--json"][..]] {
        let label = args.join(" ");
        // Each tool gets a fresh copy of the same state, so neither sees the other's files.
        let our_home = make_home();
        let o = time_command(&ours, args, our_home.path(), RUNS_OURS);
        match &theirs {
            Ok(py) => {
                let py_home = make_home();
                let p = time_command(py, args, py_home.path(), RUNS_THEIRS);
                println!(
                    "{label:<22} {:>12.2} {:>14.2} {:>8.1}x   {:?} / {:?}",
                    o.median_ms,
                    p.median_ms,
                    p.median_ms / o.median_ms,
                    o.exit_code,
                    p.exit_code
                );
            }
            Err(_) => println!(
                "{label:<22} {:>12.2} {:>14} {:>9}   {:?} / -",
                o.median_ms, "n/a", "n/a", o.exit_code
            ),
        }
    }
    println!("target: ours >= 20x faster. Medians of {RUNS_OURS} (ours) and {RUNS_THEIRS} (python) runs after one warm-up.");
    println!("Exit codes differ where the Python tool misses `.ips` reports (its defect 1): ours 2 = cooldown.");
}
