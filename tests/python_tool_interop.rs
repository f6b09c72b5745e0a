//! Ring 6: the real Python tool 1.1.0 (from PyPI, in its own venv) and ours
//! in one HOME. Each shared state file written by one is read by the other
//! to the same verdict, in several time zones; each holds the MLX lock
//! against the other.
//!
//! `METALGUARD_PYTHON_TOOL` names the venv's `python` (`.ci/run` creates it:
//! `python3 -m venv target/python-tool-1.1.0 && .../pip install
//! metal-guard==1.1.0`). Without it the ring is skipped, except under CI,
//! where a missing Python tool is a failure.

mod common;

use common::ips_at;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use time::{Duration, OffsetDateTime};

const OURS: &str = env!("CARGO_BIN_EXE_metal-guard");
const ZONES: [&str; 3] = ["UTC", "America/Los_Angeles", "Asia/Tokyo"];

fn python_tool() -> Option<PathBuf> {
    match std::env::var_os("METALGUARD_PYTHON_TOOL") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ if std::env::var_os("CI").is_some() => {
            panic!("CI must provide METALGUARD_PYTHON_TOOL (the Python tool 1.1.0's venv python)")
        }
        _ => {
            eprintln!(
                "SKIP: METALGUARD_PYTHON_TOOL is not set (the Python tool 1.1.0's venv python)"
            );
            None
        }
    }
}

struct Home {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Home {
    fn new() -> Home {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        std::fs::create_dir_all(root.join("home")).unwrap();
        std::fs::create_dir_all(root.join("reports")).unwrap();
        Home { _tmp: tmp, root }
    }

    fn home(&self) -> PathBuf {
        self.root.join("home")
    }

    fn env(&self, c: &mut Command, tz: &str) {
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("TZ", tz)
            .env("METALGUARD_PANIC_REPORT_DIRS", self.root.join("reports"))
            .stdin(Stdio::null());
    }

    fn ours(&self, tz: &str, args: &[&str]) -> Output {
        let mut c = Command::new(OURS);
        self.env(&mut c, tz);
        c.args(args).output().unwrap()
    }

