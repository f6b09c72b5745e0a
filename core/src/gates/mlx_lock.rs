//! The MLX process lock: one MLX workload per machine at a time.
//!
//! Mutual exclusion is a kernel `flock` on `<MLX_LOCK_PATH>.flock`, held for
//! the holder's whole life (the kernel frees it when the holder dies, so a
//! crash never leaves the lock taken). The holder record, `{pid, label,
//! started_at, cmdline, host}` as the Python tool writes it, lives at
//! `MLX_LOCK_PATH` (default `~/.metal-guard/locks/mlx_exclusive.lock`) and is
//! only information: it is written after the kernel lock is taken and
//! removed before it is released. A record left by the Python tool whose
//! process is still alive is honoured as a holder too.
//!
//! A record names its holder by pid, and pids are reused: a holder counts
//! (and is signalled by `release --force`) only while the process at that pid
//! started before the record was written, in this boot
//! (`process_identity::could_have_written`).

use crate::state::file_lock::{self, FileLock, Wait};
use crate::state::tolerant_json::{self, Loaded};
use crate::timefmt;
use crate::warnings::Warnings;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// The holder record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HolderRecord {
    pub pid: i64,
    #[serde(default)]
    pub label: String,
    /// When the lock was taken, Unix seconds. Written as the Python tool
    /// writes it (`2026-12-02T05:25:47Z`, which its readers parse); read in
    /// that form or as Unix seconds.
    #[serde(
        default,
        serialize_with = "started_at_iso",
        deserialize_with = "started_at_lenient"
    )]
    pub started_at: Option<f64>,
    #[serde(default)]
    pub cmdline: Option<serde_json::Value>,
    #[serde(default)]
    pub host: Option<String>,
    /// Ours only: the command `lock run` started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_pid: Option<i64>,
    /// Ours only: when that command started (Unix seconds), so a reused pid
    /// is never taken for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_started_at: Option<f64>,
    /// Ours only (absent in the Python tool's records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<u32>,
}

fn started_at_iso<S: serde::Serializer>(t: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match t.and_then(timefmt::from_unix_f64) {
        Some(t) => s.serialize_str(&timefmt::iso(t)),
        None => s.serialize_none(),
    }
}

fn started_at_lenient<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(v.as_ref()
        .and_then(timefmt::from_json_time)
        .map(timefmt::to_unix_f64))
}

/// Whether the record's holder is alive and is the process that wrote it.
fn holder_verified(r: &HolderRecord) -> bool {
    pid_alive(r.pid) && crate::process_identity::could_have_written(r.pid, r.started_at)
}

/// Whether the record's child is alive and is the command `lock run` started.
fn child_verified(r: &HolderRecord) -> Option<i64> {
    let child = r.child_pid?;
    let alive = pid_alive(child);
    let same = match (
        r.child_started_at,
        crate::process_identity::start_time(child),
    ) {
        (Some(recorded), Some(now)) => {
            (recorded - now).abs() <= crate::process_identity::TOLERANCE_SEC
        }
        // A record without the child's start (an older one): its holder must
        // still be verified and the child no younger than the record.
        _ => crate::process_identity::could_have_written(child, None),
    };
    (alive && same).then_some(child)
}

/// Where the lock lives.
#[derive(Debug, Clone)]
pub struct LockPaths {
    pub record: PathBuf,
    pub kernel: PathBuf,
}

impl LockPaths {
    /// `MLX_LOCK_PATH`, else `~/.metal-guard/locks/mlx_exclusive.lock`.
    pub fn from_env() -> LockPaths {
        let record = match std::env::var_os("MLX_LOCK_PATH").filter(|p| !p.is_empty()) {
            Some(p) => PathBuf::from(p),
            None => crate::paths::home_dir()
                .unwrap_or_else(|| PathBuf::from("/tmp"))
                .join(".metal-guard")
                .join("locks")
                .join("mlx_exclusive.lock"),
        };
        LockPaths::for_record(record)
    }

    /// The kernel lock file beside a record path.
    pub fn for_record(record: PathBuf) -> LockPaths {
        let mut name = record.file_name().unwrap_or_default().to_os_string();
        name.push(".flock");
        LockPaths {
            kernel: record.with_file_name(name),
            record,
        }
    }
}

