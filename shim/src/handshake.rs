//! Proof that the guard library reached the program.
//!
//! The launcher names a file in `METALGUARD_HANDSHAKE_PATH`; the library's
//! constructor writes its pid and version there as it loads. Two users:
//!
//! * `--check` runs a probe (`python -c pass` through the same exec chain)
//!   and reads the file after it exits;
//! * every guarded launch leaves a small watcher process behind the `exec`
//!   (double-forked, so the program never sees an extra child) that waits for
//!   the program's line and, when none comes before the program exits or
//!   within [`WATCH_TIMEOUT`], prints that the run is not protected.

use std::ffi::OsString;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The variable that names the handshake file.
pub const HANDSHAKE_PATH_VAR: &str = "METALGUARD_HANDSHAKE_PATH";
/// How long the watcher waits for a running program's handshake.
pub const WATCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a `--check` probe may run.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// One announcement written by the library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeRecord {
    pub pid: u32,
    pub version: Option<String>,
}

/// Read the records in a handshake file's text. Accepted line forms:
/// a JSON object with `pid` (and `version`), `pid=123 version=0.1.0`, or `123 0.1.0`.
pub fn parse_handshake(text: &str) -> Vec<HandshakeRecord> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<HandshakeRecord> {
    let line = line.trim();
    if line.starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(line).ok()?;
        let pid = u32::try_from(value.get("pid")?.as_u64()?).ok()?;
        let version = value
            .get("version")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        return Some(HandshakeRecord { pid, version });
    }
    let mut pid = None;
    let mut version = None;
    for (i, word) in line.split_whitespace().enumerate() {
        match word.split_once('=') {
            Some(("pid", v)) => pid = v.parse().ok(),
            Some(("version", v)) => version = Some(v.to_owned()),
            Some(_) => {}
            None if i == 0 => pid = word.parse().ok(),
            None if i == 1 => version = Some(word.to_owned()),
            None => {}
        }
    }
    Some(HandshakeRecord { pid: pid?, version })
}

/// A private directory (0700) holding the handshake file; removed on drop.
#[derive(Debug)]
pub struct HandshakeDir {
    dir: PathBuf,
    file: PathBuf,
}

impl HandshakeDir {
    /// Create a fresh directory under `$TMPDIR` (or `/tmp`).
    pub fn create(tmp_root: Option<&Path>) -> io::Result<HandshakeDir> {
        let root = tmp_root
            .map(Path::to_path_buf)
            .unwrap_or_else(std::env::temp_dir);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let mut last_err = None;
        for attempt in 0..16u32 {
            let dir = root.join(format!(
                "metal-guard-handshake.{}.{:x}",
                std::process::id(),
                nanos.wrapping_add(attempt.wrapping_mul(0x9e37_79b9))
            ));
            // create (not create_all): fails if the name exists, so nobody can pre-place it.
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {
                    let file = dir.join("handshake");
                    return Ok(HandshakeDir { dir, file });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("no free handshake directory name")))
    }

    /// The file the library writes.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The records written so far (none if the file does not exist yet).
    pub fn records(&self) -> Vec<HandshakeRecord> {
        std::fs::read_to_string(&self.file)
            .map(|t| parse_handshake(&t))
            .unwrap_or_default()
    }

    /// The record written by `pid`, if any.
    pub fn record_for(&self, pid: u32) -> Option<HandshakeRecord> {
        self.records().into_iter().find(|r| r.pid == pid)
    }
}

impl Drop for HandshakeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a `--check` probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The library announced itself from the probe's pid.
    Confirmed { pid: u32, version: Option<String> },
    /// The probe ran but the library never announced itself.
    NoHandshake { exit: String, stderr_tail: String },
    /// The probe could not be started or did not finish.
    Failed(String),
}

/// Run `program argv[1..]` with `env` (which must already name the library in
/// the preload variable) and a fresh handshake file, and report whether the
/// library loaded into it.
pub fn probe(
    program: &Path,
    argv: &[OsString],
    env: &[(OsString, OsString)],
    tmp_root: Option<&Path>,
) -> ProbeOutcome {
    let dir = match HandshakeDir::create(tmp_root) {
        Ok(d) => d,
        Err(e) => return ProbeOutcome::Failed(format!("cannot create a handshake file: {e}")),
    };
    let mut cmd = Command::new(program);
    if let Some(arg0) = argv.first() {
        use std::os::unix::process::CommandExt;
        cmd.arg0(arg0);
    }
    cmd.args(argv.iter().skip(1))
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env(HANDSHAKE_PATH_VAR, dir.file())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return ProbeOutcome::Failed(format!("cannot start {}: {e}", program.display())),
    };
    let pid = child.id();
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > PROBE_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return ProbeOutcome::Failed(format!(
                    "the probe did not finish within {} s",
                    PROBE_TIMEOUT.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return ProbeOutcome::Failed(format!("waiting for the probe: {e}")),
        }
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        use std::io::Read;
        let _ = pipe.read_to_string(&mut stderr);
    }
    match dir.record_for(pid) {
        Some(record) => ProbeOutcome::Confirmed {
            pid,
            version: record.version,
        },
        None => ProbeOutcome::NoHandshake {
            exit: status.to_string(),
            stderr_tail: stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_owned(),
        },
    }
}