    /// Python code run by the Python tool's interpreter.
    fn python(&self, py: &Path, tz: &str, code: &str) -> Output {
        let mut c = Command::new(py);
        self.env(&mut c, tz);
        c.args(["-c", code]).output().unwrap()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Ours: `cooldown_until` of `panic-gate --json`, and its exit code.
fn our_gate(h: &Home, tz: &str) -> (i32, Option<OffsetDateTime>) {
    let out = h.ours(tz, &["panic-gate", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)));
    let until = v["cooldown_until"]
        .as_str()
        .map(|s| OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap());
    (out.status.code().unwrap(), until)
}

/// The Python tool's verdict exit code (its own API), or its error.
const PY_VERDICT: &str =
    "import metal_guard as m\nv = m.evaluate_panic_cooldown()\nprint(v.exit_code)";

#[test]
fn a_sentinel_written_by_either_tool_means_the_same_in_every_zone() {
    let Some(py) = python_tool() else { return };
    for tz in ZONES {
        // The Python tool writes a 2 h cooldown; ours holds it for 2 h.
        let h = Home::new();
        let out = h.python(
            &py,
            tz,
            "import metal_guard as m\nm.mark_panic_sentinel_cooldown(2.0, reason='interop')",
        );
        assert!(out.status.success(), "{tz}: {}", text(&out.stderr));
        let (code, until) = our_gate(&h, tz);
        assert_eq!(code, 2, "{tz}: ours must block where 1.1.0 does");
        let until = until.expect("a cooldown end");
        let want = OffsetDateTime::now_utc() + Duration::hours(2);
        assert!(
            (until - want).abs() < Duration::minutes(5),
            "{tz}: ours holds until {until}, 1.1.0 meant about {want}"
        );
        let py_out = h.python(&py, tz, PY_VERDICT);
        assert_eq!(
            text(&py_out.stdout).trim(),
            "2",
            "{tz}: {}",
            text(&py_out.stderr)
        );

        // Ours writes the sentinel (a postmortem after a fresh IOGPU panic);
        // the Python tool reads it without crashing and blocks too.
        let h = Home::new();
        ips_at(
            "64-ips-reconstructed-iogpu-completememory-550-mlx3186-ronm92130.ips",
            &h.root.join("reports"),
            OffsetDateTime::now_utc() - Duration::minutes(10),
        );
        let bundle = h.root.join("bundle");
        let out = h.ours(tz, &["postmortem", bundle.to_str().unwrap()]);
        assert!(out.status.success(), "{tz}: {}", text(&out.stderr));
        std::fs::remove_dir_all(h.root.join("reports")).unwrap();
        std::fs::create_dir(h.root.join("reports")).unwrap();
        // With our panic ledger, then with the sentinel alone.
        for ledger_too in [true, false] {
            if !ledger_too {
                std::fs::remove_file(h.home().join(".cache/metal-guard/panics.jsonl")).unwrap();
            }
            let py_out = h.python(&py, tz, PY_VERDICT);
            assert!(
                py_out.status.success(),
                "{tz}: 1.1.0 cannot read our files: {}",
                text(&py_out.stderr)
            );
            assert_eq!(
                text(&py_out.stdout).trim(),
                "2",
                "{tz}, ledger {ledger_too}"
            );
            let (code, _) = our_gate(&h, tz);
            assert_eq!(code, 2, "{tz}, ledger {ledger_too}");
        }
    }
}

#[test]
fn each_tool_respects_the_others_mlx_lock() {
    let Some(py) = python_tool() else { return };
    let h = Home::new();
    // A live 1.1.0 holder: ours sees it held and refuses to run.
    let mut holder = Command::new(&py);
    h.env(&mut holder, "UTC");
    let mut holder = holder
        .args([
            "-c",
            "import metal_guard as m, sys, time\nm.acquire_mlx_lock('py-holder')\nprint('held', flush=True)\nsys.stdin.read()",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(holder.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "held");
    }
    let status = h.ours("UTC", &["lock", "status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["held"], true, "{v:#}");
    assert!(v["warnings"].as_array().unwrap().is_empty(), "{v:#}");
    let run = h.ours("UTC", &["lock", "run", "ours", "--", "true"]);
    assert_eq!(run.status.code(), Some(2), "{}", text(&run.stderr));
    drop(holder.stdin.take());
    holder.wait().unwrap();

    // A live holder of ours: 1.1.0 raises MLXLockConflict.
    let mut ours = Command::new(OURS);
    h.env(&mut ours, "UTC");
    let mut ours = ours
        .args(["lock", "run", "ours", "--", "sleep", "5"])
        .spawn()
        .unwrap();
    let record = h.home().join(".metal-guard/locks/mlx_exclusive.lock");
    for _ in 0..200 {
        if record.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = h.python(
        &py,
        "UTC",
        "import metal_guard as m\ntry:\n    m.acquire_mlx_lock('py2')\n    print('acquired')\nexcept m.MLXLockConflict:\n    print('conflict')",
    );
    assert_eq!(
        text(&out.stdout).trim(),
        "conflict",
        "{}",
        text(&out.stderr)
    );
    let _ = ours.kill();
    let _ = ours.wait();
}

/// Every command line of the Python tool gives the same exit status with
/// ours (ours may print more), in a HOME with no panics, and in one where an
/// app embedding the Python tool left a GPU section open in its default log.
#[test]
fn every_python_tool_command_line_exits_the_same_with_ours() {
    let Some(py) = python_tool() else { return };
    let theirs = py.with_file_name("metal-guard");
    let lines: &[&[&str]] = &[
        &["status"],
        &["--json", "status"],
        &["status", "--json"],
        &["panics"],
        &["--json", "panics"],
        &["panics", "--since-hours", "24"],
        &["breadcrumb"],
        &["breadcrumb", "-n", "5"],
        &["mode"],
        &["--json", "mode"],
        &["panic-gate"],
        &["--json", "panic-gate"],
        &["panic-gate", "--json"],
        &["orphan-scan"],
        &["orphan-scan", "--json"],
        &["orphan-scan", "--threshold-sec", "90"],
        &["ack"],
        &["ack", "--json"],
        &["--json", "ack"],
        &["guard"],
        &["guard", "status"],
        &["status-write", "--once"],
        &["status-write", "--once", "--json"],
        &["postmortem", "bundle"],
        &["diagnose"],
        &["--version"],
    ];
    let run = |h: &Home, program: &Path, args: &[&str]| -> i32 {
        let mut c = Command::new(program);
        h.env(&mut c, "UTC");
        c.current_dir(&h.root)
            .args(args)
            .output()
            .unwrap()
            .status
            .code()
            .unwrap_or(-1)
    };
    for (case, open_section) in [("clean", false), ("open section", true)] {
        for args in lines {
            let (a, b) = (Home::new(), Home::new());
            if open_section {
                for h in [&a, &b] {
                    let logs = h.root.join("logs");
                    std::fs::create_dir_all(&logs).unwrap();
                    let when = OffsetDateTime::now_utc() - Duration::minutes(10);
                    let stamp = when
                        .format(time::macros::format_description!(
                            "[year]-[month]-[day] [hour]:[minute]:[second]"
                        ))
                        .unwrap();
                    std::fs::write(
                        logs.join("metal_breadcrumb.log"),
                        format!("[{stamp}] SUBPROC_PRE: mlx-community/x\n"),
                    )
                    .unwrap();
                }
            }
            let (t, o) = (run(&a, &theirs, args), run(&b, Path::new(OURS), args));
            assert_eq!(o, t, "{case}: metal-guard {}", args.join(" "));
        }
    }
}
