//! Writing a state file when something may be in its place. Only a regular
//! file (or nothing) is replaced as it is; a symlink is replaced by a
//! regular file (its target is never written through) and the caller is told;
//! a directory, FIFO, socket or device is left untouched and the write fails
//! with a one-line error: it may be the user's, and the path may be one the
//! user named (`status-write --out`, `MLX_LOCK_PATH`).

use crate::state::atomic_file::write_atomic;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

/// Atomically writes `bytes` to `path`. Returns a one-line warning when a
/// symlink had to be replaced.
pub fn write_state(path: &Path, bytes: &[u8]) -> io::Result<Option<String>> {
    let refuse = |what: &str| {
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} is a {what}, not a file; metal-guard leaves it untouched: name a file path, or move the {what} elsewhere",
                path.display()
            ),
        ))
    };
    let mut warning = None;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => return refuse("directory"),
        Ok(m) if m.file_type().is_fifo() => return refuse("FIFO"),
        Ok(m) if m.file_type().is_socket() => return refuse("socket"),
        Ok(m) if m.file_type().is_char_device() || m.file_type().is_block_device() => {
            return refuse("device")
        }
        Ok(m) if m.file_type().is_symlink() => {
            let target = std::fs::read_link(path)
                .map(|t| t.display().to_string())
                .unwrap_or_else(|_| "?".into());
            warning = Some(format!(
                "metal-guard: warning: {} was a symlink to {target}; replaced it with a regular file ({target} is untouched)",
                path.display()
            ));
        }
        _ => {}
    }
    write_atomic(path, bytes)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot write {} ({e})", path.display())))?;
    Ok(warning)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_left_untouched_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("inside"), b"keep").unwrap();
        let e = write_state(&p, b"{}").unwrap_err().to_string();
        assert!(
            e.contains("is a directory") && e.contains("untouched"),
            "{e}"
        );
        assert!(!e.contains("rm "), "never advise removing it: {e}");
        assert_eq!(std::fs::read(p.join("inside")).unwrap(), b"keep");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_symlink_is_replaced_and_its_target_kept() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let p = dir.path().join("state.json");
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        let w = write_state(&p, b"{}").unwrap().unwrap();
        assert!(w.contains("was a symlink"), "{w}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(&p).unwrap(), b"{}");
        assert!(write_state(&p, b"{}").unwrap().is_none());
    }
}
