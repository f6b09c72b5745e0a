//! End-to-end tests of the gate commands as a user runs them: a temporary
//! HOME, real report folders, real processes racing.

mod common;

use common::{fixtures, ips_at};
use metal_guard_core::forensics::{scan_reports, ReportScan};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use time::macros::format_description;
use time::{Duration, OffsetDateTime};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_metal-guard")
}

/// A command with a private HOME and none of the caller's metal-guard settings.
fn mg(home: &Path) -> Command {
    let mut c = Command::new(bin());
    c.env("HOME", home)
        .env_remove("MLX_LOCK_PATH")
        .env_remove("METALGUARD_PANIC_REPORT_DIRS")
        .env_remove("METALGUARD_BREADCRUMB_PATH");
    for (k, _) in std::env::vars() {
        if k.starts_with("METALGUARD_") {
            c.env_remove(k);
        }
    }
    c
}

fn gate_json(home: &Path, reports: &Path) -> (i32, serde_json::Value) {
    let out = mg(home)
        .args(["panic-gate", "--json", "--reports"])
        .arg(reports)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code().unwrap(), v)
}

#[test]
fn one_iogpu_ips_panic_an_hour_ago_blocks() {
    let home = tempfile::tempdir().unwrap();
    let reports = tempfile::tempdir().unwrap();
    let hour_ago = OffsetDateTime::now_utc() - Duration::hours(1);
    ips_at(
        "64-ips-reconstructed-iogpu-completememory-550-mlx3186-ronm92130.ips",
        reports.path(),
        hour_ago,
    );
    let (code, v) = gate_json(home.path(), reports.path());
    assert_eq!(code, 2, "{v:#}");
    assert_eq!(v["exit_code"], 2);
    assert_eq!(v["recent_panics_24h"], 1);
    assert_eq!(v["recent_panics_72h"], 1);
    assert!(v["cooldown_until"].is_string());
    assert!(v["reason"].as_str().unwrap().contains("cooldown"));
    // The human form says why, until when and how to clear.
    let out = mg(home.path())
        .args(["panic-gate", "--reports"])
        .arg(reports.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("why:") && text.contains("until:") && text.contains("to clear:"),
        "{text}"
    );
    // The panic was recorded in the ledger, so it keeps counting after the report rotates away.
    std::fs::remove_dir_all(reports.path()).unwrap();
    std::fs::create_dir(reports.path()).unwrap();
    let (code, _) = gate_json(home.path(), reports.path());
    assert_eq!(code, 2);
    // The switch turns the gate off.
    let out = mg(home.path())
        .env("METALGUARD_PANIC_GATE_DISABLED", "1")
        .args(["panic-gate", "--reports"])
        .arg(reports.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

/// The report right after a kernel panic often ends in the zeros of blocks
/// that never reached the disk: its panic still counts.
#[test]
fn a_report_with_a_torn_nul_tail_still_blocks() {
    let reports = tempfile::tempdir().unwrap();
    let hour_ago = OffsetDateTime::now_utc() - Duration::hours(1);
    let report = ips_at(
        "64-ips-reconstructed-iogpu-completememory-550-mlx3186-ronm92130.ips",
        reports.path(),
        hour_ago,
    );
    let whole = std::fs::read(&report).unwrap();
    // The whole text then zeros, and the text cut short just after the
    // panic line (the JSON body unterminated) then zeros.
    let panic_line_end = whole
        .windows(20)
        .position(|w| w == b"@IOGPUMemory.cpp:550")
        .unwrap()
        + 20;
    for keep in [whole.len(), panic_line_end + 8] {
        let mut bytes = whole[..keep].to_vec();
        bytes.extend(std::iter::repeat_n(0u8, 16 * 1024));
        std::fs::write(&report, bytes).unwrap();
        // A fresh HOME each time: the panic ledger must not answer for the report.
        let home = tempfile::tempdir().unwrap();
        let (code, v) = gate_json(home.path(), reports.path());
        assert_eq!(code, 2, "kept {keep} bytes: {v:#}");
        assert_eq!(v["recent_panics_24h"], 1);
    }
}

#[test]
fn non_iogpu_panics_an_hour_ago_proceed() {
    let home = tempfile::tempdir().unwrap();
    let reports = tempfile::tempdir().unwrap();
    let hour_ago = OffsetDateTime::now_utc() - Duration::hours(1);
    ips_at(
        "60-ips-verbatim-panic-base-socd-halt-godot106106.ips",
        reports.path(),
        hour_ago,
    );
    // The text negatives, stripped of their own dates so their time is the
    // file's modification time: an hour ago too.
    let mut n = 0;
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.contains("-neg-") || !name.ends_with(".txt") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let kept: String = text
            .lines()
            .filter(|l| {
                let t = l.trim_start();
                !t.starts_with("Date/Time:") && !t.starts_with("Calendar:")
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let dest = reports.path().join(format!("panic-full-neg{n}.panic"));
        std::fs::write(&dest, kept).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&dest)
            .unwrap()
            .set_modified((hour_ago).into())
            .unwrap();
        n += 1;
    }
    assert!(n >= 5);
    // The reports are seen, are an hour old, and none is IOGPU.
    let outcome = scan_reports(&ReportScan {
        dirs: vec![reports.path().to_path_buf()],
        since: Some(hour_ago - Duration::hours(2)),
    });
    let recent: Vec<_> = outcome
        .reports
        .iter()
        .filter(|r| {
            r.time
                .is_some_and(|t| (t - hour_ago).abs() < Duration::minutes(5))
        })
        .collect();
    assert!(recent.len() >= 2, "{:#?}", outcome);
    assert!(outcome.reports.iter().all(|r| !r.is_iogpu()));
    let (code, v) = gate_json(home.path(), reports.path());
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["recent_panics_72h"], 0);
}

#[test]
fn unreadable_report_folder_fails_the_gate_with_3() {
    let home = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    // A folder that cannot be listed by anyone, root included: a symlink loop.
    let looped = scratch.path().join("DiagnosticReports");
    std::os::unix::fs::symlink(&looped, &looped).unwrap();
    let out = mg(home.path())
        .args(["panic-gate", "--reports"])
        .arg(&looped)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot list panic reports"));
    let out = mg(home.path())
        .args(["panic-gate", "--json", "--reports"])
        .arg(&looped)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["exit_code"], 3);
    // A folder without read permission (meaningful when not root).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        use std::os::unix::fs::PermissionsExt;
        let locked = tempfile::tempdir().unwrap();
        std::fs::set_permissions(locked.path(), std::fs::Permissions::from_mode(0o000)).unwrap();
        let out = mg(home.path())
            .args(["panic-gate", "--reports"])
            .arg(locked.path())
            .output()
            .unwrap();
        std::fs::set_permissions(locked.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(out.status.code(), Some(3));
    }
}

