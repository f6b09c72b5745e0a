//! End-to-end tests of `mlx-safe-python` and `metal-guard run`: the real
//! binaries, the machine's `python3`, fake interpreters and scripts in
//! temporary folders, and a stand-in guard library (a few lines of C built
//! here with clang or `cc`) whose constructor writes the handshake the way the real
//! library does. A temporary HOME keeps the user's state out of it.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const MLX_SAFE_PYTHON: &str = env!("CARGO_BIN_EXE_mlx-safe-python");
const METAL_GUARD: &str = env!("CARGO_BIN_EXE_metal-guard");

/// The stand-in guard library: announces itself on `METALGUARD_HANDSHAKE_PATH`.
fn handshake_library() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        // Cargo's scratch folder for integration tests (kept out of /tmp).
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("launcher-stand-in-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("announce.c");
        std::fs::write(
            &src,
            r#"#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
__attribute__((constructor)) static void announce(void) {
    const char *path = getenv("METALGUARD_HANDSHAKE_PATH");
    if (!path) return;
    FILE *f = fopen(path, "a");
    if (!f) return;
    fprintf(f, "%d test-stand-in\n", (int)getpid());
    fclose(f);
}
"#,
        )
        .unwrap();
        let lib = dir.join("libannounce.so");
        // clang is what .ci/run installs; a plain `cc` does as well.
        let status = ["clang", "cc"]
            .iter()
            .find_map(|compiler| {
                Command::new(compiler)
                    .args(["-shared", "-fPIC", "-o"])
                    .arg(&lib)
                    .arg(&src)
                    .status()
                    .ok()
            })
            .expect("a C compiler (clang or cc) is needed to build the stand-in guard library");
        assert!(
            status.success(),
            "the C compiler failed to build the stand-in library"
        );
        lib
    })
}

/// A scratch world: HOME, an empty panic-report folder, a bin folder.
struct World {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl World {
    fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        for d in ["home", "reports", "bin", "tmp"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        World { _tmp: tmp, root }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// A command with a clean environment: the test's PATH (so `python3` is
    /// found), a temporary HOME and report folder, and the stand-in library.
    fn cmd(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path("home"))
            .env("TMPDIR", self.path("tmp"))
            .env("METALGUARD_PANIC_REPORT_DIRS", self.path("reports"))
            .env("METALGUARD_DYLIB", handshake_library())
            .current_dir(&self.root)
            .stdin(Stdio::null());
        cmd
    }

    fn write_exec(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// A fake interpreter that prints each argument on its own line, then selected variables.
    fn fake_python(&self) -> PathBuf {
        self.write_exec(
            "fake/python3",
            "#!/bin/sh\nfor a in \"$@\"; do printf 'arg[%s]\\n' \"$a\"; done\nprintf 'preload[%s]\\n' \"$LD_PRELOAD\"\nprintf 'handshake[%s]\\n' \"${METALGUARD_HANDSHAKE_PATH:+set}\"\nexit 0\n",
        )
    }

    /// A recent IOGPU panic report in the report folder (a real report text, fresh mtime and name).
    fn add_recent_panic(&self) {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/fixtures/panics/01-iogpu-completememory-550-mlxlm1666-giumazzi.txt");
        let text = std::fs::read_to_string(&fixture).expect("shared fixtures are readable");
        let now = time::OffsetDateTime::now_utc();
        let name = format!(
            "panic-full-{:04}-{:02}-{:02}-{:02}{:02}{:02}.0002.panic",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        );
        std::fs::write(self.path("reports").join(name), text).unwrap();
    }
}

fn python3_available(world: &World) -> bool {
    world
        .cmd(MLX_SAFE_PYTHON)
        .args(["--no-inject", "-c", "pass"])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("the launcher runs")
}

// ------------------------------------------------------------ argv, exit, stdin, signals

#[test]
fn argv_passes_through_byte_for_byte() {
    let w = World::new();
    let fake = w.fake_python();
    let out = run(w
        .cmd(MLX_SAFE_PYTHON)
        .env("MLX_SAFE_PYTHON_BIN", &fake)
        .args(["-c", "x y", "", "--", "--help", "-m", "pip", "ünï cödé"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let args: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("arg[")?.strip_suffix(']'))
        .collect();
    assert_eq!(
        args,
        ["-c", "x y", "", "--", "--help", "-m", "pip", "ünï cödé"]
    );
    let preload = stdout.lines().find(|l| l.starts_with("preload[")).unwrap();
    assert_eq!(
        preload,
        format!("preload[{}]", handshake_library().display())
    );
    assert!(stdout.contains("handshake[set]"));
}

#[test]
fn launcher_flags_are_only_read_before_python_arguments() {
    let w = World::new();
    let fake = w.fake_python();
    let out = run(w
        .cmd(MLX_SAFE_PYTHON)
        .env("MLX_SAFE_PYTHON_BIN", &fake)
        .args(["--no-inject", "script.py", "--no-inject", "--check"]));
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("arg[script.py]\narg[--no-inject]\narg[--check]\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("preload[]"),
        "--no-inject injects nothing: {stdout}"
    );
    assert!(text(&out.stderr).contains("--no-inject: running with the cooldown gate only"));
    assert!(stdout.contains("handshake[]"), "{stdout}");

    // A guarded parent passed the library down: --no-inject takes it out, keeps the rest.
    let out = run(w
        .cmd(MLX_SAFE_PYTHON)
        .env("MLX_SAFE_PYTHON_BIN", &fake)
        .env(
            "LD_PRELOAD",
            format!(
                "/opt/mg/lib/libmetal_guard_inject.so:{}",
                libm_path().display()
            ),
        )
        .env("METALGUARD_HANDSHAKE_PATH", "/tmp/parent/handshake")
        .args(["--no-inject", "x"]));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("preload[{}]", libm_path().display())),
        "{stdout}"
    );
    assert!(stdout.contains("handshake[]"), "{stdout}");
}

#[test]
fn exit_status_stdin_and_pid_are_pythons_own() {
    let w = World::new();
    if !python3_available(&w) {
        panic!("python3 is needed for this test");
    }
    let out = run(w
        .cmd(MLX_SAFE_PYTHON)
        .args(["-c", "import sys; sys.exit(7)"]));
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));

