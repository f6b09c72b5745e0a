//! Flushing a file so that it survives a kernel panic, not just a crash.
//!
//! On macOS `fsync` only hands the data to the drive, whose cache may still
//! lose it when the machine panics ("if the drive loses power or the OS
//! crashes, the application may find that only some or none of their data was
//! written", fsync(2)). `fcntl(F_FULLFSYNC)` asks the drive to flush its cache
//! too. Breadcrumbs written just before a risky GPU transition are exactly the
//! lines a panic must not eat, so they go through here. Elsewhere `fsync` is
//! the strongest request there is.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// Makes everything written to `file` durable: `F_FULLFSYNC` on macOS
/// (falling back to `fsync` on filesystems that refuse it, such as some
/// network and FAT volumes), `fsync` elsewhere.
pub fn durable_sync(file: impl AsFd) -> io::Result<()> {
    let fd = file.as_fd().as_raw_fd();
    #[cfg(target_os = "macos")]
    {
        // SAFETY: `fd` is a valid open descriptor for the duration of the call
        // (borrowed from `file`); F_FULLFSYNC takes no argument.
        if unsafe { libc::fcntl(fd, libc::F_FULLFSYNC) } != -1 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ENOTSUP) | Some(libc::EINVAL) | Some(libc::ENOTTY) => {}
            _ => return Err(err),
        }
    }
    // SAFETY: `fd` is a valid open descriptor borrowed from `file`.
    if unsafe { libc::fsync(fd) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn syncs_a_written_file() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"[2026-11-25T23:51:46.123Z] SUBPROC_PRE: load\n")
            .unwrap();
        durable_sync(&f).unwrap();
    }

    #[test]
    fn reports_a_descriptor_that_cannot_be_synced() {
        // A pipe cannot be fsync'd: the error comes back, nothing panics.
        use std::os::fd::{FromRawFd, OwnedFd};
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe() writes.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: pipe() succeeded, so both are fresh descriptors we own.
        let (reader, _writer) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        assert!(durable_sync(&reader).is_err());
    }
}