/// Leave a watcher behind the coming `exec` of `program` (this process's pid).
///
/// The watcher is a grandchild (double fork), so the program never sees it as
/// a child; it runs in its own process group with stdin and stdout on
/// `/dev/null`, so terminal signals and pipelines are unaffected. It checks
/// every few milliseconds until the handshake arrives (a few milliseconds
/// after the exec), prints one warning when the program exits without it or
/// after [`WATCH_TIMEOUT`], then sleeps, checking four times a second, until
/// the program exits, and removes the handshake directory it owns.
pub fn spawn_watcher(dir: HandshakeDir, program: &Path, tool: &str) -> io::Result<()> {
    let expected_pid = std::process::id();
    let not_loaded = format!(
        "{tool}: warning: the metal-guard library did not load into {} (pid {expected_pid})",
        program.display()
    );
    let advice = format!("this run is NOT protected; `{tool} --check` shows why");
    // SAFETY: the launcher is single-threaded here (no thread is ever started
    // before this point), so the child may keep running ordinary Rust code.
    let intermediate = unsafe { libc::fork() };
    match intermediate {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            // SAFETY: same single-threaded state as above, one level down.
            let watcher = unsafe { libc::fork() };
            if watcher == 0 {
                watch(&dir, expected_pid, &not_loaded, &advice);
            }
            std::mem::forget(dir);
            // SAFETY: _exit ends the intermediate child at once without
            // running the parent's exit handlers or flushing its buffers twice.
            unsafe { libc::_exit(0) }
        }
        child => {
            let mut status = 0;
            // SAFETY: reaping our own child; `status` is a valid out-pointer.
            unsafe { libc::waitpid(child, &mut status, 0) };
            // The watcher removes the directory; the launcher must not.
            std::mem::forget(dir);
            Ok(())
        }
    }
}

fn watch(dir: &HandshakeDir, pid: u32, not_loaded: &str, advice: &str) -> ! {
    detach_from_terminal_io();
    let started = Instant::now();
    let mut confirmed = false;
    let mut warned = false;
    loop {
        let failed_launch = dir.dir.join("launch-failed").exists();
        if !confirmed && !failed_launch && dir.record_for(pid).is_some() {
            confirmed = true;
        }
        let alive = !failed_launch && process_alive(pid);
        if !confirmed && !warned && !failed_launch {
            if !alive && dir.record_for(pid).is_none() {
                eprintln!("{not_loaded}; it exited without the guard; {advice}");
                warned = true;
            } else if alive && started.elapsed() > WATCH_TIMEOUT {
                eprintln!(
                    "{not_loaded} within {} s; {advice}",
                    WATCH_TIMEOUT.as_secs()
                );
                warned = true;
            }
        }
        if confirmed || warned {
            // Nothing more to say: let go of stderr, so a parent reading the
            // program's stderr to its end is not kept waiting by us.
            release_stderr();
        }
        if !alive {
            break;
        }
        // Fast while the handshake is due, then slow: the folder stays until
        // the program exits, because its children (multiprocessing, re-execs)
        // inherit the variable and announce themselves too.
        let pause = if confirmed || warned {
            250
        } else if started.elapsed() < Duration::from_millis(200) {
            2
        } else {
            25
        };
        std::thread::sleep(Duration::from_millis(pause));
    }
    let _ = std::fs::remove_dir_all(&dir.dir);
    // SAFETY: ends the watcher without unwinding into the launcher's frames.
    unsafe { libc::_exit(0) }
}

fn detach_from_terminal_io() {
    // SAFETY: plain syscalls on this process's own signal dispositions,
    // process group and descriptors 0 and 1; the path is NUL-terminated.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGTTOU, libc::SIG_IGN);
        libc::setpgid(0, 0);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::dup2(null, 1);
            if null > 2 {
                libc::close(null);
            }
        }
    }
}

fn release_stderr() {
    // SAFETY: plain syscalls on this process's own descriptor 2; the path is NUL-terminated.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
        if null >= 0 {
            libc::dup2(null, 2);
            if null > 2 {
                libc::close(null);
            }
        }
    }
}

