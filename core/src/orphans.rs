//! Orphan scan: a `SUBPROC_PRE` breadcrumb with no matching `SUBPROC_POST`
//! after the threshold means a risky GPU section never finished: the
//! process hung, crashed, or the Mac panicked inside it.
//!
//! Pairing: a POST closes the most recent open PRE with the same payload
//! (the model id) and, when both lines carry one, the same `pid`.

use crate::breadcrumbs::{parse_line, BreadcrumbLine, TAG_POST, TAG_PRE};
use serde::Serialize;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use time::{Duration, OffsetDateTime};

/// Default threshold, seconds (`METALGUARD_SUBPROC_ORPHAN_THRESHOLD_SEC`).
pub const DEFAULT_THRESHOLD_SEC: f64 = 90.0;
/// Only the tail of a large log is read.
pub const TAIL_BYTES: u64 = 4 * 1024 * 1024;

/// One unfinished section (the Python tool's JSON keys).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Orphan {
    pub model_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub pre_ts: OffsetDateTime,
    pub age_sec: f64,
    pub pid: Option<u32>,
}

/// Pairs PRE/POST lines (in log order) and returns the PREs left open for
/// longer than `threshold` at `now`, oldest first.
pub fn find_orphans(
    lines: &[BreadcrumbLine],
    threshold: Duration,
    now: OffsetDateTime,
) -> Vec<Orphan> {
    let mut open: Vec<&BreadcrumbLine> = Vec::new();
    for line in lines {
        if line.tag == TAG_PRE {
            open.push(line);
        } else if line.tag == TAG_POST {
            let pid = line.field("pid");
            if let Some(i) = open.iter().rposition(|pre| {
                pre.payload == line.payload
                    && match (pre.field("pid"), pid) {
                        (Some(a), Some(b)) => a == b,
                        _ => true,
                    }
            }) {
                open.remove(i);
            }
        }
    }
    open.into_iter()
        .filter(|pre| now - pre.time > threshold)
        .map(|pre| Orphan {
            model_id: pre.payload.clone(),
            pre_ts: pre.time,
            age_sec: ((now - pre.time).as_seconds_f64() * 10.0).round() / 10.0,
            pid: pre.field("pid").and_then(|p| p.parse().ok()),
        })
        .collect()
}

/// The parsed breadcrumb lines of the log at `path` (its last
/// [`TAIL_BYTES`]); a missing log has none. Lines that are not
/// breadcrumbs are skipped.
pub fn read_log(path: &Path) -> std::io::Result<Vec<BreadcrumbLine>> {
    Ok(read_tail_text(path, TAIL_BYTES)?
        .lines()
        .filter_map(parse_line)
        .collect())
}

/// The last `max` bytes of a text file, from the first whole line
/// (missing file: empty).
pub fn read_tail_text(path: &Path, max: u64) -> std::io::Result<String> {
    // Only a regular file, opened without blocking (a FIFO in the log's
    // place must not hang `orphan-scan` or `status`).
    let Some((mut file, len)) = crate::state::regular_file::open_regular(path)? else {
        return Ok(String::new());
    };
    let mut skip_partial = false;
    if len > max {
        file.seek(SeekFrom::Start(len - max))?;
        skip_partial = true;
    }
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes)?;
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if skip_partial {
        if let Some(nl) = text.find('\n') {
            text.drain(..=nl);
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-25 12:00 UTC);

    fn line(ago_s: i64, tag: &str, model: &str, pid: Option<u32>) -> BreadcrumbLine {
        BreadcrumbLine {
            time: NOW - Duration::seconds(ago_s),
            tag: tag.into(),
            payload: model.into(),
            fields: pid
                .map(|p| vec![("pid".into(), p.to_string())])
                .unwrap_or_default(),
        }
    }

    #[test]
    fn pairs_by_model_and_pid() {
        let log = vec![
            line(600, TAG_PRE, "a", Some(1)),
            line(590, TAG_PRE, "a", Some(2)),
            line(580, TAG_POST, "a", Some(2)),
            line(500, TAG_PRE, "b", None),
            line(490, TAG_POST, "b", None),
            line(300, "MEM", "x", None),
            line(30, TAG_PRE, "c", Some(3)),
        ];
        let o = find_orphans(&log, Duration::seconds(90), NOW);
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].model_id, "a");
        assert_eq!(o[0].pid, Some(1));
        assert_eq!(o[0].age_sec, 600.0);
        // The young PRE becomes an orphan once past the threshold.
        assert_eq!(find_orphans(&log, Duration::seconds(10), NOW).len(), 2);
    }

    #[test]
    fn reads_mixed_logs_and_python_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.log");
        std::fs::write(
            &p,
            "[2026-11-25 11:50:00] SUBPROC_PRE: mlx-community/m\nnot a breadcrumb\n[2026-11-25T11:55:00.000Z] SUBPROC_POST: other | pid=9\n",
        )
        .unwrap();
        let lines = read_log(&p).unwrap();
        assert_eq!(lines.len(), 2);
        let o = find_orphans(&lines, Duration::seconds(90), NOW);
        assert_eq!(o[0].model_id, "mlx-community/m");
        assert!(read_log(&dir.path().join("missing")).unwrap().is_empty());
    }
}
