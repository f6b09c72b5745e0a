//! The panic history in `~/.cache/metal-guard/panics.jsonl`: one JSON record
//! per IOGPU panic, appended once per report however often it is scanned.
//!
//! Records carry the fields the Python tool writes (`ts` in Unix seconds,
//! `signature`, `explanation`, `pid`, `source_file`) plus ours. A report is
//! the same report when its file name and its time (to the second) match,
//! so a report Apple moves into `Retired/` is not counted twice. Lines we
//! cannot parse are kept verbatim and reported, never dropped.

use super::PanicReport;
use crate::state::atomic_file::{ensure_private_dir, write_atomic};
use crate::state::file_lock::{FileLock, Wait};
use crate::warnings::Warnings;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashSet;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// File name inside the state directory.
pub const LEDGER_FILE: &str = "panics.jsonl";
/// Version of the records we write.
pub const RECORD_SCHEMA_VERSION: u32 = 1;
/// A ledger up to this size is read whole and rewritten as it is (damaged
/// lines kept verbatim); a larger one is compacted: read line by line,
/// blank and unreadable lines dropped, the newest [`COMPACTED_RECORDS`]
/// records kept, so a new panic can always be recorded.
pub const MAX_LEDGER_BYTES: u64 = 8 * 1024 * 1024;
/// Records a compacted ledger keeps (a record is about half a kilobyte).
pub const COMPACTED_RECORDS: usize = 10_000;
/// A line longer than this is not a record of ours or the Python tool's.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// `~/.cache/metal-guard/panics.jsonl`.
pub fn ledger_path() -> PathBuf {
    crate::paths::state_dir().join(LEDGER_FILE)
}

/// One line of the ledger, as we write it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerRecord {
    /// When the panic happened, Unix seconds (what the Python tool reads).
    pub ts: f64,
    /// The same instant, UTC ISO-8601.
    pub time: String,
    pub signature: String,
    pub explanation: String,
    pub pid: Option<u32>,
    /// The report's path when it was ingested.
    pub source_file: String,
    pub source_line: Option<String>,
    pub process: Option<String>,
    pub os_build: Option<String>,
    pub iogpu_family: Option<String>,
    /// When metal-guard recorded it, UTC ISO-8601.
    pub ingested_at: String,
    pub schema_version: u32,
}

impl LedgerRecord {
    /// The record for an IOGPU report with a known time; `None` otherwise.
    pub fn from_report(report: &PanicReport, now: OffsetDateTime) -> Option<LedgerRecord> {
        let signature = report.signature?;
        let time = report.time?;
        Some(LedgerRecord {
            ts: time.unix_timestamp() as f64,
            time: time.format(&Rfc3339).ok()?,
            signature: signature.as_str().to_string(),
            explanation: super::explain(signature).plain_text(),
            pid: report.pid,
            source_file: report.file.display().to_string(),
            source_line: report.source_line.clone(),
            process: report.process.clone(),
            os_build: report.os_build.clone(),
            iogpu_family: report.iogpu_family.clone(),
            ingested_at: now.format(&Rfc3339).ok()?,
            schema_version: RECORD_SCHEMA_VERSION,
        })
    }
}

/// A panic the ledger remembers (from our records or the Python tool's).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedPanic {
    pub time: OffsetDateTime,
    pub signature: Option<String>,
    pub source_file: Option<String>,
}

/// What an ingest did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    /// Records appended.
    pub added: usize,
    /// IOGPU reports already in the ledger.
    pub already_recorded: usize,
    /// One-line warnings (damaged lines kept as they were, and so on).
    pub warnings: Warnings,
}