    let mut child = w
        .cmd(MLX_SAFE_PYTHON)
        .args([
            "-c",
            "import os, sys; data = sys.stdin.read(); print(os.getpid(), data.upper(), end='')",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello\nworld")
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    // exec, not spawn: Python runs in the launcher's own process.
    assert_eq!(text(&out.stdout), format!("{pid} HELLO\nWORLD"));
}

/// A standard descriptor closed for the launcher is closed for Python too
/// (Rust's runtime puts /dev/null there; the launcher takes it away again),
/// and a user's own `< /dev/null` stays.
#[test]
fn a_closed_stdin_reaches_python_closed() {
    use std::os::unix::process::CommandExt;
    let w = World::new();
    if !python3_available(&w) {
        panic!("python3 is needed for this test");
    }
    let probe = "import sys; print(sys.stdin is None, end='')";
    let closed = |cmd: &mut Command| -> String {
        // SAFETY: close(2) is async-signal-safe; the child runs nothing else
        // before its exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::close(0);
                Ok(())
            });
        }
        let out = run(cmd.stdout(Stdio::piped()));
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let bare = closed(w.cmd("python3").args(["-c", probe]));
    assert_eq!(bare, "True", "bare Python with stdin closed");
    for args in [&["-c", probe][..], &["--no-inject", "-c", probe]] {
        assert_eq!(closed(w.cmd(MLX_SAFE_PYTHON).args(args)), bare, "{args:?}");
    }
    assert_eq!(
        closed(
            w.cmd(METAL_GUARD)
                .args(["run", "--", "python3", "-c", probe])
        ),
        bare
    );
    let out = run(w
        .cmd(MLX_SAFE_PYTHON)
        .args(["-c", probe])
        .stdin(Stdio::null())
        .stdout(Stdio::piped()));
    assert_eq!(text(&out.stdout), "False", "/dev/null as stdin stays");
}

#[test]
fn signals_end_python_as_they_would_end_python() {
    let w = World::new();
    if !python3_available(&w) {
        panic!("python3 is needed for this test");
    }
    let out = run(w.cmd(MLX_SAFE_PYTHON).args([
        "-c",
        "import os, signal; os.kill(os.getpid(), signal.SIGTERM)",
    ]));
    assert_eq!(out.status.signal(), Some(libc::SIGTERM));

    for signal in [libc::SIGINT, libc::SIGTERM] {
        let mut child = w
            .cmd(MLX_SAFE_PYTHON)
            .args([
                "-c",
                "import sys, time; print('ready', flush=True); time.sleep(30)",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut ready = [0u8; 6];
        std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut ready).unwrap();
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(signal), "signal {signal}");
    }
}

// ------------------------------------------------------------ interpreter choice

