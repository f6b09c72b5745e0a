//! `mlx-safe-python` with the real guard library (`libmetal_guard_inject.so`,
//! built by `cargo build -p metal-guard-inject`) and the simulated Metal
//! driver: the handshake reaches the interpreter, children announce
//! themselves without noise, and a Python program that drives the simulated
//! driver through `ctypes` is protected by the launcher alone.
//!
//! Python loads a *workload library* linked against `libsim_metal.so`, so the
//! driver's entry points are bound by the dynamic linker, as MLX's are (a
//! `CDLL(driver).MTLCreateSystemDefaultDevice` lookup would resolve inside the
//! driver and bypass any preload).

use sim_metal::{artifacts, build_inject_library, SimArtifacts, GUARD_TEST_ENV};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

const MLX_SAFE_PYTHON: &str = env!("CARGO_BIN_EXE_mlx-safe-python");

fn guard() -> PathBuf {
    build_inject_library().unwrap_or_else(|e| panic!("{e}"))
}

fn driver() -> &'static SimArtifacts {
    artifacts().unwrap_or_else(|e| panic!("{e}"))
}

/// GCC's Objective-C runtime folder (the workload library links libobjc).
fn objc_lib_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/gcc")
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|triple| {
            std::fs::read_dir(triple.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|v| v.path())
        .filter(|dir| dir.join("libobjc.so").exists())
        .collect();
    found.sort_by_key(|p| (p.file_name() != Some("12".as_ref()), p.clone()));
    found
        .into_iter()
        .next()
        .expect("GCC's libobjc (apt-get install libobjc-12-dev)")
}

/// `mlx_workload.m` built as a shared library whose entry point is
/// `mlx_workload_main(argc, argv)`, linked against the simulated driver.
fn workload_library() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let sim = driver();
        let src_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sim-metal");
        // The driver's cache folder is keyed by the sources, this file included.
        let out = sim.dir.join("libmlx_workload_py.so");
        if out.is_file() {
            return out;
        }
        let staged = sim
            .dir
            .join(format!(".libmlx_workload_py-{}.so", std::process::id()));
        let objc = objc_lib_dir();
        let mut rpath = OsString::from("-Wl,-rpath,");
        rpath.push(&sim.dir);
        let status = Command::new("clang")
            .args(["-fobjc-runtime=gcc", "-fblocks", "-O1", "-shared", "-fPIC"])
            .arg("-Dmain=mlx_workload_main")
            .arg("-idirafter")
            .arg(objc.join("include"))
            .arg("-I")
            .arg(&src_dir)
            .arg(src_dir.join("mlx_workload.m"))
            .arg("-o")
            .arg(&staged)
            .arg(format!("-L{}", sim.dir.display()))
            .arg("-lsim_metal")
            .arg(rpath)
            .arg(format!("-L{}", objc.display()))
            .args(["-lobjc", "-lBlocksRuntime", "-lpthread"])
            .status()
            .expect("clang runs");
        assert!(status.success(), "building the workload library failed");
        std::fs::rename(&staged, &out).unwrap();
        out
    })
}

const CTYPES_DRIVER: &str = r#"
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
argv = [b"mlx_workload"] + [a.encode() for a in sys.argv[2:]]
array = (ctypes.c_char_p * (len(argv) + 1))(*argv, None)
lib.mlx_workload_main.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
rc = lib.mlx_workload_main(len(argv), array)
print("workload returned", rc, flush=True)
sys.exit(rc)
"#;