/// Appends the IOGPU panics among `reports` that the ledger at `path` does
/// not hold yet. Non-IOGPU reports and reports without a time are ignored.
/// Holds an exclusive lock (`panics.jsonl.lock`) around read-modify-write and
/// replaces the file atomically.
pub fn ingest(
    path: &Path,
    reports: &[PanicReport],
    now: OffsetDateTime,
) -> io::Result<IngestOutcome> {
    let mut outcome = IngestOutcome::default();
    let new_records: Vec<LedgerRecord> = reports
        .iter()
        .filter_map(|r| LedgerRecord::from_report(r, now))
        .collect();
    if new_records.is_empty() {
        return Ok(outcome);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    ensure_private_dir(dir)?;
    let _lock = FileLock::acquire(&lock_path(path), Wait::Block)?;

    let (existing, compacted) = read_existing(path, &mut outcome.warnings)?;
    let mut known: HashSet<(String, i64)> = HashSet::new();
    for line in &existing {
        if let Some(recorded) = parse_line(&String::from_utf8_lossy(line)) {
            if let Some(file) = &recorded.source_file {
                known.insert(identity(file, recorded.time.unix_timestamp()));
            }
        }
    }

    let mut out: Vec<u8> = Vec::new();
    for line in &existing {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    for record in new_records {
        if !known.insert(identity(&record.source_file, record.ts as i64)) {
            outcome.already_recorded += 1;
            continue;
        }
        let json = serde_json::to_string(&record).map_err(io::Error::other)?;
        out.extend_from_slice(json.as_bytes());
        out.push(b'\n');
        outcome.added += 1;
    }
    if outcome.added > 0 || compacted {
        write_atomic(path, &out)?;
    }
    Ok(outcome)
}

/// Every panic the ledger remembers, oldest first as written, with one
/// warning per line that could not be understood.
pub fn recorded_panics(path: &Path) -> (Vec<RecordedPanic>, Warnings) {
    let mut warnings = Warnings::new();
    let lines = match read_existing(path, &mut warnings) {
        Ok((lines, _)) => lines,
        Err(e) => {
            warnings.push(format!(
                "metal-guard: warning: {} cannot be read ({e}); panic history ignored",
                path.display()
            ));
            return (Vec::new(), warnings);
        }
    };
    let panics = lines
        .iter()
        .filter_map(|l| parse_line(&String::from_utf8_lossy(l)))
        .collect();
    (panics, warnings)
}

/// The non-empty lines of the ledger, verbatim; missing file = none. Lines
/// that are not JSON objects produce a warning (and are kept by callers).
/// A ledger over [`MAX_LEDGER_BYTES`] comes back compacted (`true`: the
/// caller rewrites it).
fn read_existing(path: &Path, warnings: &mut Warnings) -> io::Result<(Vec<Vec<u8>>, bool)> {
    let (file, len) = match crate::state::regular_file::open_regular(path) {
        Ok(Some(opened)) => opened,
        Ok(None) => return Ok((Vec::new(), false)),
        Err(e @ crate::state::regular_file::NotReadable::NotRegular(_)) => {
            return Err(io::Error::other(format!(
                "{} {e}; move it aside so the panic history can be written",
                path.display()
            )))
        }
        Err(e) => return Err(e.into()),
    };
    if len > MAX_LEDGER_BYTES {
        return compact(path, file, len, warnings).map(|lines| (lines, true));
    }
    let mut bytes = Vec::new();
    file.take(MAX_LEDGER_BYTES).read_to_end(&mut bytes)?;
    let lines: Vec<Vec<u8>> = bytes
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(<[u8]>::to_vec)
        .collect();
    let damaged = lines
        .iter()
        .filter(|l| parse_line(&String::from_utf8_lossy(l)).is_none())
        .count();
    if damaged > 0 {
        warnings.push(format!(
            "metal-guard: warning: {} has {damaged} line(s) that are not panic records; they are kept as they are and ignored",
            path.display()
        ));
    }
    Ok((lines, false))
}

/// Reads an oversized ledger line by line (memory bounded by one line and
/// the records kept): blank and unreadable lines are dropped, the newest
/// [`COMPACTED_RECORDS`] records kept in order.
fn compact(
    path: &Path,
    file: std::fs::File,
    len: u64,
    warnings: &mut Warnings,
) -> io::Result<Vec<Vec<u8>>> {
    use std::io::BufRead;
    let mut reader = io::BufReader::new(file);
    let mut kept: std::collections::VecDeque<Vec<u8>> = std::collections::VecDeque::new();
    let (mut dropped, mut trimmed) = (0usize, 0usize);
    let mut line = Vec::new();
    loop {
        line.clear();
        // One line, but never more than MAX_LINE_BYTES of it in memory.
        let n = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        if line.len() > MAX_LINE_BYTES && line.last() != Some(&b'\n') {
            // Skip the rest of an overlong line.
            let mut rest = Vec::new();
            loop {
                rest.clear();
                let m = (&mut reader)
                    .take(MAX_LINE_BYTES as u64)
                    .read_until(b'\n', &mut rest)?;
                if m == 0 || rest.last() == Some(&b'\n') {
                    break;
                }
            }
            dropped += 1;
            continue;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.iter().all(u8::is_ascii_whitespace) {
            dropped += 1;
            continue;
        }
        if parse_line(&String::from_utf8_lossy(text)).is_none() {
            dropped += 1;
            continue;
        }
        kept.push_back(text.to_vec());
        if kept.len() > COMPACTED_RECORDS {
            kept.pop_front();
            trimmed += 1;
        }
    }
    warnings.push(format!(
        "metal-guard: warning: {} was {len} bytes; compacted it to its {} newest panic records ({dropped} blank or unreadable line(s) dropped{})",
        path.display(),
        kept.len(),
        if trimmed > 0 {
            format!(", {trimmed} older record(s) dropped")
        } else {
            String::new()
        }
    ));
    Ok(kept.into_iter().collect())
}

/// A ledger line: needs `ts` (Unix seconds, or an ISO-8601 string).
fn parse_line(line: &str) -> Option<RecordedPanic> {
    let value: Value = serde_json::from_str(line).ok()?;
    let object = value.as_object()?;
    let time = match object.get("ts")? {
        Value::Number(n) => {
            let secs = n.as_f64()?;
            if !secs.is_finite() {
                return None;
            }
            OffsetDateTime::from_unix_timestamp(secs as i64).ok()?
        }
        Value::String(s) => OffsetDateTime::parse(s, &Rfc3339).ok()?,
        _ => return None,
    };
    Some(RecordedPanic {
        time,
        signature: object
            .get("signature")
            .and_then(Value::as_str)
            .map(str::to_string),
        source_file: object
            .get("source_file")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// Same report = same file name and same time to the second.
fn identity(source_file: &str, ts: i64) -> (String, i64) {
    let name = Path::new(source_file)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| source_file.to_string());
    (name, ts)
}

fn lock_path(ledger: &Path) -> PathBuf {
    let mut name = ledger.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    ledger.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::super::PanicSignature;
    use super::*;
    use std::fs;

    /// The names in `dir`, sorted.
    fn ledger_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn report(name: &str, secs: i64, sig: Option<PanicSignature>) -> PanicReport {
        PanicReport {
            file: PathBuf::from("/Library/Logs/DiagnosticReports").join(name),
            signature: sig,
            time: Some(OffsetDateTime::from_unix_timestamp(secs).unwrap()),
            os_build: Some("25E253".into()),
            kernel_version: None,
            machine: None,
            iogpu_family: Some("130.13".into()),
            process: Some("Python".into()),
            pid: Some(50218),
            source_line: Some("IOGPUMemory.cpp:550".into()),
            panic_line: None,
        }
    }

    #[test]
    fn ingest_is_deduplicated_and_keeps_foreign_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join(LEDGER_FILE);
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let a = report(
            "panic-full-a.ips",
            1_790_000_000,
            Some(PanicSignature::PrepareCountUnderflow),
        );
        let b = report(
            "panic-full-b.ips",
            1_790_000_100,
            Some(PanicSignature::PendingMemorySet),
        );
        let not_iogpu = report("panic-full-c.ips", 1_790_000_200, None);

        let first = ingest(&path, &[a.clone(), not_iogpu.clone()], now).unwrap();
        assert_eq!((first.added, first.already_recorded), (1, 0));

        // A damaged line and a Python-tool record survive the next ingest.
        let mut content = fs::read_to_string(&path).unwrap();
        content.push_str("not json at all\n{\"ts\": 1790000100.5, \"signature\": \"pending_memory_set\", \"explanation\": \"x\", \"pid\": null, \"source_file\": \"/elsewhere/Retired/panic-full-b.ips\"}\n");
        fs::write(&path, &content).unwrap();

        let mut moved = a.clone();
        moved.file = PathBuf::from("/Library/Logs/DiagnosticReports/Retired/panic-full-a.ips");
        let second = ingest(&path, &[moved, b, not_iogpu], now).unwrap();
        assert_eq!((second.added, second.already_recorded), (0, 2));
        assert_eq!(second.warnings.len(), 1, "{:?}", second.warnings);
        assert_eq!(fs::read_to_string(&path).unwrap(), content);

        let (panics, warnings) = recorded_panics(&path);
        assert_eq!(panics.len(), 2);
        assert_eq!(warnings.len(), 1);
        assert_eq!(
            panics[0].signature.as_deref(),
            Some("prepare_count_underflow")
        );
        assert_eq!(
            ledger_files(path.parent().unwrap()),
            vec!["panics.jsonl".to_string(), "panics.jsonl.lock".to_string()]
        );
    }

    #[test]
    fn an_oversized_ledger_is_compacted_and_a_new_panic_still_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LEDGER_FILE);
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        // Mostly blank lines, some garbage, an overlong line and one old
        // record of the Python tool's, well past the size a ledger is read whole.
        let mut f = std::io::BufWriter::new(fs::File::create(&path).unwrap());
        use std::io::Write;
        writeln!(f, r#"{{"ts": 1700000000, "signature": "prepare_count_underflow", "source_file": "old.panic"}}"#).unwrap();
        let blank = vec![b'\n'; 1 << 20];
        for _ in 0..(MAX_LEDGER_BYTES >> 20) + 2 {
            f.write_all(&blank).unwrap();
        }
        f.write_all(&vec![b'x'; MAX_LINE_BYTES * 3]).unwrap();
        writeln!(f).unwrap();
        writeln!(f, "not json").unwrap();
        drop(f);
        assert!(fs::metadata(&path).unwrap().len() > MAX_LEDGER_BYTES);

        let outcome = ingest(
            &path,
            &[report(
                "new.panic",
                1_799_999_000,
                Some(PanicSignature::PrepareCountUnderflow),
            )],
            now,
        )
        .unwrap();
        assert_eq!(outcome.added, 1);
        assert!(
            outcome.warnings.iter().any(|w| w.contains("compacted")),
            "{:?}",
            outcome.warnings
        );
        assert!(fs::metadata(&path).unwrap().len() < 4096);
        let (panics, _) = recorded_panics(&path);
        let files: Vec<_> = panics
            .iter()
            .filter_map(|p| p.source_file.clone())
            .collect();
        assert_eq!(files.len(), 2, "{files:?}");
        assert_eq!(files[0], "old.panic");
        assert!(files[1].ends_with("new.panic"));
    }

    #[test]
    fn records_carry_the_python_fields() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let r = report(
            "p.ips",
            1_790_000_000,
            Some(PanicSignature::PrepareCountUnderflow),
        );
        let value = serde_json::to_value(LedgerRecord::from_report(&r, now).unwrap()).unwrap();
        for key in ["ts", "signature", "explanation", "pid", "source_file"] {
            assert!(value.get(key).is_some(), "{key}");
        }
        assert_eq!(value["ts"], serde_json::json!(1_790_000_000.0));
        assert!(LedgerRecord::from_report(&report("q.ips", 1, None), now).is_none());
    }

    #[test]
    fn missing_ledger_is_empty_and_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (panics, warnings) = recorded_panics(&dir.path().join(LEDGER_FILE));
        assert!(panics.is_empty() && warnings.is_empty());
        let (_, warnings) = recorded_panics(dir.path());
        assert_eq!(warnings.len(), 1);
    }
}
