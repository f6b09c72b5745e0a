//! The state files and user-named paths under attack, through the real
//! `metal-guard` binary in a temporary HOME: nothing the user owns is moved
//! or written through, no special file hangs a command or exhausts memory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_metal-guard")
}

struct Home {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Home {
    fn new() -> Home {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        std::fs::create_dir_all(root.join("home/.cache/metal-guard")).unwrap();
        std::fs::create_dir_all(root.join("home/.metal-guard/locks")).unwrap();
        std::fs::create_dir_all(root.join("reports")).unwrap();
        Home { _tmp: tmp, root }
    }

    fn home(&self) -> PathBuf {
        self.root.join("home")
    }

    fn state(&self, name: &str) -> PathBuf {
        self.home().join(".cache/metal-guard").join(name)
    }

    /// `metal-guard ARGS` with this HOME and none of the caller's settings.
    fn run(&self, args: &[&str], env: &[(&str, &Path)]) -> Output {
        let mut c = Command::new(bin());
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("METALGUARD_PANIC_REPORT_DIRS", self.root.join("reports"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap();
        let started = Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                return child.wait_with_output().unwrap();
            }
            if started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "metal-guard {args:?} hung (killed after 20 s); stderr: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path and a mode.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "{path:?}");
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What a special file in a state file's place must never do: hang a
/// command, or make it read without end.
#[test]
fn special_files_in_every_state_place_neither_hang_nor_exhaust() {
    let places = [
        "cadence.json",
        "breaker.json",
        "panics.jsonl",
        "panic-sentinel.json",
        "status.json",
    ];
    let commands: &[&[&str]] = &[
        &["panic-gate"],
        &["status"],
        &["status", "--json"],
        &["breaker", "status"],
        &["diagnose"],
        &["lock", "status"],
        &["lock", "run", "t", "--", "true"],
        &["orphan-scan"],
        &["cadence", "m"],
    ];
    for special in ["fifo", "dev-zero"] {
        let h = Home::new();
        let make = |p: &Path| match special {
            "fifo" => mkfifo(p),
            _ => std::os::unix::fs::symlink("/dev/zero", p).unwrap(),
        };
        for name in places {
            make(&h.state(name));
        }
        make(&h.home().join(".metal-guard/locks/mlx_exclusive.lock"));
        let log = h.root.join("breadcrumbs.log");
        make(&log);
        for args in commands {
            let out = h.run(args, &[("METALGUARD_BREADCRUMB_PATH", &log)]);
            let stderr = text(&out.stderr);
            assert!(
                out.status.code().is_some_and(|c| c < 64),
                "{special}: {args:?}: {:?}\n{stderr}",
                out.status
            );
            assert!(
                !stderr.contains("panicked"),
                "{special}: {args:?}: {stderr}"
            );
        }
    }
}

#[test]
fn a_folder_the_user_names_is_never_moved_and_never_to_be_removed() {
    let h = Home::new();
    let documents = h.home().join("Documents");
    std::fs::create_dir(&documents).unwrap();
    std::fs::write(documents.join("thesis.txt"), b"years of work").unwrap();
    for out_arg in [
        documents.display().to_string(),
        format!("{}/", documents.display()),
        "/".to_string(),
    ] {
        let out = h.run(&["status-write", "--out", &out_arg], &[]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "--out {out_arg}: {stderr}");
        assert!(!stderr.contains("rm "), "never advise removing: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
    assert_eq!(
        std::fs::read(documents.join("thesis.txt")).unwrap(),
        b"years of work"
    );
    let names: Vec<_> = std::fs::read_dir(h.home())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("Documents"))
        .collect();
    assert_eq!(names, ["Documents"], "nothing renamed beside it");

    // MLX_LOCK_PATH naming a folder: refused, the folder stays.
    let out = h.run(
        &["lock", "run", "t", "--", "true"],
        &[("MLX_LOCK_PATH", &documents)],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(documents.join("thesis.txt").is_file());
}

#[test]
fn a_symlinked_state_file_is_replaced_never_written_through() {
    let h = Home::new();
    let outside = h.root.join("outside.txt");
    std::fs::write(&outside, b"not yours").unwrap();
    std::os::unix::fs::symlink(&outside, h.state("cadence.json")).unwrap();
    let out = h.run(&["cadence", "m"], &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("was a symlink"), "it says so: {stderr}");
    assert_eq!(std::fs::read(&outside).unwrap(), b"not yours");
    let meta = std::fs::symlink_metadata(h.state("cadence.json")).unwrap();
    assert!(meta.is_file());
}
