//! What `import metal_guard` costs a Python process, side by side in one run:
//! bare `python -c pass`, ours, and the Python tool (`metal-guard==1.1.0` from
//! PyPI, installed by this benchmark into a throwaway virtual environment).
//!
//! `cargo run --release -p metal-guard-bench --bin python_import [-- --runs N]`
//!
//! Both run in fresh virtual environments made from the same interpreter (so
//! neither pays for the base interpreter's site-packages), installed as pip
//! would, byte-compiled: ours is the repository's `python/metal_guard/` (the
//! files the wheel carries), the Python tool comes from PyPI. `MG_BENCH_PYTHON` picks the interpreter (default `python3`,
//! resolved to the real binary so a version manager's shim is not timed);
//! `MG_BENCH_SKIP_PYPI=1` skips the Python tool (no network).
//! Target (issue 7): ours adds at most 10 ms to bare Python.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;

/// The Python tool's release users switch from (compat.md).
const PYTHON_TOOL_REQUIREMENT: &str = "metal-guard==1.1.0";

#[derive(Parser, Debug)]
#[command(about = "Median cost of `import metal_guard`: bare Python, ours, the Python tool.")]
struct Args {
    /// Rounds; each round runs every variant once, bare and import back to back.
    #[arg(long, default_value_t = 30)]
    runs: usize,
}

/// One thing to time: a program and its arguments, with extra environment.
struct Variant {
    label: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Variant {
    fn run_once(&self) -> Result<Duration, String> {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let start = Instant::now();
        let output = command
            .output()
            .map_err(|err| format!("could not run {}: {err}", self.program.display()))?;
        let elapsed = start.elapsed();
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let last = stderr.lines().last().unwrap_or("(no message)");
            return Err(format!(
                "`{}` failed ({}): {last}",
                self.label, output.status
            ));
        }
        Ok(elapsed)
    }
}

/// The interpreter binary itself: `python3` on PATH is often a version
/// manager's shell-script shim (pyenv's costs hundreds of milliseconds), which
/// would swamp what is measured here.
fn real_interpreter(requested: &str) -> Result<PathBuf, String> {
    let output = Command::new(requested)
        .args([
            "-c",
            "import os, sys; print(os.path.realpath(sys.executable))",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("could not run {requested}: {err}"))?;
    let path = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() || path.is_empty() {
        return Err(format!("{requested} did not report its executable"));
    }
    Ok(PathBuf::from(path))
}

fn median_f64(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    let mid = samples.len() / 2;
    if samples.len() % 2 == 1 {
        samples[mid]
    } else {
        (samples[mid - 1] + samples[mid]) / 2.0
    }
}

fn median_ms(samples: &mut [Duration]) -> f64 {
    samples.sort();
    let mid = samples.len() / 2;
    let median = if samples.len() % 2 == 1 {
        samples[mid]
    } else {
        (samples[mid - 1] + samples[mid]) / 2
    };
    median.as_secs_f64() * 1e3
}

/// A fresh virtual environment; returns its python.
fn make_venv(python: &Path, venv: &Path, with_pip: bool) -> Result<PathBuf, String> {
    let mut command = Command::new(python);
    command.args(["-m", "venv"]);
    if !with_pip {
        command.arg("--without-pip");
    }
    let status = command
        .arg(venv)
        .stdout(Stdio::null())
        .status()
        .map_err(|err| format!("python -m venv: {err}"))?;
    if !status.success() {
        return Err(format!("python -m venv {} failed", venv.display()));
    }
    Ok(venv.join("bin").join("python"))
}

/// Installs our package into `venv_python`'s site-packages the way pip does:
/// the files, then byte-compiled (pip compiles at install time, and an
/// environment with PYTHONDONTWRITEBYTECODE would otherwise recompile on every
/// import).
fn install_ours(venv_python: &Path, package: &Path) -> Result<(), String> {
    let output = Command::new(venv_python)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('purelib'))",
        ])
        .output()
        .map_err(|err| format!("asking the venv for site-packages: {err}"))?;
    let purelib = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let target = purelib.join("metal_guard");
    std::fs::create_dir_all(&target)
        .map_err(|err| format!("creating {}: {err}", target.display()))?;
    let entries = std::fs::read_dir(package)
        .map_err(|err| format!("reading {}: {err}", package.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == "py") {
            std::fs::copy(&path, target.join(entry.file_name()))
                .map_err(|err| format!("copying {}: {err}", path.display()))?;
        }
    }
    let status = Command::new(venv_python)
        .args(["-m", "compileall", "-q"])
        .arg(&target)
        .status()
        .map_err(|err| format!("compileall: {err}"))?;
    if !status.success() {
        return Err(format!("python -m compileall {} failed", target.display()));
    }
    Ok(())
}

/// Installs the Python tool into a new venv and returns that environment's python.
fn install_python_tool(python: &Path, venv: &Path) -> Result<PathBuf, String> {
    let venv_python = make_venv(python, venv, true)?;
    let output = Command::new(&venv_python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            PYTHON_TOOL_REQUIREMENT,
        ])
        .output()
        .map_err(|err| format!("pip install: {err}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().last().unwrap_or("(no message)").to_string();
        return Err(format!(
            "pip install {PYTHON_TOOL_REQUIREMENT} failed: {last}"
        ));
    }
    Ok(venv_python)
}

/// One implementation: its interpreter and environment, timed bare and importing.
struct Contender {
    name: String,
    bare: Variant,
    import: Variant,
}