/// The process exists and has not exited. An exited process whose parent has
/// not collected it yet (a zombie) counts as gone: its parent may be blocked
/// reading the pipes we would otherwise keep open.
fn process_alive(pid: u32) -> bool {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(raw, 0) };
    if !(rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)) {
        return false;
    }
    !is_zombie(pid)
}

#[cfg(target_os = "linux")]
fn is_zombie(pid: u32) -> bool {
    // `/proc/PID/stat`: "pid (comm) S ..."; comm may contain spaces and parentheses.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after = &stat[stat.rfind(')')? + 1..];
            after.split_whitespace().next().map(|state| state == "Z")
        })
        .unwrap_or(false)
}

#[cfg(target_os = "macos")]
fn is_zombie(pid: u32) -> bool {
    const SZOMB: u32 = 5;
    let Ok(raw) = libc::c_int::try_from(pid) else {
        return false;
    };
    let mut info = std::mem::MaybeUninit::<libc::proc_bsdinfo>::zeroed();
    let size = std::mem::size_of::<libc::proc_bsdinfo>() as libc::c_int;
    // SAFETY: `info` is a writable buffer of exactly `size` bytes for the
    // PROC_PIDTBSDINFO flavour; the call writes at most that many.
    let got = unsafe {
        libc::proc_pidinfo(
            raw,
            libc::PROC_PIDTBSDINFO,
            0,
            info.as_mut_ptr().cast(),
            size,
        )
    };
    if got != size {
        return false;
    }
    // SAFETY: proc_pidinfo filled the whole structure (checked above).
    let info = unsafe { info.assume_init() };
    info.pbi_status == SZOMB
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn is_zombie(_pid: u32) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zombies_count_as_exited() {
        let mut child = Command::new("/bin/sh")
            .args(["-c", "exit 0"])
            .spawn()
            .unwrap();
        let pid = child.id();
        // Not yet collected: a zombie once it has exited.
        let started = Instant::now();
        while process_alive(pid) {
            assert!(started.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(5));
        }
        child.wait().unwrap();
        assert!(process_alive(std::process::id()));
    }

    #[test]
    fn all_line_forms_are_read_and_garbage_is_skipped() {
        let text = "{\"pid\": 42, \"version\": \"0.1.0\"}\npid=43 version=0.2.0 exe=/x\n44 0.3.0\nnot a record\n{\"version\": \"no pid\"}\n";
        assert_eq!(
            parse_handshake(text),
            vec![
                HandshakeRecord {
                    pid: 42,
                    version: Some("0.1.0".into())
                },
                HandshakeRecord {
                    pid: 43,
                    version: Some("0.2.0".into())
                },
                HandshakeRecord {
                    pid: 44,
                    version: Some("0.3.0".into())
                },
            ]
        );
    }

    #[test]
    fn the_directory_is_private_and_removed_on_drop() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = HandshakeDir::create(Some(tmp.path())).unwrap();
        let parent = dir.file().parent().unwrap().to_path_buf();
        assert_eq!(
            std::fs::metadata(&parent).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert!(dir.records().is_empty());
        std::fs::write(dir.file(), "7 1.0\n").unwrap();
        assert_eq!(dir.record_for(7).unwrap().version.as_deref(), Some("1.0"));
        assert_eq!(dir.record_for(8), None);
        drop(dir);
        assert!(!parent.exists());
    }

    #[test]
    fn a_probe_reports_a_missing_handshake_and_a_written_one() {
        let tmp = tempfile::tempdir().unwrap();
        let env: Vec<(OsString, OsString)> = vec![("PATH".into(), "/usr/bin:/bin".into())];
        let silent = probe(
            Path::new("/bin/sh"),
            &["sh".into(), "-c".into(), "echo oops >&2; exit 3".into()],
            &env,
            Some(tmp.path()),
        );
        match silent {
            ProbeOutcome::NoHandshake { exit, stderr_tail } => {
                assert!(exit.contains('3'), "{exit}");
                assert_eq!(stderr_tail, "oops");
            }
            other => panic!("{other:?}"),
        }
        // A stand-in for the library: writes its pid like the constructor does.
        let writes = probe(
            Path::new("/bin/sh"),
            &[
                "sh".into(),
                "-c".into(),
                format!("echo \"$$ 9.9.9\" > \"${HANDSHAKE_PATH_VAR}\"").into(),
            ],
            &env,
            Some(tmp.path()),
        );
        match writes {
            ProbeOutcome::Confirmed { version, .. } => {
                assert_eq!(version.as_deref(), Some("9.9.9"))
            }
            other => panic!("{other:?}"),
        }
    }
}