/// Who holds the lock, as far as can be told.
#[derive(Debug, Clone, Serialize)]
pub struct LockStatus {
    /// Held: by a live process holding the kernel lock, or by a live Python-tool holder.
    pub held: bool,
    pub record: Option<HolderRecord>,
    /// The record's process is alive.
    pub holder_alive: bool,
    /// A record exists but no one holds the lock (a crashed holder).
    pub stale_record: bool,
    #[serde(serialize_with = "crate::paths::lossy::path")]
    pub record_path: PathBuf,
    pub warnings: Warnings,
}

/// Whether process `pid` exists (EPERM: it exists, owned by someone else).
pub fn pid_alive(pid: i64) -> bool {
    if pid <= 0 || pid > i32::MAX as i64 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn read_record(path: &Path, warnings: &mut Warnings) -> Option<HolderRecord> {
    match tolerant_json::load::<HolderRecord>(path) {
        Loaded::Missing => None,
        Loaded::Ok(r) => Some(r),
        Loaded::Reset { warning } => {
            warnings.push(warning);
            None
        }
    }
}

/// The lock's state now.
pub fn lock_status(paths: &LockPaths) -> LockStatus {
    let mut warnings = Warnings::new();
    let record = read_record(&paths.record, &mut warnings);
    let kernel_held = match file_lock::is_locked(&paths.kernel) {
        Ok(h) => h,
        Err(e) => {
            warnings.push(format!(
                "metal-guard: warning: cannot probe {} ({e})",
                paths.kernel.display()
            ));
            false
        }
    };
    let holder_alive = record.as_ref().is_some_and(holder_verified);
    let foreign_holder = record
        .as_ref()
        .is_some_and(|r| r.schema_version.is_none() && holder_alive);
    let held = kernel_held || foreign_holder;
    LockStatus {
        held,
        stale_record: record.is_some() && !held,
        record,
        holder_alive,
        record_path: paths.record.clone(),
        warnings,
    }
}

/// A held MLX lock: the kernel lock plus the record. Dropping it removes the
/// record, then releases the kernel lock.
#[derive(Debug)]
pub struct MlxLockGuard {
    kernel: FileLock,
    record_path: PathBuf,
    record: HolderRecord,
}

impl MlxLockGuard {
    /// Records the child this holder started (so `release --force` can reach it).
    pub fn set_child(&mut self, child_pid: u32) -> std::io::Result<()> {
        self.record.child_pid = Some(child_pid as i64);
        self.record.child_started_at = crate::process_identity::start_time(child_pid as i64);
        write_record(&self.record_path, &self.record)
    }

    /// Lets children inherit the kernel lock (see [`FileLock::inherit_across_exec`]).
    pub fn inherit_across_exec(&self) -> std::io::Result<()> {
        self.kernel.inherit_across_exec()
    }

    pub fn record(&self) -> &HolderRecord {
        &self.record
    }
}

impl Drop for MlxLockGuard {
    fn drop(&mut self) {
        // The record goes first so that no one ever sees our record while
        // another process already holds the lock.
        let _ = std::fs::remove_file(&self.record_path);
    }
}

fn write_record(path: &Path, record: &HolderRecord) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(record).expect("a holder record serializes");
    bytes.push(b'\n');
    crate::state::write_state::write_state(path, &bytes).map(|_| ())
}

fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its full length, which we pass.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// Why the lock could not be taken.
#[derive(Debug)]
pub enum AcquireError {
    /// Someone holds it.
    Held(Box<LockStatus>),
    Io(String),
}

impl std::fmt::Display for AcquireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AcquireError::Held(s) => match &s.record {
                Some(r) => write!(
                    f,
                    "the MLX lock is held by pid {} ({}){}; wait for it, or stop it with `metal-guard lock release --force`",
                    r.pid,
                    if r.label.is_empty() { "no label" } else { &r.label },
                    r.started_at
                        .and_then(timefmt::from_unix_f64)
                        .map(|t| format!(" since {}", timefmt::human(t)))
                        .unwrap_or_default()
                ),
                None => write!(
                    f,
                    "the MLX lock is held by another process (no holder record at {}); see `metal-guard lock status`",
                    s.record_path.display()
                ),
            },
            AcquireError::Io(e) => f.write_str(e),
        }
    }
}

