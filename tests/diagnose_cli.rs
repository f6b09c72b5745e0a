//! `metal-guard diagnose` and the no-argument wizard, run as a user would:
//! the built binary, a temporary HOME, report folders made on the spot.

use serde_json::Value;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_metal-guard");

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/panic-reports")
}

fn fixture(name: &str) -> Vec<u8> {
    fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/fixtures/panics")
            .join(name),
    )
    .unwrap()
}

/// The binary with a clean environment: temporary HOME, UTC, no report
/// folders from the outside, stdin not a terminal.
fn metal_guard(home: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("HOME", home)
        .env("TZ", "UTC")
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null());
    cmd
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("metal-guard runs");
    (
        status.code().expect("exited, not killed by a signal"),
        String::from_utf8(stdout).expect("stdout is UTF-8"),
        String::from_utf8(stderr).expect("stderr is UTF-8"),
    )
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not one JSON object ({e}):\n{stdout}"))
}

/// A world-traversable temporary directory (so the tests can drop root for
/// the permission case).
fn open_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

#[test]
fn json_output_has_the_documented_shape() {
    let home = open_tempdir();
    let (code, stdout, stderr) = run(metal_guard(home.path())
        .args(["diagnose", "--json", "--reports"])
        .arg(examples_dir()));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stderr, "", "nothing skipped in the examples");
    let v = json(&stdout);
    let reports = v["reports"].as_array().expect("reports array");
    assert_eq!(reports.len(), 6);
    for r in reports {
        for key in [
            "file",
            "signature",
            "time",
            "os_build",
            "iogpu_family",
            "process",
            "pid",
            "source_line",
            "explanation",
        ] {
            assert!(r.get(key).is_some(), "{key} missing in {r}");
        }
        let time = r["time"].as_str().expect("every example has a time");
        assert!(
            time.ends_with('Z') && time.contains('T'),
            "{time} is UTC ISO-8601"
        );
        assert_eq!(r["signature"].is_null(), r["explanation"].is_null());
    }
    let sigs: Vec<&str> = reports
        .iter()
        .map(|r| r["signature"].as_str().unwrap_or("null"))
        .collect();
    assert_eq!(
        sigs,
        [
            "pending_memory_set",
            "prepare_count_underflow",
            "null",
            "prepare_count_underflow",
            "prepare_count_underflow",
            "null"
        ],
        "newest first"
    );
    let times: Vec<&str> = reports
        .iter()
        .map(|r| r["time"].as_str().unwrap())
        .collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted);
    assert_eq!(reports[1]["source_line"], "IOGPUMemory.cpp:550");
    assert_eq!(reports[1]["pid"], 50218);
    assert_eq!(reports[1]["process"], "Python");
    assert_eq!(reports[4]["source_line"], "IOGPUMemory.cpp:492");
    assert!(reports[0]["explanation"]
        .as_str()
        .unwrap()
        .contains("ml-explore/mlx/issues/3346"));
    // Example folders are never recorded in the user's panic history.
    assert!(!home.path().join(".cache/metal-guard/panics.jsonl").exists());
}

#[test]
fn human_output_is_plain_words_newest_first() {
    let home = open_tempdir();
    let (code, stdout, _) = run(metal_guard(home.path())
        .args(["diagnose", "--reports"])
        .arg(examples_dir()));
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with("Found 6 kernel panic reports"),
        "{stdout}"
    );
    assert!(
        stdout.contains("4 caused by Apple's GPU driver"),
        "{stdout}"
    );
    let first = stdout.find("1. 2026-05-15").expect("newest first");
    let last = stdout.find("6. 2025-07-04").expect("oldest last");
    assert!(first < last);
    assert!(stdout.contains("NOT caused by the GPU driver"));
    assert!(stdout.contains("What to do now:"));
}