fn race(home: &Path, n: usize, args: &[&str]) -> Vec<Output> {
    // Start all, then collect: they run concurrently.
    let children: Vec<_> = (0..n)
        .map(|_| {
            mg(home)
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect()
}

#[test]
fn eight_racing_cadence_checks_admit_exactly_one_twenty_times() {
    for round in 0..20 {
        let home = tempfile::tempdir().unwrap();
        let model = format!("mlx-community/fresh-model-{round}");
        let outs = race(home.path(), 8, &["cadence", &model]);
        let codes: Vec<i32> = outs.iter().map(|o| o.status.code().unwrap()).collect();
        assert_eq!(
            codes.iter().filter(|&&c| c == 0).count(),
            1,
            "round {round}: {codes:?}"
        );
        assert_eq!(
            codes.iter().filter(|&&c| c == 2).count(),
            7,
            "round {round}: {codes:?}"
        );
        let file = home.path().join(".cache/metal-guard/cadence.json");
        let map: std::collections::BTreeMap<String, f64> =
            serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        assert_eq!(map.len(), 1);
    }
}

#[test]
fn eight_racing_lock_runs_admit_exactly_one_twenty_times() {
    for round in 0..20 {
        let home = tempfile::tempdir().unwrap();
        // The holder keeps the lock until the test says so, after every
        // other racer has given up: no timing assumption at all.
        let go = home.path().join("go");
        let script = format!("while [ ! -e '{}' ]; do sleep 0.02; done", go.display());
        let mut children: Vec<_> = (0..8)
            .map(|_| {
                mg(home.path())
                    .args(["lock", "run", "race", "--", "sh", "-c", &script])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut codes: Vec<Option<i32>> = vec![None; 8];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while codes.iter().filter(|c| c.is_some()).count() < 7
            && std::time::Instant::now() < deadline
        {
            for (c, child) in codes.iter_mut().zip(children.iter_mut()) {
                if c.is_none() {
                    if let Some(st) = child.try_wait().unwrap() {
                        *c = st.code();
                    }
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        std::fs::write(&go, b"").unwrap();
        for (c, child) in codes.iter_mut().zip(children.iter_mut()) {
            if c.is_none() {
                *c = child.wait().unwrap().code();
            }
        }
        let codes: Vec<i32> = codes.into_iter().map(|c| c.unwrap()).collect();
        assert_eq!(
            codes.iter().filter(|&&c| c == 0).count(),
            1,
            "round {round}: {codes:?}"
        );
        assert_eq!(
            codes.iter().filter(|&&c| c == 2).count(),
            7,
            "round {round}: {codes:?}"
        );
        let record = home.path().join(".metal-guard/locks/mlx_exclusive.lock");
        assert!(!record.exists(), "the holder removes its record");
    }
}

/// A record whose pid now belongs to another process (pid reuse, or a
/// record from before this boot) is stale: `release --force` removes it and
/// signals no one.
#[test]
fn a_reused_pid_is_never_signalled() {
    let home = tempfile::tempdir().unwrap();
    let record = home.path().join(".metal-guard/locks/mlx_exclusive.lock");
    std::fs::create_dir_all(record.parent().unwrap()).unwrap();
    let mut bystander = Command::new("sleep").arg("60").spawn().unwrap();
    let hour_ago = OffsetDateTime::now_utc() - Duration::hours(1);
    let iso = hour_ago
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .unwrap();
    for body in [
        // The Python tool's record of a holder that died an hour ago.
        format!(
            r#"{{"pid": {}, "label": "gone", "started_at": "{iso}"}}"#,
            bystander.id()
        ),
        // Ours, likewise.
        format!(
            r#"{{"pid": {}, "label": "gone", "started_at": "{iso}", "schema_version": 1}}"#,
            bystander.id()
        ),
    ] {
        std::fs::write(&record, &body).unwrap();
        let status = mg(home.path()).args(["lock", "status"]).output().unwrap();
        assert_eq!(status.status.code(), Some(0), "{body}: stale, not held");
        let forced = mg(home.path())
            .args(["lock", "release", "--force", "--grace-sec", "1"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&forced.stdout);
        assert_eq!(forced.status.code(), Some(0), "{stdout}");
        assert!(stdout.contains("stale"), "{stdout}");
        assert!(!record.exists());
        assert!(
            bystander.try_wait().unwrap().is_none(),
            "the unrelated process was signalled"
        );
    }
    let _ = bystander.kill();
    let _ = bystander.wait();
}

#[test]
fn lock_release_force_stops_a_live_holder_and_a_crash_frees_the_lock() {
    let home = tempfile::tempdir().unwrap();
    let mut holder = mg(home.path())
        .args(["lock", "run", "long", "--", "sleep", "30"])
        .spawn()
        .unwrap();
    let record = home.path().join(".metal-guard/locks/mlx_exclusive.lock");
    for _ in 0..100 {
        if record.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = mg(home.path()).args(["lock", "status"]).output().unwrap();
    assert_eq!(
        status.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
    assert!(String::from_utf8_lossy(&status.stdout).contains("long"));
    let refused = mg(home.path()).args(["lock", "release"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let forced = mg(home.path())
        .args(["lock", "release", "--force", "--grace-sec", "5"])
        .output()
        .unwrap();
    assert_eq!(
        forced.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    let st = holder.wait().unwrap();
    assert!(!st.success());
    assert!(!record.exists());

    // A holder killed with SIGKILL frees the lock by itself (the kernel drops it).
    let mut holder = mg(home.path())
        .args(["lock", "run", "crash", "--", "sleep", "30"])
        .spawn()
        .unwrap();
    // Wait until the record names the child: under load the record can exist
    // a moment before `child_pid` is filled in.
    let mut pid: i64 = 0;
    for _ in 0..500 {
        pid = std::fs::read(&record)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["child_pid"].as_i64())
            .unwrap_or(0);
        if pid > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(pid > 0, "the lock record never named the child");
    holder.kill().unwrap();
    holder.wait().unwrap();
    // The child (sleep) still holds the inherited lock: kill it too, as a crash would.
    if pid > 0 {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let ok = mg(home.path())
        .args(["lock", "run", "next", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn status_agrees_with_panic_gate_and_postmortem_sets_the_sentinel() {
    let home = tempfile::tempdir().unwrap();
    let reports = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let hour_ago = OffsetDateTime::now_utc() - Duration::hours(1);
    ips_at(
        "62-ips-reconstructed-iogpu-pendingmemoryset-219-omlx1265-martinfjant.ips",
        reports.path(),
        hour_ago,
    );
    let status = mg(home.path())
        .args(["status", "--json", "--reports"])
        .arg(reports.path())
        .output()
        .unwrap();
    let snap: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status.status.code(), Some(2));
    assert_eq!(snap["schema_version"], "2.0");
    assert!(snap["captured_at"].is_string());
    assert_eq!(snap["verdict"]["kind"], "cooldown");
    let (code, gate) = gate_json(home.path(), reports.path());
    assert_eq!(code, 2);
    // The same verdict (the reason's "N min ago" may tick between the two calls).
    for key in [
        "kind",
        "exit_code",
        "cooldown_until",
        "recent_panics_24h",
        "recent_panics_72h",
        "latest_panic",
    ] {
        assert_eq!(gate[key], snap["verdict"][key], "{key}");
    }

    // A fresh HOME: the postmortem finds the panic and writes the sentinel,
    // which then holds the gate even with no reports at all.
    let home = tempfile::tempdir().unwrap();
    let bundle = home.path().join("bundle");
    let out = mg(home.path())
        .arg("postmortem")
        .arg(&bundle)
        .arg("--reports")
        .arg(reports.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "index.md",
        "status.json",
        "hardware.json",
        "breadcrumbs-tail.log",
        "panics.jsonl",
        "reports.json",
    ] {
        assert!(bundle.join(f).is_file(), "{f}");
    }
    assert_eq!(
        std::fs::read_dir(bundle.join("reports")).unwrap().count(),
        1
    );
    let index = std::fs::read_to_string(bundle.join("index.md")).unwrap();
    assert!(
        index.contains("pending_memory_set") && index.contains("Feedback Assistant"),
        "{index}"
    );
    assert!(home
        .path()
        .join(".cache/metal-guard/panic-sentinel.json")
        .is_file());
    // Remove the ledger too: only the sentinel is left to hold the cooldown.
    std::fs::remove_file(home.path().join(".cache/metal-guard/panics.jsonl")).ok();
    let (code, v) = gate_json(home.path(), empty.path());
    assert_eq!(code, 2, "{v:#}");
    assert!(v["reason"].as_str().unwrap().contains("sentinel"));
    // The switch turns postmortem off.
    let off = mg(home.path())
        .env("METALGUARD_POSTMORTEM_DISABLED", "1")
        .arg("postmortem")
        .arg(home.path().join("other"))
        .output()
        .unwrap();
    assert_eq!(off.status.code(), Some(0));
    assert!(!home.path().join("other").exists());
}

#[test]
fn ack_clears_a_lockout_from_two_reports() {
    let home = tempfile::tempdir().unwrap();
    let reports = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    ips_at(
        "64-ips-reconstructed-iogpu-completememory-550-mlx3186-ronm92130.ips",
        reports.path(),
        now - Duration::hours(5),
    );
    ips_at(
        "62-ips-reconstructed-iogpu-pendingmemoryset-219-omlx1265-martinfjant.ips",
        reports.path(),
        now - Duration::hours(3),
    );
    let (code, v) = gate_json(home.path(), reports.path());
    assert_eq!((code, v["kind"].as_str()), (2, Some("lockout")), "{v:#}");
    let ack = mg(home.path())
        .arg("ack")
        .env("METALGUARD_PANIC_REPORT_DIRS", reports.path())
        .output()
        .unwrap();
    assert_eq!(ack.status.code(), Some(0));
    let (code, v) = gate_json(home.path(), reports.path());
    assert_eq!(code, 0, "{v:#}");
    assert!(v["acknowledged_at"].is_string());
}

#[test]
fn orphan_scan_finds_an_unfinished_section() {
    let home = tempfile::tempdir().unwrap();
    let log = home.path().join("bc.log");
    let old = (OffsetDateTime::now_utc() - Duration::minutes(10))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    std::fs::write(
        &log,
        format!("[{old}] SUBPROC_PRE: mlx-community/a | pid=7\n[{old}] SUBPROC_PRE: mlx-community/b\n[{old}] SUBPROC_POST: mlx-community/b\n"),
    )
    .unwrap();
    let out = mg(home.path())
        .env("METALGUARD_BREADCRUMB_PATH", &log)
        .args(["orphan-scan", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["threshold_sec"], 90.0);
    assert_eq!(v["orphans"][0]["model_id"], "mlx-community/a");
    assert_eq!(v["orphans"][0]["pid"], 7);
    assert!(v["orphans"][0]["age_sec"].as_f64().unwrap() >= 600.0);
    let out = mg(home.path())
        .env("METALGUARD_BREADCRUMB_PATH", &log)
        .args(["orphan-scan", "--threshold-sec", "3600"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn guard_uninstall_refuses_a_block_without_end_marker() {
    let home = tempfile::tempdir().unwrap();
    let rc = home.path().join(".bashrc");
    let text = "export A=1\n# >>> metal-guard >>>\nsource \"x\"\nmy own line\n";
    std::fs::write(&rc, text).unwrap();
    let out = mg(home.path())
        .args(["guard", "uninstall", "--shell", "bash"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("my own line") && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&rc).unwrap(), text);
}

#[test]
fn status_write_daemon_stops_cleanly_on_sigterm() {
    let home = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let mut child = mg(home.path())
        .args(["status-write", "--interval", "1", "--reports"])
        .arg(empty.path())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = home.path().join(".cache/metal-guard/status.json");
    for _ in 0..100 {
        if out.is_file() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SAFETY: kill has no memory-safety preconditions; the pid is our child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(v["schema_version"], "2.0");
    let once = mg(home.path())
        .args(["status-write", "--once", "--reports"])
        .arg(empty.path())
        .output()
        .unwrap();
    assert_eq!(once.status.code(), Some(0));
}

#[test]
fn lock_run_passes_the_exit_code_through() {
    let home = tempfile::tempdir().unwrap();
    let out = mg(home.path())
        .args(["lock", "run", "x", "--", "sh", "-c", "exit 7"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    let out = mg(home.path())
        .args(["lock", "run", "x", "--", "/nonexistent/program"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(!home
        .path()
        .join(".metal-guard/locks/mlx_exclusive.lock")
        .exists());
    // MLX_LOCK_PATH moves the record.
    let custom = home.path().join("elsewhere").join("mlx.lock");
    let out = mg(home.path())
        .env("MLX_LOCK_PATH", &custom)
        .args([
            "lock",
            "run",
            "x",
            "--",
            "sh",
            "-c",
            "test -f \"$0\"",
            custom.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "the record exists while the command runs"
    );
}
