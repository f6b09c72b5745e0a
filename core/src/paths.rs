//! Where metal-guard keeps its state, resolved from the environment once.
//!
//! State lives where the Python tool keeps it (`~/.cache/metal-guard/`) so
//! users who switch keep their history.

use std::path::PathBuf;

/// The user's home directory, from `HOME`, falling back to the password database.
pub fn home_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(home));
    }
    // SAFETY: getpwuid returns a pointer to static storage or null; we copy the
    // string out before any other call that could overwrite it.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if pw.is_null() || (*pw).pw_dir.is_null() {
            return None;
        }
        let dir = std::ffi::CStr::from_ptr((*pw).pw_dir);
        Some(PathBuf::from(
            std::ffi::OsStr::from_encoded_bytes_unchecked(dir.to_bytes()),
        ))
    }
}

/// `~/.cache/metal-guard`, the state directory shared with the Python tool.
pub fn state_dir() -> PathBuf {
    home_dir()
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join(".cache")
        .join("metal-guard")
}

/// Paths in JSON documents: shown lossily (a byte that is not UTF-8 becomes
/// U+FFFD) instead of failing the whole document, as serde does for a
/// `PathBuf` that is not UTF-8 (a `HOME` in another encoding, say).
pub mod lossy {
    use serde::Serializer;
    use std::path::{Path, PathBuf};

    pub fn path<S: Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&p.to_string_lossy())
    }

    pub fn option<S: Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        match p {
            Some(p) => path(p, s),
            None => s.serialize_none(),
        }
    }

    pub fn list<S: Serializer>(ps: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(ps.iter().map(|p| p.to_string_lossy()))
    }
}