#[test]
fn bad_inputs_are_skipped_with_one_line_each() {
    let home = open_tempdir();
    let reports = open_tempdir();
    let dir = reports.path();
    fs::write(
        dir.join("panic-full-2026-04-24-000000.000.ips"),
        fixture("64-ips-reconstructed-iogpu-completememory-550-mlx3186-ronm92130.ips"),
    )
    .unwrap();
    let mut binary = b"panic(cpu 0): \x00\x01\x02".to_vec();
    binary.extend((0..4096).map(|i| (i % 251) as u8));
    fs::write(dir.join("binary.panic"), binary).unwrap();
    fs::write(dir.join("empty.panic"), b"").unwrap();
    let huge = fs::File::create(dir.join("huge.panic")).unwrap();
    huge.set_len(200 * 1024 * 1024).unwrap(); // sparse: no disk used
    drop(huge);
    symlink("loop.panic", dir.join("loop.panic")).unwrap();
    symlink(dir.join("nowhere"), dir.join("dangling.panic")).unwrap();
    // A named pipe would block a reader forever.
    let mkfifo = Command::new("mkfifo")
        .arg(dir.join("pipe.panic"))
        .status()
        .unwrap();
    assert!(mkfifo.success());
    // App crash reports are not opened at all (picked out by name).
    fs::write(
        dir.join("Python-2026-04-24-000000.ips"),
        b"\x00not even text",
    )
    .unwrap();
    let unreadable = dir.join("locked");
    fs::create_dir(&unreadable).unwrap();
    fs::write(
        unreadable.join("Kernel-2026-01-01-000000.panic"),
        b"panic(cpu 0): x",
    )
    .unwrap();
    fs::set_permissions(&unreadable, fs::Permissions::from_mode(0o000)).unwrap();
    let missing = dir.join("does-not-exist");

    let mut cmd = metal_guard(home.path());
    cmd.args(["diagnose", "--json", "--reports"])
        .arg(dir)
        .arg("--reports")
        .arg(&unreadable)
        .arg("--reports")
        .arg(&missing);
    // Root reads any folder; drop to `nobody` so the locked folder is locked.
    let as_root = running_as_root();
    if as_root {
        cmd.uid(65534).gid(65534);
    }
    let (code, stdout, stderr) = run(&mut cmd);
    fs::set_permissions(&unreadable, fs::Permissions::from_mode(0o700)).unwrap();

    assert_eq!(code, 0, "{stderr}");
    let v = json(&stdout);
    let found = v["reports"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{stdout}");
    assert_eq!(found[0]["signature"], "prepare_count_underflow");

    let lines: Vec<&str> = stderr.lines().collect();
    let expect = [
        ("binary.panic", "binary file"),
        ("empty.panic", "empty file"),
        ("huge.panic", "too large"),
        ("loop.panic", "symlink loop"),
        ("dangling.panic", "does not exist"),
        ("pipe.panic", "not a regular file"),
        ("locked", "permission denied"),
        ("does-not-exist", "does not exist"),
    ];
    for (name, reason) in expect {
        let matching: Vec<&&str> = lines.iter().filter(|l| l.contains(name)).collect();
        assert_eq!(matching.len(), 1, "one line for {name}:\n{stderr}");
        assert!(matching[0].contains(reason), "{name}: {}", matching[0]);
        assert!(
            matching[0].starts_with("metal-guard: skipped "),
            "{}",
            matching[0]
        );
    }
    assert_eq!(lines.len(), expect.len(), "{stderr}");
    assert_eq!(v["skipped"].as_array().unwrap().len(), expect.len());
    assert!(!stderr.contains("Python-2026"));
}

/// Whether this test process runs as root (files and folders we lock are
/// still readable to root).
fn running_as_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.uid() == 0
        })
        .unwrap_or(false)
}