#[test]
fn no_interpreter_gives_127() {
    let w = World::new();
    let out = run(w
        .cmd(MLX_SAFE_PYTHON)
        .env("MLX_SAFE_PYTHON_BIN", w.path("missing/python3"))
        .args(["-c", "pass"]));
    assert_eq!(out.status.code(), Some(127));
    assert!(text(&out.stderr).contains("MLX_SAFE_PYTHON_BIN"));

    let out = run(w
        .cmd(MLX_SAFE_PYTHON)
        .env("PATH", w.path("bin"))
        .args(["-c", "pass"]));
    assert_eq!(out.status.code(), Some(127));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no python3 on PATH") && stderr.contains("uv"),
        "{stderr}"
    );
}

#[test]
fn virtual_env_wins_over_path() {
    let w = World::new();
    let fake = w.fake_python();
    std::fs::create_dir_all(w.path("venv/bin")).unwrap();
    std::os::unix::fs::symlink(&fake, w.path("venv/bin/python3")).unwrap();
    let out = run(w
        .cmd(MLX_SAFE_PYTHON)
        .env("VIRTUAL_ENV", w.path("venv"))
        .args(["from-venv"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("arg[from-venv]"));
}

#[test]
fn a_setuid_interpreter_is_refused_with_a_reason_and_a_remedy() {
    let w = World::new();
    let python = w.path("suid/python3");
    std::fs::create_dir_all(python.parent().unwrap()).unwrap();
    std::fs::copy("/bin/true", &python).unwrap();
    std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let out = run(w.cmd(MLX_SAFE_PYTHON).env("MLX_SAFE_PYTHON_BIN", &python));
    assert_eq!(out.status.code(), Some(126));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("setuid") && stderr.contains("uv"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // --no-inject does not need the library to survive, so it runs.
    let out = run(w
        .cmd(MLX_SAFE_PYTHON)
        .env("MLX_SAFE_PYTHON_BIN", &python)
        .arg("--no-inject"));
    assert!(out.status.success());
}

#[test]
fn system_python_is_accepted_on_linux_where_ld_preload_survives() {
    if !cfg!(target_os = "linux") || !Path::new("/usr/bin/python3").exists() {
        return;
    }
    let w = World::new();
    let out = run(w
        .cmd(MLX_SAFE_PYTHON)
        .env("MLX_SAFE_PYTHON_BIN", "/usr/bin/python3")
        .args(["-c", "import os; print(os.environ['LD_PRELOAD'])"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        handshake_library().display().to_string()
    );
}

// ------------------------------------------------------------ injection

#[test]
fn the_users_preloads_are_kept_after_ours_without_duplicates() {
    let w = World::new();
    let fake = w.fake_python();
    let lib = handshake_library().display().to_string();
    let out = run(w
        .cmd(MLX_SAFE_PYTHON)
        .env("MLX_SAFE_PYTHON_BIN", &fake)
        .env("LD_PRELOAD", format!("libm.so.6 {lib}")));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("preload[{lib}:libm.so.6]")),
        "{stdout}"
    );
}

#[test]
fn a_missing_library_stops_with_the_places_searched() {
    let w = World::new();
    let fake = w.fake_python();
    let out = run(w
        .cmd(MLX_SAFE_PYTHON)
        .env("MLX_SAFE_PYTHON_BIN", &fake)
        .env("METALGUARD_DYLIB", w.path("nowhere/lib.so")));
    assert_eq!(out.status.code(), Some(125));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("nowhere/lib.so") && stderr.contains("--no-inject"),
        "{stderr}"
    );

    // Without the override: a launcher installed alone names every default place.
    let lonely = w.path("prefix/bin/mlx-safe-python");
    std::fs::create_dir_all(lonely.parent().unwrap()).unwrap();
    std::fs::copy(MLX_SAFE_PYTHON, &lonely).unwrap();
    let out = run(w
        .cmd(lonely.to_str().unwrap())
        .env_remove("METALGUARD_DYLIB")
        .env("MLX_SAFE_PYTHON_BIN", &fake));
    assert_eq!(out.status.code(), Some(125));
    let stderr = text(&out.stderr);
    for place in [
        "prefix/bin/libmetal_guard_inject",
        "prefix/lib/libmetal_guard_inject",
        "prefix/lib/metal_guard/libmetal_guard_inject",
    ] {
        assert!(stderr.contains(place), "{place} in {stderr}");
    }
    // Placed in the wheel layout, it is found.
    let wheel = w
        .path("prefix/lib/metal_guard")
        .join(if cfg!(target_os = "macos") {
            "libmetal_guard_inject.dylib"
        } else {
            "libmetal_guard_inject.so"
        });
    std::fs::create_dir_all(wheel.parent().unwrap()).unwrap();
    std::fs::copy(handshake_library(), &wheel).unwrap();
    let out = run(w
        .cmd(lonely.to_str().unwrap())
        .env_remove("METALGUARD_DYLIB")
        .env("MLX_SAFE_PYTHON_BIN", &fake));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("preload[{}]", wheel.display())));
}

