//! `metal-guard selftest` on Linux, end to end: the real launcher, the real
//! guard library (`cargo build -p metal-guard-inject`), the machine's
//! `python3`, and the simulated Metal driver with the self-test's client
//! library (`sim_metal::selftest_artifacts`).

use sim_metal::{build_inject_library, selftest_artifacts};
use std::path::Path;
use std::process::{Command, Output, Stdio};

const METAL_GUARD: &str = env!("CARGO_BIN_EXE_metal-guard");

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A clean environment: its own HOME and an empty panic-report folder, so the
/// machine's state cannot block or colour the run.
fn selftest(scratch: &Path) -> Command {
    for d in ["home", "panics", "tmp"] {
        std::fs::create_dir_all(scratch.join(d)).unwrap();
    }
    let mut cmd = Command::new(METAL_GUARD);
    cmd.arg("selftest")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", scratch.join("home"))
        .env("TMPDIR", scratch.join("tmp"))
        .env("METALGUARD_PANIC_REPORT_DIRS", scratch.join("panics"))
        .stdin(Stdio::null());
    cmd
}

/// The first `python3` on PATH, as a path.
fn which_python3() -> std::path::PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("python3"))
        .find(|p| p.is_file())
        .expect("python3 on PATH")
}

fn guard_library() -> std::path::PathBuf {
    build_inject_library().unwrap_or_else(|e| panic!("{e}"))
}

fn describe(out: &Output) -> String {
    format!(
        "status={:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

#[test]
fn every_check_passes_against_the_simulated_driver() {
    let library = guard_library();
    let sim = selftest_artifacts().unwrap_or_else(|e| panic!("{e}"));
    let scratch = tempfile::tempdir().unwrap();
    let out = selftest(scratch.path())
        .arg("--sim-driver")
        .arg(&sim.dir)
        .env("METALGUARD_DYLIB", &library)
        // The self-test must override settings that would disarm the guard.
        .env("METALGUARD_MODE", "observer")
        .env("METALGUARD_CEILING", "off")
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    for check in [
        "launcher accepted the interpreter",
        "library loaded",
        "device class found",
        "hooks: device",
        "hooks: heap",
        "hooks: queue",
        "hooks: command_buffer",
        "hooks: residency_set",
        "hooks: buffer",
        "tiny program ran",
        "oversize allocation refused",
        "exit summary written",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.contains(check))
            .unwrap_or_else(|| panic!("no `{check}` line\n{}", describe(&out)));
        assert!(
            line.trim_start().starts_with("PASS"),
            "{line}\n{}",
            describe(&out)
        );
    }
    assert!(
        !stdout.contains("FAIL") && !stdout.contains("SKIP"),
        "{stdout}"
    );
    assert!(stdout.contains("SimAGXG16XFamilyDevice"), "{stdout}");
    assert!(
        stdout.contains("Python got RuntimeError: [malloc] Unable to allocate 2147483648 bytes."),
        "{stdout}"
    );
    assert!(
        stdout.contains("--- paste this into an issue ---"),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("metal-guard {}", env!("CARGO_PKG_VERSION"))));
    // The temporary folder is gone without --keep.
    let left: Vec<_> = std::fs::read_dir(scratch.path().join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with("metal-guard-selftest."))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn json_report_and_keep() {
    let library = guard_library();
    let sim = selftest_artifacts().unwrap_or_else(|e| panic!("{e}"));
    let scratch = tempfile::tempdir().unwrap();
    // `--python` relative to the working folder, through a symlink (as a venv's python is).
    let python = which_python3();
    std::fs::create_dir_all(scratch.path().join("venv/bin")).unwrap();
    std::os::unix::fs::symlink(&python, scratch.path().join("venv/bin/python3")).unwrap();
    let out = selftest(scratch.path())
        .args(["--json", "--keep", "--python", "venv/bin/python3"])
        .current_dir(scratch.path())
        .env("METALGUARD_SIM_METAL_DIR", &sim.dir)
        .env("METALGUARD_DYLIB", &library)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let launcher = &report["checks"][0];
    assert_eq!(launcher["name"], "launcher accepted the interpreter");
    assert!(
        launcher["detail"]
            .as_str()
            .unwrap()
            .contains("MLX_SAFE_PYTHON_BIN="),
        "{launcher}"
    );
    let checks = report["checks"].as_array().unwrap();
    assert!(checks.len() >= 12, "{report}");
    assert!(checks.iter().all(|c| c["status"] == "PASS"), "{report}");
    let kept = Path::new(report["kept_folder"].as_str().unwrap());
    assert!(kept.join("breadcrumbs.log").is_file());
    assert!(kept.join("selftest.py").is_file());
    let stdout = std::fs::read_to_string(kept.join("program.stdout")).unwrap();
    assert!(stdout.contains("METALGUARD_SELFTEST_RESULT"), "{stdout}");
}

#[test]
fn a_guard_that_never_loads_fails_the_checks() {
    // A library that loads but is not the guard: no handshake, no hooks,
    // no refusal.
    let sim = selftest_artifacts().unwrap_or_else(|e| panic!("{e}"));
    let scratch = tempfile::tempdir().unwrap();
    let stand_in = scratch.path().join("libnot_the_guard.so");
    std::fs::write(scratch.path().join("empty.c"), "int not_the_guard;\n").unwrap();
    let built = Command::new("clang")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&stand_in)
        .arg(scratch.path().join("empty.c"))
        .status()
        .expect("clang runs");
    assert!(built.success());
    let out = selftest(scratch.path())
        .arg("--sim-driver")
        .arg(&sim.dir)
        .env("METALGUARD_DYLIB", &stand_in)
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no `{name}` line\n{stdout}"))
            .to_string()
    };
    assert!(line("library loaded").contains("FAIL"), "{stdout}");
    assert!(line("hooks: device").contains("FAIL"), "{stdout}");
    let refusal = line("oversize allocation refused");
    assert!(refusal.contains("FAIL"), "{stdout}");
    assert!(refusal.contains("the allocation succeeded"), "{refusal}");
}

