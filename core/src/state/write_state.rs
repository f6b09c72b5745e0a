//! Writing a gate's state file when something is in the way. The shared
//! `state::atomic_file::write_atomic` replaces a file or a symlink; a
//! directory in the file's place cannot be renamed over, so it is moved
//! aside (never deleted: it may hold something the user wants) and the
//! write is retried.

use crate::state::atomic_file::write_atomic;
use std::io;
use std::path::{Path, PathBuf};

/// Atomically writes `bytes` to `path`. Returns a one-line warning when a
/// directory had to be moved aside first.
pub fn write_state(path: &Path, bytes: &[u8]) -> io::Result<Option<String>> {
    let meta = std::fs::symlink_metadata(path);
    if let Ok(m) = &meta {
        if m.is_dir() {
            let aside = aside_name(path);
            std::fs::rename(path, &aside).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "{} is a directory and cannot be moved aside ({e}); remove it: rm -r {}",
                        path.display(),
                        path.display()
                    ),
                )
            })?;
            write_atomic(path, bytes)?;
            return Ok(Some(format!(
                "metal-guard: warning: {} was a directory; moved it to {} and wrote a fresh state file",
                path.display(),
                aside.display()
            )));
        }
    }
    write_atomic(path, bytes)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot write {} ({e})", path.display())))?;
    Ok(None)
}

fn aside_name(path: &Path) -> PathBuf {
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".corrupt-{stamp}-{}", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_a_directory_aside_and_keeps_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("inside"), b"keep").unwrap();
        let warning = write_state(&p, b"{}").unwrap().unwrap();
        assert!(warning.contains("moved it to"));
        assert_eq!(std::fs::read(&p).unwrap(), b"{}");
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .collect();
        assert_eq!(aside.len(), 1);
        assert_eq!(std::fs::read(aside[0].join("inside")).unwrap(), b"keep");
    }
}