/// Wait until the watcher has finished (its handshake folder is gone).
fn wait_for_watchers(w: &World) {
    let started = Instant::now();
    while std::fs::read_dir(w.path("tmp")).unwrap().next().is_some() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "watcher did not finish"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn check_proves_the_handshake_reaches_python() {
    let w = World::new();
    if !python3_available(&w) {
        panic!("python3 is needed for this test");
    }
    let out = run(w.cmd(MLX_SAFE_PYTHON).arg("--check"));
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("the guard announced itself from pid"),
        "{stdout}"
    );
    assert!(stdout.contains("result: protected"), "{stdout}");

    // A library that loads but never announces itself: --check says so.
    let out = run(w
        .cmd(MLX_SAFE_PYTHON)
        .env("METALGUARD_DYLIB", libm_path())
        .arg("--check"));
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("NO HANDSHAKE") && stdout.contains("NOT protected"),
        "{stdout}"
    );
    wait_for_watchers(&w);
}

fn libm_path() -> PathBuf {
    [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/lib/aarch64-linux-gnu/libm.so.6",
        "/usr/lib/libm.so.6",
        "/lib64/libm.so.6",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect("libm.so.6 is present")
}

#[test]
fn a_run_warns_when_the_guard_does_not_load_and_is_silent_when_it_does() {
    let w = World::new();
    if !python3_available(&w) {
        panic!("python3 is needed for this test");
    }
    let out = run(w.cmd(MLX_SAFE_PYTHON).args(["-c", "print('ok')"]));
    assert!(out.status.success());
    wait_for_watchers(&w);
    assert_eq!(
        text(&out.stderr),
        "",
        "a guarded run prints nothing of its own"
    );

    // The watcher's warning goes to stderr after Python exits: collect it through a file.
    let log = w.path("stderr.log");
    let status = w
        .cmd(MLX_SAFE_PYTHON)
        .env("METALGUARD_DYLIB", libm_path())
        .args(["-c", "print('unguarded')"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    wait_for_watchers(&w);
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(
        stderr.contains("did not load") && stderr.contains("NOT protected"),
        "{stderr}"
    );
}

#[test]
fn a_failed_exec_is_reported_once_without_a_watcher_warning() {
    let w = World::new();
    // Executable, but neither a script nor a binary the kernel can run.
    let garbage = w.write_exec("bad/python3", "");
    std::fs::write(&garbage, b"\x00\x01not a program").unwrap();
    let log = w.path("stderr.log");
    let status = w
        .cmd(MLX_SAFE_PYTHON)
        .env("MLX_SAFE_PYTHON_BIN", &garbage)
        .stderr(std::fs::File::create(&log).unwrap())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(126));
    wait_for_watchers(&w);
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(stderr.contains("cannot run"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn the_gate_speaks_before_a_missing_library() {
    let w = World::new();
    let fake = w.fake_python();
    w.add_recent_panic();
    let out = run(w
        .cmd(MLX_SAFE_PYTHON)
        .env("MLX_SAFE_PYTHON_BIN", &fake)
        .env("METALGUARD_DYLIB", w.path("nowhere.so")));
    assert_eq!(out.status.code(), Some(10), "{}", text(&out.stderr));
}

#[test]
fn multiprocessing_spawn_children_are_guarded() {
    let w = World::new();
    if !python3_available(&w) {
        panic!("python3 is needed for this test");
    }
    let script = w.write_exec(
        "mp.py",
        "import multiprocessing as mp, os\n\ndef child(q):\n    q.put('libannounce.so' in open('/proc/self/maps').read())\n\nif __name__ == '__main__':\n    mp.set_start_method('spawn')\n    q = mp.Queue()\n    p = mp.Process(target=child, args=(q,))\n    p.start()\n    print('child guarded:', q.get())\n    p.join()\n",
    );
    let out = run(w.cmd(MLX_SAFE_PYTHON).arg(&script));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "child guarded: True");
}

// ------------------------------------------------------------ the gate

#[test]
fn a_cooldown_blocks_with_10_and_force_and_pip_run_anyway() {
    let w = World::new();
    let fake = w.fake_python();
    w.add_recent_panic();
    let out = run(w
        .cmd(MLX_SAFE_PYTHON)
        .env("MLX_SAFE_PYTHON_BIN", &fake)
        .arg("train.py"));
    assert_eq!(out.status.code(), Some(10), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("blocked") && stderr.contains("MLX_SAFE_PYTHON_FORCE=1"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "Python must not start");

    let out = run(w
        .cmd(MLX_SAFE_PYTHON)
        .env("MLX_SAFE_PYTHON_BIN", &fake)
        .env("MLX_SAFE_PYTHON_FORCE", "1")
        .arg("train.py"));
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("arg[train.py]"));
    assert!(text(&out.stderr).contains("warning"));

    for module in ["pip", "pip3", "build", "venv", "virtualenv", "ensurepip"] {
        let out = run(w
            .cmd(MLX_SAFE_PYTHON)
            .env("MLX_SAFE_PYTHON_BIN", &fake)
            .args(["-m", module, "--version"]));
        assert!(out.status.success(), "-m {module}: {}", text(&out.stderr));
        assert_eq!(text(&out.stderr), "", "-m {module} skips the gate silently");
    }

    let out = run(w.cmd(METAL_GUARD).args(["run", "--"]).arg(&fake).arg("x"));
    assert_eq!(out.status.code(), Some(10), "{}", text(&out.stderr));
    assert!(text(&out.stderr).starts_with("metal-guard run: blocked"));
    let out = run(w.cmd(METAL_GUARD).args(["run", "--force", "--"]).arg(&fake));
    assert!(out.status.success());
}

// ------------------------------------------------------------ metal-guard run: scripts

#[test]
fn run_follows_an_env_shebang_without_running_env() {
    let w = World::new();
    let fake = w.fake_python();
    std::fs::copy(&fake, w.path("bin/python3")).unwrap();
    // `env` at a path that does not exist: the kernel could not run this
    // script, so it only works when the launcher execs the interpreter itself.
    let script = w.write_exec("bin/tool", "#!/nonexistent/env -S python3 -u\nprint('x')\n");
    let path = format!(
        "{}:{}",
        w.path("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = run(w
        .cmd(METAL_GUARD)
        .env("PATH", &path)
        .args(["run", "tool", "--flag"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "arg[-u]\narg[{}]\narg[--flag]\n",
            script.display()
        )),
        "{stdout}"
    );
}

#[test]
fn run_follows_a_pip_sh_trampoline_without_running_sh() {
    let w = World::new();
    let fake = w.fake_python();
    let spaced = w.path("Application Support/venv/bin/python");
    std::fs::create_dir_all(spaced.parent().unwrap()).unwrap();
    std::fs::copy(&fake, &spaced).unwrap();
    let script = w.write_exec(
        "bin/mlx_lm.generate",
        &format!(
            "#!/nonexistent/sh\n'''exec' \"{}\" \"$0\" \"$@\"\n' '''\nimport sys\n",
            spaced.display()
        ),
    );
    let out = run(w
        .cmd(METAL_GUARD)
        .args(["run", "--"])
        .arg(&script)
        .arg("--model"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("arg[{}]\narg[--model]\n", script.display())),
        "{stdout}"
    );
}

#[test]
fn run_with_real_python_scripts_and_check() {
    let w = World::new();
    if !python3_available(&w) {
        panic!("python3 is needed for this test");
    }
    let script = w.write_exec(
        "bin/hello",
        "#!/usr/bin/env python3\nimport os, sys\nprint(sys.argv[1:], os.environ['LD_PRELOAD'].split(':')[0].endswith('libannounce.so'))\nsys.exit(3)\n",
    );
    let out = run(w
        .cmd(METAL_GUARD)
        .args(["run", "--"])
        .arg(&script)
        .args(["a", "-b"]));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "['a', '-b'] True");

    let out = run(w
        .cmd(METAL_GUARD)
        .args(["run", "--check", "--"])
        .arg(&script));
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("#!/usr/bin/env python3"), "{stdout}");
    assert!(stdout.contains("result: protected"), "{stdout}");

    let out = run(w
        .cmd(METAL_GUARD)
        .args(["run", "--", "no-such-command-here"]));
    assert_eq!(out.status.code(), Some(127));
}

#[test]
fn run_without_a_command_is_a_usage_error() {
    let w = World::new();
    let out = run(w.cmd(METAL_GUARD).arg("run"));
    assert_eq!(out.status.code(), Some(64));
    assert!(!text(&out.stderr).is_empty());
}
