//! Advisory kernel file locks (`flock`). The kernel drops the lock when the
//! last descriptor closes, so a holder that crashes (or a Mac that panics)
//! never leaves a lock behind.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// An exclusive `flock` on an open lock file; released on drop (or when the
/// process, and every child that inherited the descriptor, has exited).
#[derive(Debug)]
pub struct FileLock {
    file: File,
    path: PathBuf,
}

/// Whether to wait for the lock or fail at once when another process holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    Block,
    NoWait,
}

impl FileLock {
    /// Opens (creating, mode 0600) `path` and takes an exclusive lock.
    /// `Ok(None)` when `wait` is [`Wait::NoWait`] and another process holds it.
    /// The lock file must be a regular file: a symlink, a directory or a
    /// FIFO in its place is an error (it is left untouched). The open never
    /// blocks.
    pub fn acquire(path: &Path, wait: Wait) -> io::Result<Option<FileLock>> {
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::state::atomic_file::ensure_private_dir(dir)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot open lock file {} ({e}); a symlink or a directory in its place is left untouched: use another path for the lock",
                        path.display(),
                    ),
                )
            })?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "lock file {} is not a regular file; it is left untouched: use another path for the lock",
                    path.display()
                ),
            ));
        }
        let op = match wait {
            Wait::Block => libc::LOCK_EX,
            Wait::NoWait => libc::LOCK_EX | libc::LOCK_NB,
        };
        loop {
            // SAFETY: the descriptor is owned by `file`, open for the whole call.
            let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
            if rc == 0 {
                return Ok(Some(FileLock {
                    file,
                    path: path.to_path_buf(),
                }));
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EWOULDBLOCK) if wait == Wait::NoWait => return Ok(None),
                _ => return Err(err),
            }
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open lock file (to write a holder record through it, or to let a
    /// child inherit it).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Lets a child started after this call inherit the locked descriptor,
    /// so the lock lives as long as the child even if this process dies.
    pub fn inherit_across_exec(&self) -> io::Result<()> {
        let fd = self.file.as_raw_fd();
        // SAFETY: fd is a valid descriptor owned by self.file; F_GETFD/F_SETFD
        // only touch its close-on-exec flag.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// Whether some process holds an exclusive lock on `path`, without taking it
/// for longer than the probe itself (a shared, non-blocking attempt that is
/// released at once). A missing file is not held.
pub fn is_locked(path: &Path) -> io::Result<bool> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    loop {
        // SAFETY: the descriptor is owned by `file`, open for the whole call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
        if rc == 0 {
            // Dropping `file` closes the descriptor and releases the probe.
            return Ok(false);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => return Ok(true),
            _ => return Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_fails_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("locks").join("x.lock");
        let first = FileLock::acquire(&p, Wait::NoWait).unwrap().unwrap();
        assert!(FileLock::acquire(&p, Wait::NoWait).unwrap().is_none());
        assert!(is_locked(&p).unwrap());
        drop(first);
        assert!(!is_locked(&p).unwrap());
        assert!(FileLock::acquire(&p, Wait::NoWait).unwrap().is_some());
    }

    #[test]
    fn refuses_a_symlink_and_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, b"x").unwrap();
        let link = dir.path().join("l.lock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = FileLock::acquire(&link, Wait::NoWait).unwrap_err();
        assert!(err.to_string().contains("left untouched"), "{err}");
        assert_eq!(std::fs::read(&target).unwrap(), b"x");
        let d = dir.path().join("d.lock");
        std::fs::create_dir(&d).unwrap();
        assert!(FileLock::acquire(&d, Wait::NoWait).is_err());
        assert!(d.is_dir());
        // A FIFO: neither the lock nor the probe waits for a writer.
        let fifo = dir.path().join("f.lock");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path and a mode.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(FileLock::acquire(&fifo, Wait::NoWait).is_err());
        let _ = is_locked(&fifo);
    }
}