#[test]
fn file_names_that_are_not_utf8_still_give_json() {
    use std::os::unix::ffi::OsStrExt;
    let home = open_tempdir();
    let reports = open_tempdir();
    let name = std::ffi::OsStr::from_bytes(b"panic-full-\xff\xfe.panic");
    fs::write(
        reports.path().join(name),
        fixture("22-iogpu-pendingmemoryset-219-omlx1265-martinfjant.txt"),
    )
    .unwrap();
    let (code, stdout, stderr) = run(metal_guard(home.path())
        .args(["diagnose", "--json", "--reports"])
        .arg(reports.path()));
    assert_eq!(code, 0, "{stderr}");
    let v = json(&stdout);
    assert_eq!(v["reports"][0]["signature"], "pending_memory_set");
    assert!(v["reports"][0]["file"]
        .as_str()
        .unwrap()
        .contains("panic-full-\u{fffd}"));
}

#[test]
fn since_keeps_only_the_window() {
    let home = open_tempdir();
    let reports = open_tempdir();
    let now = time::OffsetDateTime::now_utc();
    let name = |t: time::OffsetDateTime| {
        format!(
            "panic-full-{:04}-{:02}-{:02}-{:02}{:02}{:02}.0002.panic",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    };
    let text = fixture("01-iogpu-completememory-550-mlxlm1666-giumazzi.txt");
    let recent = name(now - time::Duration::hours(2));
    fs::write(reports.path().join(&recent), &text).unwrap();
    fs::write(
        reports.path().join(name(now - time::Duration::days(5))),
        &text,
    )
    .unwrap();

    let (code, stdout, stderr) = run(metal_guard(home.path())
        .args(["diagnose", "--json", "--since", "24", "--reports"])
        .arg(reports.path()));
    assert_eq!(code, 0, "{stderr}");
    let v = json(&stdout);
    let found = v["reports"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{stdout}");
    assert!(found[0]["file"].as_str().unwrap().ends_with(&recent));

    let (_, stdout, _) = run(metal_guard(home.path())
        .args(["diagnose", "--since", "1", "--reports"])
        .arg(reports.path()));
    assert!(
        stdout.starts_with("No kernel panic reports from the last 1 hours"),
        "{stdout}"
    );
}

#[test]
fn bad_usage_exits_64_with_one_line() {
    let home = open_tempdir();
    for args in [
        &["diagnose", "--since", "abc"][..],
        &["diagnose", "--since", "-2"][..],
        &["diagnose", "--no-such-flag"][..],
    ] {
        let (code, stdout, stderr) = run(metal_guard(home.path()).args(args));
        assert_eq!(code, 64, "{args:?}: {stderr}");
        assert_eq!(stdout, "");
        assert!(stderr.starts_with("error:"), "{stderr}");
    }
    let (code, stdout, _) = run(metal_guard(home.path()).args(["diagnose", "--help"]));
    assert_eq!(code, 0);
    assert!(
        stdout.contains("Exit codes:") && stdout.contains("64"),
        "{stdout}"
    );
}

#[test]
fn wizard_with_nothing_found_says_so_and_exits_0() {
    let home = open_tempdir();
    let empty = open_tempdir();
    let (code, stdout, stderr) =
        run(metal_guard(home.path()).env("METALGUARD_PANIC_REPORT_DIRS", empty.path()));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("No GPU-driver panic found"), "{stdout}");
    assert!(!stdout.contains("[y/N]"));
}

#[test]
fn wizard_explains_the_latest_panic_and_records_history_once() {
    let home = open_tempdir();
    let reports = open_tempdir();
    for entry in fs::read_dir(examples_dir()).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), reports.path().join(entry.file_name())).unwrap();
    }
    let mut wizard = metal_guard(home.path());
    wizard.env("METALGUARD_PANIC_REPORT_DIRS", reports.path());
    let (code, stdout, stderr) = run(&mut wizard);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("most recent GPU-driver panic"), "{stdout}");
    assert!(
        stdout.contains("2026-05-15"),
        "the newest IOGPU panic: {stdout}"
    );
    assert!(stdout.contains("pending_memory_set"));
    assert!(
        stdout.contains("3 earlier GPU-driver panics were found"),
        "{stdout}"
    );
    assert!(stdout.contains("metal-guard guard install"));
    assert!(!stdout.contains("[y/N]"), "no prompt without a terminal");

    let ledger = home.path().join(".cache/metal-guard/panics.jsonl");
    let first = fs::read_to_string(&ledger).expect("history written");
    assert_eq!(first.lines().count(), 4, "{first}");
    for line in first.lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        for key in ["ts", "signature", "explanation", "pid", "source_file"] {
            assert!(record.get(key).is_some(), "{key} in {line}");
        }
    }
    let mode = fs::metadata(ledger.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);

    // The same reports again (and through diagnose): nothing added.
    run(&mut wizard);
    run(metal_guard(home.path())
        .env("METALGUARD_PANIC_REPORT_DIRS", reports.path())
        .args(["diagnose", "--json"]));
    assert_eq!(fs::read_to_string(&ledger).unwrap(), first);
}

