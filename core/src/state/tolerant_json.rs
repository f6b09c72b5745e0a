//! Tolerant reads of JSON state files. Whatever is on disk (nothing, an
//! empty file, garbage, the wrong types, a directory, a file we may not read)
//! the caller gets a value it can act on and, when something was wrong, one
//! line that says what and what happens next. Never a panic, never a lockout.

use serde::de::DeserializeOwned;
use std::path::Path;

/// Largest state file we read; anything bigger is treated as corrupt.
pub const MAX_STATE_BYTES: u64 = super::regular_file::STATE_MAX_BYTES;

/// What a tolerant read found.
#[derive(Debug)]
pub enum Loaded<T> {
    /// No file: the default state applies, nothing to report.
    Missing,
    /// The file parsed.
    Ok(T),
    /// The file exists but cannot be used; the caller resets to its default
    /// state. `warning` is one line naming the file, the cause and the reset.
    Reset { warning: String },
}

impl<T> Loaded<T> {
    /// The parsed value, or `fallback()` for a missing or reset file.
    pub fn unwrap_or_else(self, fallback: impl FnOnce() -> T) -> T {
        match self {
            Loaded::Ok(v) => v,
            Loaded::Missing | Loaded::Reset { .. } => fallback(),
        }
    }

    /// The warning, if the file had to be reset.
    pub fn warning(&self) -> Option<&str> {
        match self {
            Loaded::Reset { warning } => Some(warning),
            _ => None,
        }
    }
}

/// Reads and parses `path` as `T`, tolerating every kind of damage.
pub fn load<T: DeserializeOwned>(path: &Path) -> Loaded<T> {
    let reset = |cause: String| {
        Loaded::Reset {
        warning: format!(
            "metal-guard: warning: {} {cause}; treating it as empty (it will be rewritten on the next update)",
            path.display()
        ),
    }
    };
    // Never blocks (a FIFO), never reads a device, never more than the cap.
    let bytes = match super::regular_file::read_capped(path, MAX_STATE_BYTES) {
        Ok(None) => return Loaded::Missing,
        Ok(Some(b)) => b,
        Err(e) => return reset(e.to_string()),
    };
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return reset("is empty".to_string());
    }
    match serde_json::from_slice::<T>(&bytes) {
        Ok(v) => Loaded::Ok(v),
        Err(e) => reset(format!("is not valid state JSON ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    type Cadence = BTreeMap<String, f64>;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn every_kind_of_damage_resets_with_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            write(dir.path(), "empty", b""),
            write(dir.path(), "blank", b"  \n"),
            write(dir.path(), "garbage", b"\x00\xff{{{"),
            write(dir.path(), "truncated", br#"{"a": 1.5, "b""#),
            write(dir.path(), "wrong-types", br#"{"a": "not a number"}"#),
            write(dir.path(), "array", b"[1,2,3]"),
        ];
        for path in cases {
            let loaded = load::<Cadence>(&path);
            let warning = loaded.warning().expect("must reset").to_string();
            assert!(!warning.contains('\n'), "{warning}");
            assert!(warning.contains(&path.display().to_string()));
        }
        let sub = dir.path().join("a-directory");
        std::fs::create_dir(&sub).unwrap();
        assert!(load::<Cadence>(&sub)
            .warning()
            .unwrap()
            .contains("directory"));
    }

    #[test]
    fn missing_and_valid_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            load::<Cadence>(&dir.path().join("nope")),
            Loaded::Missing
        ));
        let p = write(dir.path(), "ok", br#"{"m": 12.5}"#);
        let v = load::<Cadence>(&p).unwrap_or_else(Cadence::new);
        assert_eq!(v["m"], 12.5);
    }

    #[test]
    fn unreadable_file_resets() {
        use std::os::unix::fs::PermissionsExt;
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            // root reads through permission bits; nothing to test here.
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "locked", b"{}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
        assert!(load::<Cadence>(&p).warning().is_some());
    }
}
