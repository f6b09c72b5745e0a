//! What `import metal_guard` costs a Python process, side by side in one run:
//! bare `python -c pass`, ours, and the Python tool (`metal-guard==1.1.0` from
//! PyPI, installed by this benchmark into a throwaway virtual environment).
//!
//! `cargo run --release -p metal-guard-bench --bin python_import [-- --runs N]`
//!
//! Ours is imported from the repository's `python/` folder (the same files the
//! wheel carries). `MG_BENCH_PYTHON` picks the interpreter (default `python3`);
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
    /// Runs per variant (interleaved, after two warm-up runs each).
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

fn median_ms(samples: &mut [Duration]) -> f64 {
    samples.sort();
    let mid = samples.len() / 2;
    let median = if samples.len() % 2 == 0 {
        (samples[mid - 1] + samples[mid]) / 2
    } else {
        samples[mid]
    };
    median.as_secs_f64() * 1e3
}

/// Installs the Python tool into `venv` and returns that environment's python.
fn install_python_tool(python: &Path, venv: &Path) -> Result<PathBuf, String> {
    let status = Command::new(python)
        .args(["-m", "venv"])
        .arg(venv)
        .status()
        .map_err(|err| format!("python -m venv: {err}"))?;
    if !status.success() {
        return Err(format!("python -m venv {} failed", venv.display()));
    }
    let venv_python = venv.join("bin").join("python");
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

fn main() {
    let args = Args::parse();
    let runs = args.runs.max(3);
    let python =
        PathBuf::from(std::env::var("MG_BENCH_PYTHON").unwrap_or_else(|_| "python3".into()));
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ sits inside the repository")
        .to_path_buf();
    let our_source = repo.join("python");
    let pythonpath = vec![("PYTHONPATH".to_string(), our_source.display().to_string())];

    let mut variants = vec![
        Variant {
            label: "python -c pass".into(),
            program: python.clone(),
            args: vec!["-c".into(), "pass".into()],
            env: pythonpath.clone(),
        },
        Variant {
            label: "python -c 'import metal_guard'  (ours)".into(),
            program: python.clone(),
            args: vec!["-c".into(), "import metal_guard".into()],
            env: pythonpath.clone(),
        },
    ];

    let scratch = tempfile::tempdir().expect("a temporary directory for the Python tool's venv");
    let mut python_tool_note = None;
    if std::env::var_os("MG_BENCH_SKIP_PYPI").is_some() {
        python_tool_note = Some("skipped (MG_BENCH_SKIP_PYPI is set)".to_string());
    } else {
        match install_python_tool(&python, &scratch.path().join("python-tool")) {
            Ok(venv_python) => {
                variants.push(Variant {
                    label: "venv python -c pass".into(),
                    program: venv_python.clone(),
                    args: vec!["-c".into(), "pass".into()],
                    env: Vec::new(),
                });
                variants.push(Variant {
                    label: format!(
                        "venv python -c 'import metal_guard'  ({PYTHON_TOOL_REQUIREMENT})"
                    ),
                    program: venv_python,
                    args: vec!["-c".into(), "import metal_guard".into()],
                    env: Vec::new(),
                });
            }
            Err(err) => python_tool_note = Some(format!("not measured: {err}")),
        }
    }

    // Warm the page cache and write .pyc files before timing anything.
    for variant in &variants {
        for _ in 0..2 {
            if let Err(err) = variant.run_once() {
                eprintln!("error: {err}");
                std::process::exit(1);
            }
        }
    }
    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(runs); variants.len()];
    for _ in 0..runs {
        for (variant, bucket) in variants.iter().zip(samples.iter_mut()) {
            match variant.run_once() {
                Ok(elapsed) => bucket.push(elapsed),
                Err(err) => {
                    eprintln!("error: {err}");
                    std::process::exit(1);
                }
            }
        }
    }
    let medians: Vec<f64> = samples.iter_mut().map(|s| median_ms(s)).collect();

    println!("import metal_guard: median wall time of {runs} runs each, interleaved");
    println!("{:<62} {:>9} {:>10}", "command", "median", "over bare");
    for (index, (variant, median)) in variants.iter().zip(&medians).enumerate() {
        // Each pair (bare, import) shares an interpreter: compare within the pair.
        let bare = medians[index - index % 2];
        let over = if index % 2 == 0 {
            String::from("-")
        } else {
            format!("{:+.2} ms", median - bare)
        };
        println!("{:<62} {:>6.2} ms {:>10}", variant.label, median, over);
    }
    if let Some(note) = python_tool_note {
        println!("{PYTHON_TOOL_REQUIREMENT}: {note}");
    }
    let ours_over = medians[1] - medians[0];
    println!(
        "ours adds {ours_over:.2} ms to bare Python (target: at most 10 ms){}",
        if medians.len() == 4 {
            format!("; the Python tool adds {:.2} ms", medians[3] - medians[2])
        } else {
            String::new()
        }
    );
}