/// Takes the lock without waiting, and writes the holder record.
pub fn try_acquire(
    paths: &LockPaths,
    label: &str,
    cmdline: &[String],
) -> Result<MlxLockGuard, AcquireError> {
    // A status probe holds a shared lock for a few microseconds; retry a
    // moment before concluding that someone holds it.
    let mut kernel = None;
    for attempt in 0..5 {
        match FileLock::acquire(&paths.kernel, Wait::NoWait) {
            Ok(Some(l)) => {
                kernel = Some(l);
                break;
            }
            Ok(None) if attempt < 4 => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {}
            Err(e) => return Err(AcquireError::Io(format!("cannot take the MLX lock: {e}"))),
        }
    }
    let Some(kernel) = kernel else {
        return Err(AcquireError::Held(Box::new(lock_status(paths))));
    };
    // The kernel lock is ours; a record of a live Python-tool holder still wins.
    let mut warnings = Warnings::new();
    if let Some(r) = read_record(&paths.record, &mut warnings) {
        if r.schema_version.is_none() && holder_verified(&r) && r.pid != std::process::id() as i64 {
            let mut status = lock_status(paths);
            status.held = true;
            status.stale_record = false;
            return Err(AcquireError::Held(Box::new(status)));
        }
    }
    let record = HolderRecord {
        pid: std::process::id() as i64,
        label: label.to_string(),
        started_at: Some(timefmt::to_unix_f64(OffsetDateTime::now_utc())),
        cmdline: Some(serde_json::json!(cmdline)),
        host: host_name(),
        child_pid: None,
        child_started_at: None,
        schema_version: Some(1),
    };
    write_record(&paths.record, &record)
        .map_err(|e| AcquireError::Io(format!("cannot write the MLX lock record: {e}")))?;
    Ok(MlxLockGuard {
        kernel,
        record_path: paths.record.clone(),
        record,
    })
}

/// What `release` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// Nothing held, nothing recorded.
    NotHeld,
    /// A stale record (crashed holder) was removed.
    RemovedStale { pid: i64 },
    /// A live holder was stopped and its record removed.
    Stopped { pid: i64, killed: bool },
}

