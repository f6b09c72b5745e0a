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

/// Times and numbers at and past the edges of what can be represented, in
/// every state file and flag: every command answers, none panics.
#[test]
fn extreme_times_and_numbers_never_crash_a_command() {
    let commands: &[&[&str]] = &[
        &["panic-gate"],
        &["panic-gate", "--json"],
        &["status"],
        &["status", "--json"],
        &["breaker", "status"],
        &["ack"],
        &["lock", "status", "--json"],
        &["cadence", "m"],
        &["orphan-scan"],
    ];
    let times = [
        "253402300799",
        "1e300",
        "-1e300",
        "-62135596800",
        "\"9999-12-31T23:59:59Z\"",
        "\"0001-01-01T00:00:00Z\"",
    ];
    for t in times {
        let h = Home::new();
        let w = |name: &str, body: String| std::fs::write(h.state(name), body).unwrap();
        w(
            "panic-sentinel.json",
            format!(r#"{{"cooldown_until": {t}, "created_at": {t}, "reason": "x"}}"#),
        );
        w("cadence.json", format!(r#"{{"m": {t}, "other": {t}}}"#));
        w(
            "breaker.json",
            format!(
                r#"{{"cooldown_until": {t}, "entered_at": {t}, "panic_count": 18446744073709551615, "window_sec": {t}, "threshold": 0}}"#
            ),
        );
        w(
            "panics.jsonl",
            format!("{{\"ts\": {t}, \"signature\": \"pending_memory_set\"}}\n"),
        );
        std::fs::write(
            h.home().join(".metal-guard/locks/mlx_exclusive.lock"),
            format!(r#"{{"pid": 9223372036854775807, "label": "x", "started_at": {t}}}"#),
        )
        .unwrap();
        let log = h.root.join("breadcrumbs.log");
        std::fs::write(
            &log,
            "9999-12-31T23:59:59Z SUBPROC_PRE model_load pid=1\n0001-01-01T00:00:00Z SUBPROC_PRE x\n",
        )
        .unwrap();
        for args in commands {
            let out = h.run(args, &[("METALGUARD_BREADCRUMB_PATH", &log)]);
            let stderr = text(&out.stderr);
            assert!(
                !stderr.contains("panicked") && out.status.code().is_some_and(|c| c < 64),
                "{t}: {args:?}: {:?}\n{stderr}",
                out.status
            );
        }
        // The sentinel holds at most 72 h from now whatever it says.
        let out = h.run(&["panic-gate", "--json"], &[]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if let Some(until) = v["cooldown_until"].as_str() {
            let until =
                time::OffsetDateTime::parse(until, &time::format_description::well_known::Rfc3339)
                    .unwrap();
            assert!(until <= time::OffsetDateTime::now_utc() + time::Duration::hours(73));
        }
    }
    // Flags past their range are usage errors (64), never a crash.
    let h = Home::new();
    for args in [
        &["orphan-scan", "--threshold-sec", "1e19"][..],
        &["orphan-scan", "--threshold-sec", "inf"],
        &["cadence", "m", "--min-interval", "1e300"],
        &["diagnose", "--since", "1e300"],
    ] {
        let out = h.run(args, &[]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// A `HOME` or breadcrumb path that is not UTF-8 is shown lossily in JSON;
/// nothing panics.
#[test]
fn paths_that_are_not_utf8_are_rendered_lossily() {
    use std::os::unix::ffi::OsStrExt;
    let h = Home::new();
    let odd = h.root.join(std::ffi::OsStr::from_bytes(b"home-\xff\xfe"));
    std::fs::create_dir_all(odd.join(".cache/metal-guard")).unwrap();
    let log = h.root.join(std::ffi::OsStr::from_bytes(b"crumbs-\xff.log"));
    for args in [
        &["status", "--json"][..],
        &["status-write", "--once"],
        &["lock", "status", "--json"],
        &["guard", "status", "--json"],
        &["panic-gate", "--json"],
    ] {
        let out = h.run(
            args,
            &[("HOME", &odd), ("METALGUARD_BREADCRUMB_PATH", &log)],
        );
        let stderr = text(&out.stderr);
        assert!(
            !stderr.contains("panicked") && out.status.code().is_some_and(|c| c < 64),
            "{args:?}: {:?}\n{stderr}",
            out.status
        );
        if args.contains(&"--json") {
            let v: Result<serde_json::Value, _> = serde_json::from_slice(&out.stdout);
            assert!(v.is_ok(), "{args:?}: {}", text(&out.stdout));
        }
    }
}

/// Killed at any moment, a writer leaves the old file or the new one, never
/// a torn one; the temporaries a killed run leaves are its own names only.
#[test]
fn a_writer_killed_at_any_moment_leaves_a_whole_file() {
    let h = Home::new();
    let out = h.root.join("status.json");
    let cadence = h.state("cadence.json");
    let mut delay_us: u64 = 137;
    for round in 0..40 {
        let args: Vec<String> = if round % 2 == 0 {
            vec![
                "status-write".into(),
                "--out".into(),
                out.display().to_string(),
            ]
        } else {
            vec!["cadence".into(), format!("model-{round}")]
        };
        let mut c = Command::new(bin());
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", h.home())
            .env("METALGUARD_PANIC_REPORT_DIRS", h.root.join("reports"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = c.spawn().unwrap();
        std::thread::sleep(Duration::from_micros(delay_us));
        let _ = child.kill();
        let _ = child.wait();
        // A spread of moments, deterministic: 0.1 ms to about 20 ms.
        delay_us = (delay_us * 7919 + 104_729) % 20_000 + 100;
        for file in [&out, &cadence] {
            if let Ok(bytes) = std::fs::read(file) {
                let v: Result<serde_json::Value, _> = serde_json::from_slice(&bytes);
                assert!(v.is_ok(), "round {round}: {file:?} is torn: {bytes:?}");
            }
        }
    }
    for dir in [h.root.clone(), h.state("")] {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.contains(".tmp.") {
                assert!(
                    name.starts_with(".status.json.tmp.") || name.starts_with(".cadence.json.tmp."),
                    "a stray temporary: {name}"
                );
            }
        }
    }
}