#[test]
fn a_missing_simulated_driver_exits_3_with_the_build_command() {
    let scratch = tempfile::tempdir().unwrap();
    let empty = scratch.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    for with_dir in [false, true] {
        let mut cmd = selftest(scratch.path());
        if with_dir {
            cmd.arg("--sim-driver").arg(&empty);
        }
        let out = cmd.output().unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
        assert!(
            stderr.contains("cargo run -p metal-guard-sim-metal --bin sim-metal-build"),
            "{stderr}"
        );
        assert!(stderr.contains("--sim-driver"), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        if with_dir {
            assert!(stderr.contains("libsim_metal.so is missing"), "{stderr}");
        }
    }
}

#[test]
fn a_cooldown_stops_the_selftest_unless_forced() {
    let library = guard_library();
    let sim = selftest_artifacts().unwrap_or_else(|e| panic!("{e}"));
    let scratch = tempfile::tempdir().unwrap();
    // A fresh IOGPU panic report puts the Mac in a cooldown: the simulated
    // driver writes exactly that when its bug fires.
    let run = sim_metal::WorkloadRun::new(sim_metal::Workload::OversizePrefill, scratch.path());
    let outcome = run
        .run(sim_metal::artifacts().unwrap())
        .expect("the workload runs");
    assert!(outcome.panicked(), "{}", outcome.describe());

    let blocked = selftest(scratch.path())
        .arg("--sim-driver")
        .arg(&sim.dir)
        .env("METALGUARD_DYLIB", &library)
        .output()
        .unwrap();
    let stderr = text(&blocked.stderr);
    assert_eq!(blocked.status.code(), Some(3), "{}", describe(&blocked));
    assert!(stderr.contains("metal-guard selftest --force"), "{stderr}");

    let forced = selftest(scratch.path())
        .args(["--force", "--sim-driver"])
        .arg(&sim.dir)
        .env("METALGUARD_DYLIB", &library)
        .output()
        .unwrap();
    let stdout = text(&forced.stdout);
    assert_eq!(forced.status.code(), Some(0), "{}", describe(&forced));
    assert!(
        stdout.contains("cooldown in force, run with --force"),
        "{stdout}"
    );
}

#[test]
fn the_mac_program_is_valid_python() {
    // The MLX program only runs on a Mac; here it is at least compiled.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/selftest_programs");
    let common = std::fs::read_to_string(dir.join("common.py")).unwrap();
    for part in ["mlx.py", "sim.py"] {
        let program = format!(
            "{common}\n{}",
            std::fs::read_to_string(dir.join(part)).unwrap()
        );
        let out = Command::new(which_python3())
            .args([
                "-c",
                "import sys; compile(sys.stdin.read(), 'selftest.py', 'exec')",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(program.as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        assert!(out.status.success(), "{part}: {}", text(&out.stderr));
    }
}

/// A stand-in for `mlx.core` with just what the Mac program calls, in pure
/// Python; `zeros` above 1 GiB raises MLX's RuntimeError, as a refused
/// allocation does.
const FAKE_MLX_CORE: &str = r#"
import builtins as _builtins
import random as _random
__version__ = "0.0-fake"
float32 = "float32"

class array:
    def __init__(self, rows):
        self.rows = rows
    def __matmul__(self, other):
        cols = list(zip(*other.rows))
        return array([[_builtins.sum(a * b for a, b in zip(r, c)) for c in cols] for r in self.rows])
    def __mul__(self, other):
        return array([[a * b for a, b in zip(self.flat(), other.flat())]])
    def flat(self):
        return [x for r in self.rows for x in r]
    def __getitem__(self, key):
        i, j = key
        if isinstance(i, int) and isinstance(j, int):
            return array([[self.rows[i][j]]])
        if isinstance(i, int):
            return array([self.rows[i]])
        return array([[r[j]] for r in self.rows])
    def item(self):
        return self.rows[0][0]

class _Random:
    def normal(self, shape):
        n, m = shape
        return array([[_random.gauss(0, 1) for _ in range(m)] for _ in range(n)])

random = _Random()

def eval(*arrays):
    pass

def sum(a):
    return array([[_builtins.sum(a.flat())]])

def allclose(a, b, rtol=1e-5, atol=1e-8):
    x, y = a.item(), b.item()
    return array([[abs(x - y) <= atol + rtol * abs(y)]])

def zeros(shape, dtype=None):
    nbytes = shape[0] * 4
    if nbytes > (1 << 30):
        raise RuntimeError("[malloc] Unable to allocate %d bytes." % nbytes)
    return array([[0.0]])

def clear_cache():
    pass
"#;

#[test]
fn the_mac_program_reports_every_step_and_the_runtime_error() {
    let scratch = tempfile::tempdir().unwrap();
    let fake = scratch.path().join("fake/mlx");
    std::fs::create_dir_all(&fake).unwrap();
    std::fs::write(fake.join("__init__.py"), "").unwrap();
    // (The 256 x 256 product in pure Python takes about a second.)
    std::fs::write(fake.join("core.py"), FAKE_MLX_CORE).unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/selftest_programs");
    let program = format!(
        "{}\n{}",
        std::fs::read_to_string(dir.join("common.py")).unwrap(),
        std::fs::read_to_string(dir.join("mlx.py")).unwrap()
    );
    std::fs::write(scratch.path().join("selftest.py"), program).unwrap();
    let out = Command::new(which_python3())
        .arg(scratch.path().join("selftest.py"))
        .env("PYTHONPATH", scratch.path().join("fake"))
        .env(
            "METALGUARD_SELFTEST_OVERSIZE_BYTES",
            metal_guard::selftest::OVERSIZE_BYTES.to_string(),
        )
        .env_remove("METALGUARD_HANDSHAKE_PATH")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let report = metal_guard::selftest::parse_program_report(&text(&out.stdout)).unwrap();
    assert_eq!(report.error, None, "{report:?}");
    assert_eq!(report.steps, ["allocate", "compute", "free", "clear_cache"]);
    assert_eq!(report.mlx_version.as_deref(), Some("0.0-fake"));
    let over = report.oversize.unwrap();
    assert_eq!(over.outcome, "runtime_error");
    assert_eq!(over.requested_bytes, metal_guard::selftest::OVERSIZE_BYTES);
    assert!(over.message.unwrap().contains("Unable to allocate"));
}