struct Scratch {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        for d in ["home", "panics", "tmp"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("drive.py"), CTYPES_DRIVER).unwrap();
        Scratch { _tmp: tmp, root }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// The environment of one run: clean, with the guard's test tuning, the
    /// simulated driver writing reports where the gate reads them.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.p("home"))
            .env("TMPDIR", self.p("tmp"))
            .env("METALGUARD_SIM_PANIC_DIR", self.p("panics"))
            .env("METALGUARD_PANIC_REPORT_DIRS", self.p("panics"))
            .env("METALGUARD_BREADCRUMB_PATH", self.p("home/breadcrumbs.log"))
            .env("METALGUARD_DYLIB", guard())
            .envs(GUARD_TEST_ENV.iter().copied())
            .current_dir(&self.root)
            .stdin(Stdio::null());
        cmd
    }

    fn reports(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.p("panics"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn real_python() -> String {
    // The interpreter mlx-safe-python itself would choose (shims resolved).
    let out = Command::new(MLX_SAFE_PYTHON)
        .args(["--no-inject", "-c", "import sys; print(sys.executable)"])
        .env("METALGUARD_PANIC_GATE_DISABLED", "1")
        .stderr(Stdio::null())
        .output()
        .expect("python3 is needed for these tests");
    let exe = text(&out.stdout).trim().to_owned();
    assert!(!exe.is_empty(), "python3 is needed for these tests");
    exe
}

#[test]
fn check_confirms_the_real_library_in_the_interpreter() {
    let s = Scratch::new();
    let out: Output = s.command(MLX_SAFE_PYTHON).arg("--check").output().unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("announced itself from pid"), "{stdout}");
    assert!(
        stdout.contains(&format!("(version {})", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
}

#[test]
fn spawn_children_load_the_real_library_quietly() {
    let s = Scratch::new();
    std::fs::write(
        s.p("mp.py"),
        "import multiprocessing as mp\n\ndef child(q):\n    q.put('libmetal_guard_inject' in open('/proc/self/maps').read())\n\nif __name__ == '__main__':\n    mp.set_start_method('spawn')\n    q = mp.Queue()\n    ps = [mp.Process(target=child, args=(q,)) for _ in range(2)]\n    [p.start() for p in ps]\n    print([q.get() for _ in ps])\n    [p.join() for p in ps]\n",
    )
    .unwrap();
    let out = s
        .command(MLX_SAFE_PYTHON)
        .arg(s.p("mp.py"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "[True, True]");
    assert_eq!(text(&out.stderr), "", "children must not complain");
}

#[test]
fn a_ctypes_workload_panics_bare_and_runs_clean_under_mlx_safe_python() {
    let lib = workload_library();

    // Bare Python: the simulated driver's bug fires (report + abort).
    let bare = Scratch::new();
    let out = bare
        .command(&real_python())
        .arg(bare.p("drive.py"))
        .arg(lib)
        .arg("concurrent-trim")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "unguarded run should panic: {}",
        text(&out.stderr)
    );
    assert!(
        !bare.reports().is_empty(),
        "the simulated driver wrote no report: {}",
        text(&out.stderr)
    );

    // mlx-safe-python alone: same program, same library, clean.
    let guarded = Scratch::new();
    let out = guarded
        .command(MLX_SAFE_PYTHON)
        .arg(guarded.p("drive.py"))
        .arg(lib)
        .arg("concurrent-trim")
        .output()
        .unwrap();
    let breadcrumbs =
        std::fs::read_to_string(guarded.p("home/breadcrumbs.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "guarded run failed: {}\n--- breadcrumbs\n{breadcrumbs}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("workload returned 0"));
    assert!(
        guarded.reports().is_empty(),
        "a report was written under the guard"
    );
    assert!(!breadcrumbs.is_empty(), "the guard left no breadcrumbs");

    // After the bare run's panic, the launcher's gate stops the next run (exit 10).
    let out = bare
        .command(MLX_SAFE_PYTHON)
        .arg(bare.p("drive.py"))
        .arg(lib)
        .arg("steady")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(10), "{}", text(&out.stderr));

    // Forced through: the launcher decides once and hands its decision to the
    // library in the program (same pid), which does not ask the gate again.
    let out = bare
        .command(MLX_SAFE_PYTHON)
        .env("MLX_SAFE_PYTHON_FORCE", "1")
        .arg(bare.p("drive.py"))
        .arg(lib)
        .arg("steady")
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("overrides the cooldown").count(),
        1,
        "one override warning, from the launcher: {stderr}"
    );
    let crumbs = std::fs::read_to_string(bare.p("home/breadcrumbs.log")).unwrap_or_default();
    let gate_lines: Vec<&str> = crumbs
        .lines()
        .filter(|l| l.contains("GUARD_GATE"))
        .collect();
    assert!(
        gate_lines
            .iter()
            .any(|l| l.contains("decided_by_launcher") && l.contains("outcome=overridden")),
        "{crumbs}"
    );
    assert!(
        !gate_lines.iter().any(|l| l.contains(" overridden")),
        "the library must not override a second time: {crumbs}"
    );
}
