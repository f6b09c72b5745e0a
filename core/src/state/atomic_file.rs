//! Atomic replacement of a file: a reader sees the old content or the new,
//! never a torn write, and a crash (or a kernel panic: the data goes through
//! `durable_sync`, `F_FULLFSYNC` on macOS) right after the call
//! returns still finds the new content on disk.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Creates `dir` and its missing parents with mode 0700 (an existing
/// directory keeps its mode: we never loosen or tighten what the user set).
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// The prefix of our temporaries for `file_name`: `.<name>.tmp.`.
fn temp_prefix(file_name: &std::ffi::OsStr) -> std::ffi::OsString {
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(file_name);
    prefix.push(".tmp.");
    prefix
}

/// 64 random bits as hex, from the kernel (`getrandom` on Linux,
/// `arc4random_buf` on macOS), so a temporary's name cannot be guessed and
/// planted in advance.
fn random_hex() -> String {
    let mut bytes = [0u8; 8];
    #[cfg(target_os = "macos")]
    // SAFETY: arc4random_buf fills exactly `len` bytes of a valid buffer.
    unsafe {
        libc::arc4random_buf(bytes.as_mut_ptr().cast(), bytes.len())
    };
    #[cfg(not(target_os = "macos"))]
    {
        // SAFETY: getrandom writes at most `len` bytes into a valid buffer.
        let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
        if n != bytes.len() as isize {
            // No entropy call: the time and pid still make the name unique;
            // O_EXCL below keeps a planted file from being used either way.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            bytes = (t ^ (u64::from(std::process::id()) << 32)).to_le_bytes();
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Temporaries of ours left by a run that was killed mid-write: only our
/// own names for this file, only when older than a minute (a concurrent
/// writer's temporary lives milliseconds).
fn remove_stale_temporaries(dir: &Path, file_name: &std::ffi::OsStr) {
    let prefix = temp_prefix(file_name);
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name
            .as_encoded_bytes()
            .starts_with(prefix.as_encoded_bytes())
        {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(60));
        if meta.is_file() && old {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// directory (an unpredictable name, created exclusively and never through a
/// symlink), `fsync`, `rename` over the target, then `fsync` of the
/// directory so the rename itself is durable. A symlink at `path` is
/// replaced by a regular file rather than followed, so a state file can never
/// be redirected to overwrite something else. File mode is 0600.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_replacing(path, bytes, 0o600, None, &|| Ok(()))
}

/// Who owns a file and with which mode: what a file we rewrite for the user
/// keeps (set on the temporary, so the file never has other attributes,
/// even when the rewrite is killed halfway).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attributes {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Attributes {
    pub fn of(meta: &std::fs::Metadata) -> Attributes {
        use std::os::unix::fs::MetadataExt;
        Attributes {
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
        }
    }
}

/// Replaces `path` with `bytes`, keeping `attributes` (or `mode` for a new
/// file); `before_rename` runs just before the temporary takes the file's
/// place and can refuse (the temporary is then removed): the caller's chance
/// to notice that the file changed meanwhile.
pub fn write_replacing(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    attributes: Option<Attributes>,
    before_rename: &dyn Fn() -> io::Result<()>,
) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    ensure_private_dir(dir)?;
    let file_name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "state path has no file name")
    })?;
    let prefix = temp_prefix(file_name);
    let (mut tmp, tmp_path) = {
        let mut attempt = 0;
        loop {
            let mut name = prefix.clone();
            name.push(random_hex());
            let candidate = dir.join(name);
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&candidate)
            {
                Ok(f) => break (f, candidate),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 16 => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    };
    let result = (|| {
        if let Some(a) = attributes {
            use std::os::fd::AsRawFd;
            // SAFETY: the descriptor is open (owned by `tmp`). Changing the
            // owner needs privilege unless it is already ours: an EPERM for
            // the same owner is harmless, any other owner is an error.
            let rc = unsafe { libc::fchown(tmp.as_raw_fd(), a.uid, a.gid) };
            if rc != 0 {
                let e = io::Error::last_os_error();
                let ours = tmp.metadata().map(|m| {
                    use std::os::unix::fs::MetadataExt;
                    m.uid() == a.uid && m.gid() == a.gid
                });
                if !ours.unwrap_or(false) {
                    return Err(e);
                }
            }
        }
        let mode = attributes.map_or(mode, |a| a.mode);
        // The umask may have narrowed the mode given at creation.
        tmp.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        tmp.write_all(bytes)?;
        super::durable_sync::durable_sync(&tmp)?;
        drop(tmp);
        before_rename()?;
        fs::rename(&tmp_path, path)?;
        // Durability of the rename: fsync the directory entry. Some
        // filesystems refuse to fsync a directory; the data is still safe.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp_path);
    }
    remove_stale_temporaries(dir, file_name);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("x.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("x.json")]);
    }

    #[test]
    fn a_planted_temporary_is_neither_followed_nor_reused() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep me").unwrap();
        // The old predictable name, planted as a symlink to the victim.
        let planted = dir
            .path()
            .join(format!(".s.json.tmp.{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        write_atomic(&dir.path().join("s.json"), b"new").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep me");
        assert_eq!(fs::read(dir.path().join("s.json")).unwrap(), b"new");
    }

    #[test]
    fn stale_temporaries_of_a_killed_run_are_removed_later() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(".s.json.tmp.deadbeef");
        let fresh = dir.path().join(".s.json.tmp.cafe");
        let other = dir.path().join(".other.json.tmp.deadbeef");
        for p in [&stale, &fresh, &other] {
            fs::write(p, b"x").unwrap();
        }
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for p in [&stale, &other] {
            File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        write_atomic(&dir.path().join("s.json"), b"{}").unwrap();
        assert!(!stale.exists(), "an old temporary of ours goes");
        assert!(fresh.exists(), "a concurrent writer's stays");
        assert!(other.exists(), "another file's stays");
    }

    #[test]
    fn creates_private_directories() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("a").join("b");
        write_atomic(&state.join("f"), b"{}").unwrap();
        let mode = fs::metadata(&state).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn replaces_a_symlink_instead_of_following_it() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep me").unwrap();
        let link = dir.path().join("state.json");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep me");
        assert_eq!(fs::read(&link).unwrap(), b"new");
        assert!(!fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
    }
}