/// Releases the lock: removes a stale record; with `force`, stops a live
/// holder with SIGTERM, waits `grace`, then SIGKILL, and takes the record
/// over (removes it). Without `force`, a live holder is an error.
pub fn release(
    paths: &LockPaths,
    force: bool,
    grace: Duration,
) -> Result<ReleaseOutcome, AcquireError> {
    let status = lock_status(paths);
    if !status.held {
        return match status.record {
            Some(r) => {
                let _ = std::fs::remove_file(&paths.record);
                Ok(ReleaseOutcome::RemovedStale { pid: r.pid })
            }
            None => Ok(ReleaseOutcome::NotHeld),
        };
    }
    if !force {
        return Err(AcquireError::Held(Box::new(status)));
    }
    let Some(record) = status.record.clone() else {
        return Err(AcquireError::Io(format!(
            "the MLX lock is held but {} names no holder to stop; find it with `lsof {}`",
            paths.record.display(),
            paths.kernel.display()
        )));
    };
    // Only processes that are verifiably the holder and its command: a pid
    // reused by an unrelated process is never signalled.
    let own = std::process::id() as i64;
    let holder = holder_verified(&record).then_some(record.pid);
    let child = holder.and(child_verified(&record));
    let targets: Vec<i64> = [holder, child]
        .into_iter()
        .flatten()
        .filter(|&p| p > 0 && p != own)
        .collect();
    let signal = |sig: libc::c_int| {
        for &p in &targets {
            // SAFETY: kill has no memory-safety preconditions; p is a positive pid.
            unsafe { libc::kill(p as libc::pid_t, sig) };
        }
    };
    // Our holders are judged by the kernel lock alone (a killed holder may
    // linger as a zombie until its parent reaps it); a Python-tool holder
    // has only its pid.
    let foreign = record.schema_version.is_none();
    let still_held = |paths: &LockPaths| {
        let kernel = file_lock::is_locked(&paths.kernel).unwrap_or(false);
        kernel || (foreign && holder_verified(&record))
    };
    let wait_free = |limit: Duration| {
        let start = Instant::now();
        while start.elapsed() < limit {
            if !still_held(paths) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        !still_held(paths)
    };
    // Only the first target gets SIGTERM: `lock run` forwards it to its child.
    if let Some(&first) = targets.first() {
        // SAFETY: as above.
        unsafe { libc::kill(first as libc::pid_t, libc::SIGTERM) };
    }
    let mut killed = false;
    if !wait_free(grace) {
        signal(libc::SIGTERM);
        if !wait_free(Duration::from_secs(2)) {
            signal(libc::SIGKILL);
            killed = true;
            if !wait_free(Duration::from_secs(5)) {
                return Err(AcquireError::Io(format!(
                    "pid {} did not let go of the MLX lock after SIGKILL; check `ps -p {}`",
                    record.pid, record.pid
                )));
            }
        }
    }
    let _ = std::fs::remove_file(&paths.record);
    Ok(ReleaseOutcome::Stopped {
        pid: record.pid,
        killed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acquire_excludes_and_drop_releases() {
        let dir = tempfile::tempdir().unwrap();
        let paths = LockPaths::for_record(dir.path().join("locks").join("mlx.lock"));
        let g = try_acquire(&paths, "a", &["x".into()]).unwrap();
        assert!(paths.record.is_file());
        let s = lock_status(&paths);
        assert!(s.held && s.holder_alive && !s.stale_record);
        assert!(matches!(
            try_acquire(&paths, "b", &[]),
            Err(AcquireError::Held(_))
        ));
        assert!(matches!(
            release(&paths, false, Duration::from_secs(1)),
            Err(AcquireError::Held(_))
        ));
        drop(g);
        assert!(!paths.record.exists());
        assert!(!lock_status(&paths).held);
        assert_eq!(
            release(&paths, false, Duration::from_secs(1)).unwrap(),
            ReleaseOutcome::NotHeld
        );
    }

    #[test]
    fn stale_and_damaged_records() {
        let dir = tempfile::tempdir().unwrap();
        let paths = LockPaths::for_record(dir.path().join("mlx.lock"));
        // Our record whose holder died: stale, removable.
        std::fs::write(
            &paths.record,
            br#"{"pid": 999999999, "label": "x", "schema_version": 1}"#,
        )
        .unwrap();
        let s = lock_status(&paths);
        assert!(!s.held && s.stale_record);
        assert_eq!(
            release(&paths, false, Duration::from_secs(1)).unwrap(),
            ReleaseOutcome::RemovedStale { pid: 999999999 }
        );
        // A live Python-tool holder (no schema_version) is honoured, its
        // time in the Python tool's form or as Unix seconds.
        let now = OffsetDateTime::now_utc();
        for started in [
            format!("\"{}\"", timefmt::iso(now)),
            timefmt::to_unix_f64(now).to_string(),
        ] {
            std::fs::write(
                &paths.record,
                format!(
                    r#"{{"pid": {}, "label": "py", "started_at": {started}}}"#,
                    std::process::id()
                ),
            )
            .unwrap();
            assert!(lock_status(&paths).held, "{started}");
        }
        // A record from before this boot (or before its pid's process
        // started) names a reused pid: stale, never honoured.
        std::fs::write(
            &paths.record,
            format!(
                r#"{{"pid": {}, "label": "py", "started_at": 1.0}}"#,
                std::process::id()
            ),
        )
        .unwrap();
        let s = lock_status(&paths);
        assert!(!s.held && s.stale_record);
        // Garbage: a warning, not held, and acquire works.
        std::fs::write(&paths.record, b"\x00garbage").unwrap();
        let s = lock_status(&paths);
        assert!(!s.held && s.warnings.len() == 1);
        drop(try_acquire(&paths, "ok", &[]).unwrap());
    }
}
