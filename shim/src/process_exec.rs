//! Replacing the launcher with the program: `execve`, so the program keeps
//! the launcher's pid, terminal, process group, signal mask and ignored
//! signals, and the shell sees its exit status and signals directly.

use std::ffi::{CString, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The inherited environment with `sets` applied (later entries win).
pub fn compose_environment<'a>(
    inherited: impl Iterator<Item = (&'a std::ffi::OsStr, &'a std::ffi::OsStr)>,
    sets: &[(OsString, OsString)],
) -> Vec<(OsString, OsString)> {
    let mut env: std::collections::BTreeMap<OsString, OsString> = inherited
        .map(|(k, v)| (k.to_os_string(), v.to_os_string()))
        .collect();
    for (k, v) in sets {
        env.insert(k.clone(), v.clone());
    }
    env.into_iter().collect()
}

/// Whether standard descriptor `fd` is the `/dev/null` that Rust's runtime
/// opens (read-write) in place of a descriptor that was closed when the
/// launcher started: the program must inherit it closed, as it would from
/// the shell (Python then sets `sys.stdin` to `None`). A user's own
/// `< /dev/null` is opened read-only and passes through as it is.
fn is_runtime_placeholder(fd: libc::c_int) -> bool {
    // SAFETY: fcntl and fstat on a descriptor number have no memory
    // preconditions; `st` is a valid, writable stat buffer.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || flags & libc::O_ACCMODE != libc::O_RDWR {
            return false;
        }
        let mut st: libc::stat = std::mem::zeroed();
        let mut null: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &mut st) == 0
            && libc::stat(c"/dev/null".as_ptr(), &mut null) == 0
            && st.st_mode & libc::S_IFMT == libc::S_IFCHR
            && st.st_rdev == null.st_rdev
    }
}

/// Closes the standard descriptors that were closed when the launcher
/// started (see [`is_runtime_placeholder`]); called just before `execve`.
pub fn close_runtime_placeholders() {
    for fd in 0..=2 {
        if is_runtime_placeholder(fd) {
            // SAFETY: closing a standard descriptor we do not use again
            // before the exec; std's stdio tolerates EBADF afterwards.
            unsafe { libc::close(fd) };
        }
    }
}

/// `execve(program, argv, env)`. Returns only on failure.
pub fn exec_replace(program: &Path, argv: &[OsString], env: &[(OsString, OsString)]) -> io::Error {
    let to_c = |bytes: &[u8]| {
        CString::new(bytes).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "an argument or variable contains a NUL byte",
            )
        })
    };
    let prepared = (|| -> io::Result<(CString, Vec<CString>, Vec<CString>)> {
        let program = to_c(program.as_os_str().as_bytes())?;
        let argv = argv
            .iter()
            .map(|a| to_c(a.as_bytes()))
            .collect::<io::Result<Vec<_>>>()?;
        let envp = env
            .iter()
            .map(|(k, v)| {
                let mut entry = k.as_bytes().to_vec();
                entry.push(b'=');
                entry.extend_from_slice(v.as_bytes());
                to_c(&entry)
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok((program, argv, envp))
    })();
    let (program, argv, envp) = match prepared {
        Ok(p) => p,
        Err(e) => return e,
    };
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut env_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    // SAFETY: Rust's runtime set SIGPIPE to "ignore" at start-up; the program
    // must start with the default disposition, as it would from a shell.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    close_runtime_placeholders();
    // SAFETY: every pointer refers to a NUL-terminated CString kept alive in
    // `program`, `argv` and `envp` for the duration of the call, and both
    // pointer arrays end with a null pointer as execve requires.
    unsafe {
        libc::execve(program.as_ptr(), argv_ptrs.as_ptr(), env_ptrs.as_ptr());
    }
    io::Error::last_os_error()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn sets_override_inherited_values() {
        let inherited = [
            (OsStr::new("A"), OsStr::new("1")),
            (OsStr::new("B"), OsStr::new("2")),
        ];
        let env = compose_environment(
            inherited.into_iter(),
            &[("B".into(), "3".into()), ("C".into(), "4".into())],
        );
        assert_eq!(
            env,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "3".into()),
                ("C".into(), "4".into())
            ]
        );
    }

    #[test]
    fn nul_bytes_and_missing_programs_are_errors_not_crashes() {
        let err = exec_replace(Path::new("/bin/true"), &["a\0b".into()], &[]);
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = exec_replace(Path::new("/nonexistent/program"), &["x".into()], &[]);
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    }
}