impl Contender {
    fn new(name: String, python: PathBuf, env: Vec<(String, String)>) -> Contender {
        let variant = |code: &str| Variant {
            label: format!("{name}: python -c '{code}'"),
            program: python.clone(),
            args: vec!["-c".into(), code.into()],
            env: env.clone(),
        };
        Contender {
            bare: variant("pass"),
            import: variant("import metal_guard"),
            name,
        }
    }

    /// `import metal_guard`'s cumulative time as `python -X importtime` reports it.
    fn import_time(&self) -> Result<Duration, String> {
        let mut command = Command::new(&self.import.program);
        command
            .args(["-X", "importtime", "-c", "import metal_guard"])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        for (key, value) in &self.import.env {
            command.env(key, value);
        }
        let output = command
            .output()
            .map_err(|err| format!("{}: -X importtime: {err}", self.name))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        // Lines: "import time:  self [us] | cumulative | imported package".
        stderr
            .lines()
            .filter_map(|line| line.strip_prefix("import time:"))
            .filter_map(|rest| {
                let mut cols = rest.split('|');
                let _self_us = cols.next()?;
                let cumulative = cols.next()?.trim().parse::<u64>().ok()?;
                let name = cols.next()?;
                (name.trim_end() == " metal_guard").then_some(cumulative)
            })
            .next_back()
            .map(Duration::from_micros)
            .ok_or_else(|| {
                format!(
                    "{}: -X importtime printed no line for metal_guard",
                    self.name
                )
            })
    }
}

fn exit_with(err: String) -> ! {
    eprintln!("error: {err}");
    std::process::exit(1);
}

fn main() {
    let args = Args::parse();
    let runs = args.runs.max(3);
    let requested = std::env::var("MG_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let python = real_interpreter(&requested).unwrap_or_else(|err| {
        exit_with(format!(
            "{err}; set MG_BENCH_PYTHON to a Python 3 interpreter"
        ))
    });
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ sits inside the repository")
        .to_path_buf();
    let scratch = tempfile::tempdir().expect("a temporary directory for the venvs");

    let ours_python =
        make_venv(&python, &scratch.path().join("ours"), false).unwrap_or_else(|e| exit_with(e));
    install_ours(&ours_python, &repo.join("python").join("metal_guard"))
        .unwrap_or_else(|e| exit_with(e));
    let mut contenders = vec![Contender::new("ours".into(), ours_python, Vec::new())];
    let mut python_tool_note = None;
    if std::env::var_os("MG_BENCH_SKIP_PYPI").is_some() {
        python_tool_note = Some("skipped (MG_BENCH_SKIP_PYPI is set)".to_string());
    } else {
        match install_python_tool(&python, &scratch.path().join("python-tool")) {
            Ok(venv_python) => {
                contenders.push(Contender::new(
                    PYTHON_TOOL_REQUIREMENT.to_string(),
                    venv_python,
                    Vec::new(),
                ));
            }
            Err(err) => python_tool_note = Some(format!("not measured: {err}")),
        }
    }

    // Warm the page cache and write .pyc files before timing anything.
    for contender in &contenders {
        for variant in [&contender.bare, &contender.import] {
            for _ in 0..2 {
                variant.run_once().unwrap_or_else(|e| exit_with(e));
            }
        }
    }
    // Per contender: bare samples, import samples, and per-round differences
    // (import minus the bare run just before it, which cancels slow drift).
    let mut bare: Vec<Vec<Duration>> = vec![Vec::with_capacity(runs); contenders.len()];
    let mut import: Vec<Vec<Duration>> = vec![Vec::with_capacity(runs); contenders.len()];
    let mut deltas: Vec<Vec<f64>> = vec![Vec::with_capacity(runs); contenders.len()];
    for _ in 0..runs {
        for (i, contender) in contenders.iter().enumerate() {
            let b = contender.bare.run_once().unwrap_or_else(|e| exit_with(e));
            let m = contender.import.run_once().unwrap_or_else(|e| exit_with(e));
            bare[i].push(b);
            import[i].push(m);
            deltas[i].push((m.as_secs_f64() - b.as_secs_f64()) * 1e3);
        }
    }
    let mut import_times = Vec::new();
    for contender in &contenders {
        let mut samples: Vec<Duration> = (0..runs.min(15))
            .map(|_| contender.import_time().unwrap_or_else(|e| exit_with(e)))
            .collect();
        import_times.push(median_ms(&mut samples));
    }

    println!(
        "import metal_guard: {runs} rounds, each running bare `python -c pass` and `python -c 'import metal_guard'` back to back"
    );
    println!(
        "{:<24} {:>12} {:>14} {:>18} {:>18}",
        "", "bare (median)", "import (median)", "added (median/round)", "-X importtime"
    );
    let mut added = Vec::new();
    for (i, contender) in contenders.iter().enumerate() {
        let delta = median_f64(&mut deltas[i]);
        added.push(delta);
        println!(
            "{:<24} {:>9.2} ms {:>11.2} ms {:>15.2} ms {:>15.2} ms",
            contender.name,
            median_ms(&mut bare[i]),
            median_ms(&mut import[i]),
            delta,
            import_times[i],
        );
    }
    if let Some(note) = python_tool_note {
        println!("{PYTHON_TOOL_REQUIREMENT}: {note}");
    }
    let mut summary = format!(
        "ours adds {:.2} ms to bare Python (target: at most 10 ms)",
        added[0]
    );
    if added.len() == 2 {
        summary.push_str(&format!("; the Python tool adds {:.2} ms", added[1]));
    }
    println!("{summary}");
}
