//! `~/.metal-guard-ack`: a person's acknowledgement of a lockout. Only the
//! file's modification time counts (the Python tool's rule), so `touch`
//! works as well as `metal-guard ack`.

use crate::timefmt;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

/// How long an acknowledgement stays valid.
pub const ACK_VALID_FOR: time::Duration = time::Duration::hours(24);
/// Clock skew tolerated for an ack written "in the future".
pub const ACK_FUTURE_SKEW: time::Duration = time::Duration::minutes(5);

/// `~/.metal-guard-ack`.
pub fn ack_path() -> PathBuf {
    crate::paths::home_dir()
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join(".metal-guard-ack")
}

/// The acknowledgement time, if there is a usable one; a warning when the
/// path exists but cannot serve as an ack.
pub fn read_ack(path: &Path) -> (Option<OffsetDateTime>, Option<String>) {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, None),
        Err(e) => (
            None,
            Some(format!(
                "metal-guard: warning: {} cannot be read ({e}); ignoring it (run `metal-guard ack` to write a fresh one)",
                path.display()
            )),
        ),
        Ok(m) if m.is_dir() => (
            None,
            Some(format!(
                "metal-guard: warning: {} is a directory, not an ack file; ignoring it and leaving it untouched (move it elsewhere, then run `metal-guard ack`)",
                path.display()
            )),
        ),
        Ok(m) => (timefmt::mtime(&m), None),
    }
}

/// Whether an ack at `ack` is valid at `now` for panics up to `latest_panic`:
/// younger than 24 h and newer than the latest panic.
pub fn ack_is_valid(
    ack: Option<OffsetDateTime>,
    latest_panic: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> bool {
    let Some(ack) = ack else { return false };
    if ack > now + ACK_FUTURE_SKEW || now - ack >= ACK_VALID_FOR {
        return false;
    }
    latest_panic.is_none_or(|p| ack > p)
}

/// Writes the ack file (its content is for people; its mtime is the ack).
/// Returns a warning when something had to be moved out of the way.
pub fn write_ack(path: &Path, now: OffsetDateTime) -> std::io::Result<Option<String>> {
    let text = format!(
        "metal-guard lockout acknowledged at {}\nOnly this file's modification time counts; it is valid for 24 h.\n",
        timefmt::iso(now)
    );
    crate::state::write_state::write_state(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use time::Duration;

    #[test]
    fn validity_rules() {
        let now = datetime!(2026-11-25 12:00 UTC);
        let panic = Some(now - Duration::hours(3));
        assert!(ack_is_valid(Some(now - Duration::hours(1)), panic, now));
        assert!(
            !ack_is_valid(Some(now - Duration::hours(4)), panic, now),
            "older than the panic"
        );
        assert!(
            !ack_is_valid(Some(now - Duration::hours(25)), None, now),
            "expired"
        );
        assert!(
            !ack_is_valid(Some(now + Duration::hours(1)), panic, now),
            "future"
        );
        assert!(!ack_is_valid(None, panic, now));
    }

    #[test]
    fn a_directory_in_place_is_ignored_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".metal-guard-ack");
        std::fs::create_dir(&p).unwrap();
        let (t, w) = read_ack(&p);
        assert!(t.is_none() && w.unwrap().contains("directory"));
        let now = OffsetDateTime::now_utc();
        assert!(write_ack(&p, now).is_err());
        assert!(p.is_dir());
        std::fs::remove_dir(&p).unwrap();
        assert!(write_ack(&p, now).unwrap().is_none());
        let (t, w) = read_ack(&p);
        assert!(t.is_some() && w.is_none());
    }
}
