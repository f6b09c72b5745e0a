//! Telling a process from a later one that reuses its pid: when a process
//! started, and when this machine booted, as Unix seconds. The MLX lock uses
//! them so that a holder record is honoured, and a holder signalled, only
//! while its pid still belongs to the process that wrote it in this boot.

/// When process `pid` started (Unix seconds), if it exists and can be read.
pub fn start_time(pid: i64) -> Option<f64> {
    if pid <= 0 || pid > i64::from(i32::MAX) {
        return None;
    }
    imp::start_time(pid as i32)
}

/// When this machine booted (Unix seconds).
pub fn boot_time() -> Option<f64> {
    imp::boot_time()
}

/// Slack for comparing a start time with a time a process wrote itself
/// (clock ticks, a clock that was adjusted).
pub const TOLERANCE_SEC: f64 = 2.0;

/// Whether the process now at `pid` can be the one that wrote a record at
/// `written_at` (Unix seconds): it was alive then, in this boot. Unknown
/// facts (a platform or permission that hides them) count as yes: the
/// caller's other evidence (a kernel lock) decides.
pub fn could_have_written(pid: i64, written_at: Option<f64>) -> bool {
    let Some(written_at) = written_at.filter(|t| t.is_finite()) else {
        return true;
    };
    if boot_time().is_some_and(|boot| written_at + TOLERANCE_SEC < boot) {
        return false; // written before this boot: no process of then lives
    }
    match start_time(pid) {
        Some(started) => started <= written_at + TOLERANCE_SEC,
        None => true,
    }
}

#[cfg(target_os = "linux")]
mod imp {
    /// `btime` of `/proc/stat`.
    pub fn boot_time() -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        stat.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    }

    /// Field 22 of `/proc/PID/stat` (clock ticks after boot), counted from
    /// after the command name, which may itself hold spaces and parentheses.
    pub fn start_time(pid: i32) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let after_name = &stat[stat.rfind(')')? + 1..];
        let ticks: f64 = after_name.split_whitespace().nth(19)?.parse().ok()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if hz <= 0 {
            return None;
        }
        Some(boot_time()? + ticks / hz as f64)
    }
}

#[cfg(target_os = "macos")]
mod imp {
    /// `kern.boottime`.
    pub fn boot_time() -> Option<f64> {
        crate::sysctl_macos::boot_time()
    }

    /// `proc_pidinfo(PROC_PIDTBSDINFO)`: `pbi_start_tvsec` and `_tvusec`.
    pub fn start_time(pid: i32) -> Option<f64> {
        let mut info: libc::proc_bsdinfo = unsafe_zeroed();
        let size = std::mem::size_of::<libc::proc_bsdinfo>() as libc::c_int;
        // SAFETY: `info` is a writable proc_bsdinfo of `size` bytes.
        let n = unsafe {
            libc::proc_pidinfo(
                pid,
                libc::PROC_PIDTBSDINFO,
                0,
                (&mut info as *mut libc::proc_bsdinfo).cast(),
                size,
            )
        };
        (n == size).then(|| info.pbi_start_tvsec as f64 + info.pbi_start_tvusec as f64 / 1e6)
    }

    fn unsafe_zeroed() -> libc::proc_bsdinfo {
        // SAFETY: proc_bsdinfo is plain old data; all-zero is a valid value.
        unsafe { std::mem::zeroed() }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
mod imp {
    pub fn boot_time() -> Option<f64> {
        None
    }
    pub fn start_time(_pid: i32) -> Option<f64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> f64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    }

    #[test]
    fn this_process_started_after_boot_and_before_now() {
        let me = std::process::id() as i64;
        let started = start_time(me).expect("own start time");
        let boot = boot_time().expect("boot time");
        assert!(boot <= started + TOLERANCE_SEC && started <= now() + TOLERANCE_SEC);
        assert!(could_have_written(me, Some(now())));
        assert!(start_time(-1).is_none() && start_time(i64::MAX).is_none());
    }

    #[test]
    fn a_record_older_than_the_process_or_the_boot_is_not_its_own() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i64;
        assert!(could_have_written(pid, Some(now() + 1.0)));
        assert!(
            !could_have_written(pid, Some(now() - 3600.0)),
            "written an hour before the process existed: a reused pid"
        );
        assert!(!could_have_written(
            pid,
            Some(boot_time().unwrap() - 86400.0)
        ));
        assert!(could_have_written(pid, None), "nothing to compare");
        let _ = child.kill();
        let _ = child.wait();
    }
}