#[test]
fn damaged_history_is_kept_and_reported() {
    let home = open_tempdir();
    let state = home.path().join(".cache/metal-guard");
    fs::create_dir_all(&state).unwrap();
    fs::write(state.join("panics.jsonl"), "garbage line\n").unwrap();
    let (code, stdout, stderr) = run(metal_guard(home.path())
        .env("METALGUARD_PANIC_REPORT_DIRS", examples_dir())
        .args(["diagnose", "--json"]));
    assert_eq!(code, 0);
    json(&stdout);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("kept as they are"), "{stderr}");
    let ledger = fs::read_to_string(state.join("panics.jsonl")).unwrap();
    assert!(ledger.starts_with("garbage line\n"));
    assert_eq!(ledger.lines().count(), 5);
}

#[test]
fn wizard_reports_an_active_cooldown_after_a_recent_panic() {
    let home = open_tempdir();
    let reports = open_tempdir();
    let t = time::OffsetDateTime::now_utc() - time::Duration::minutes(30);
    let name = format!(
        "panic-full-{:04}-{:02}-{:02}-{:02}{:02}{:02}.0002.panic",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    fs::write(
        reports.path().join(name),
        fixture("01-iogpu-completememory-550-mlxlm1666-giumazzi.txt"),
    )
    .unwrap();
    let (code, stdout, stderr) =
        run(metal_guard(home.path()).env("METALGUARD_PANIC_REPORT_DIRS", reports.path()));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("(30 minutes ago)"), "{stdout}");
    assert!(stdout.contains("Can MLX run now?"), "{stdout}");
    assert!(stdout.contains("COOLDOWN"), "{stdout}");
}

/// The prompt appears only on a terminal: run the wizard under `script`
/// (util-linux), which gives it a pseudo-terminal, and answer on its stdin.
#[cfg(target_os = "linux")]
fn wizard_on_a_terminal(home: &Path, reports: &Path, answer: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("script")
        .args(["-qec", &format!("'{BIN}'"), "/dev/null"])
        .env_clear()
        .env("HOME", home)
        .env("SHELL", "/bin/bash")
        .env("TZ", "UTC")
        .env("PATH", "/usr/bin:/bin")
        .env("METALGUARD_PANIC_REPORT_DIRS", reports)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("`script` (util-linux) runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(answer.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[cfg(target_os = "linux")]
#[test]
fn wizard_on_a_terminal_offers_the_guard_default_no() {
    let home = open_tempdir();
    let stdout = wizard_on_a_terminal(home.path(), &examples_dir(), "\n");
    assert!(
        stdout.contains("Install the shell guard now? [y/N]"),
        "{stdout}"
    );
    assert!(stdout.contains("Not installed."), "{stdout}");
    assert!(!home.path().join(".bashrc").exists());

    let stdout = wizard_on_a_terminal(home.path(), &examples_dir(), "y\n");
    let rc =
        fs::read_to_string(home.path().join(".bashrc")).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert!(rc.contains("# >>> metal-guard >>>"), "{rc}");
}
