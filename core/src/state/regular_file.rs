//! Opening a file we only read (a state file, the panic ledger, the
//! breadcrumb log, a panic report) so that nothing placed at its path can
//! hang or exhaust the reader: the open never blocks (a FIFO returns at
//! once), only a regular file is read, and never more than a cap that is
//! checked before reading.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The most we read of a state file (`*.json`): ours are a few kilobytes.
pub const STATE_MAX_BYTES: u64 = 1024 * 1024;

/// Why a path cannot be read as a regular file.
#[derive(Debug)]
pub enum NotReadable {
    /// A directory, FIFO, socket or device is in the file's place.
    NotRegular(&'static str),
    /// Larger than the reader's cap.
    TooLarge { len: u64, cap: u64 },
    /// The open or the read failed (permissions, I/O).
    Io(io::Error),
}

impl std::fmt::Display for NotReadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReadable::NotRegular(kind) => write!(f, "is a {kind}, not a regular file"),
            NotReadable::TooLarge { len, cap } => {
                write!(f, "is {len} bytes, more than the {cap} bytes we read")
            }
            NotReadable::Io(e) => write!(f, "cannot be read ({e})"),
        }
    }
}

impl std::error::Error for NotReadable {}

impl From<NotReadable> for io::Error {
    fn from(e: NotReadable) -> io::Error {
        match e {
            NotReadable::Io(e) => e,
            other => io::Error::other(other.to_string()),
        }
    }
}

fn kind_name(ft: std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "directory"
    } else if ft.is_fifo() {
        "FIFO (named pipe)"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() {
        "character device"
    } else if ft.is_block_device() {
        "block device"
    } else {
        "special file"
    }
}

/// Opens `path` for reading without blocking; `Ok(None)` when nothing is
/// there. The file is checked after the open (`fstat` of what was opened,
/// so a swap between a check and the open cannot fool it); its length is
/// returned with it.
pub fn open_regular(path: &Path) -> Result<Option<(File, u64)>, NotReadable> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        // A directory opens for reading on Linux; where it does not, say what it is.
        Err(e) => {
            return Err(match std::fs::symlink_metadata(path) {
                Ok(m) if !m.is_file() && !m.file_type().is_symlink() => {
                    NotReadable::NotRegular(kind_name(m.file_type()))
                }
                _ => NotReadable::Io(e),
            })
        }
    };
    let meta = file.metadata().map_err(NotReadable::Io)?;
    if !meta.is_file() {
        return Err(NotReadable::NotRegular(kind_name(meta.file_type())));
    }
    Ok(Some((file, meta.len())))
}

/// Reads all of `path` when it is a regular file of at most `cap` bytes;
/// `Ok(None)` when nothing is there. A file that grows past `cap` while it
/// is read is refused too.
pub fn read_capped(path: &Path, cap: u64) -> Result<Option<Vec<u8>>, NotReadable> {
    let Some((file, len)) = open_regular(path)? else {
        return Ok(None);
    };
    if len > cap {
        return Err(NotReadable::TooLarge { len, cap });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(NotReadable::Io)?;
    if bytes.len() as u64 > cap {
        return Err(NotReadable::TooLarge {
            len: bytes.len() as u64,
            cap,
        });
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn regular_files_are_read_and_missing_ones_are_none() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        assert!(read_capped(&p, 10).unwrap().is_none());
        std::fs::write(&p, b"{}").unwrap();
        assert_eq!(read_capped(&p, 10).unwrap().unwrap(), b"{}");
        std::fs::write(&p, b"0123456789A").unwrap();
        assert!(matches!(
            read_capped(&p, 10),
            Err(NotReadable::TooLarge { len: 11, cap: 10 })
        ));
    }

    #[test]
    fn a_fifo_a_device_and_a_directory_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path and a mode.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let started = Instant::now();
        for (path, kind) in [
            (fifo.as_path(), "FIFO"),
            (zero.as_path(), "character device"),
            (dir.path(), "directory"),
        ] {
            let e = read_capped(path, STATE_MAX_BYTES).unwrap_err();
            assert!(e.to_string().contains(kind), "{path:?}: {e}");
        }
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
