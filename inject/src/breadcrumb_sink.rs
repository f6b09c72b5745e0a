//! The breadcrumb log of the injected library.
//!
//! Two ways in:
//! - `post`: hooks hand a fixed-size `Event` (no heap allocation) to one
//!   writer thread over a bounded channel; a full channel drops the event
//!   and counts it. Never blocks the caller.
//! - `write_durable`: before a risky transition (load start, unload,
//!   deferred removal batch, refusal, exit drain) the calling thread writes
//!   its `SUBPROC_PRE` line itself and syncs it to the disk (`fsync`;
//!   `F_FULLFSYNC` on macOS, where `fsync` does not reach the platters), so
//!   it survives the kernel panic it may precede.
//!
//! The file is rotated to `<path>.1` before it grows past its bound. A write
//! that fails (full disk, unwritable directory) drops the line and counts
//! it; the count rides on the next line that gets through (`dropped=N`).

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use metal_guard_core::breadcrumbs::BreadcrumbLine;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;
use time::OffsetDateTime;

/// Events in flight to the writer thread before new ones are dropped.
pub const CHANNEL_CAPACITY: usize = 4096;
const MAX_EVENT_FIELDS: usize = 4;
const CLASS_NAME_BYTES: usize = 64;

/// One breadcrumb as a hook posts it: static strings and numbers only.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    pub tag: &'static str,
    pub payload: &'static str,
    fields: [(&'static str, u64); MAX_EVENT_FIELDS],
    nfields: usize,
    class: Option<([u8; CLASS_NAME_BYTES], usize)>,
    /// When it happened (the line's time, not the time it was written).
    at: std::time::SystemTime,
}

impl Event {
    pub fn new(tag: &'static str, payload: &'static str) -> Self {
        Event {
            tag,
            payload,
            fields: [("", 0); MAX_EVENT_FIELDS],
            nfields: 0,
            class: None,
            at: std::time::SystemTime::now(),
        }
    }

    /// Adds a numeric field (the first four are kept).
    pub fn with(mut self, key: &'static str, value: u64) -> Self {
        if self.nfields < MAX_EVENT_FIELDS {
            self.fields[self.nfields] = (key, value);
            self.nfields += 1;
        }
        self
    }

    /// Adds the class name as `class=` (truncated to 64 bytes).
    pub fn with_class(mut self, name: &str) -> Self {
        let mut buf = [0u8; CLASS_NAME_BYTES];
        let n = name.len().min(CLASS_NAME_BYTES);
        buf[..n].copy_from_slice(&name.as_bytes()[..n]);
        self.class = Some((buf, n));
        self
    }

    fn to_line(self) -> BreadcrumbLine {
        let mut fields = Vec::with_capacity(self.nfields + 2);
        if let Some((buf, n)) = self.class {
            fields.push((
                "class".to_string(),
                String::from_utf8_lossy(&buf[..n]).into_owned(),
            ));
        }
        for (k, v) in &self.fields[..self.nfields] {
            fields.push((k.to_string(), v.to_string()));
        }
        BreadcrumbLine {
            time: OffsetDateTime::from(self.at),
            tag: self.tag.to_string(),
            payload: self.payload.to_string(),
            fields,
        }
    }
}

struct OpenLog {
    file: File,
    size: u64,
}

pub struct BreadcrumbSink {
    path: PathBuf,
    max_bytes: u64,
    file: Mutex<Option<OpenLog>>,
    dropped: AtomicU64,
    tx: Sender<Event>,
    rx: Mutex<Option<Receiver<Event>>>,
    /// A second receiver (the channel is multi-consumer) for the exit path,
    /// which drains what the writer thread has not reached yet.
    rx_exit: Receiver<Event>,
}

impl BreadcrumbSink {
    pub fn new(path: PathBuf, max_bytes: u64) -> Self {
        let (tx, rx) = bounded(CHANNEL_CAPACITY);
        BreadcrumbSink {
            path,
            max_bytes: max_bytes.max(4096),
            file: Mutex::new(None),
            dropped: AtomicU64::new(0),
            tx,
            rx_exit: rx.clone(),
            rx: Mutex::new(Some(rx)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lines or events lost so far (full channel, full disk).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Hands an event to the writer thread; never blocks, never allocates.
    #[inline]
    pub fn post(&self, event: Event) {
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Relaxed);
            }
        }
    }

    /// Starts the writer thread (once). `tick` runs at least every
    /// `tick_every` with the thread otherwise idle (section ends are
    /// detected there).
    pub fn start_writer(
        &'static self,
        tick_every: Duration,
        tick: impl Fn() + Send + 'static,
    ) -> std::io::Result<()> {
        let rx = self.rx.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(rx) = rx else { return Ok(()) };
        std::thread::Builder::new()
            .name("metal-guard-breadcrumbs".into())
            .spawn(move || loop {
                match rx.recv_timeout(tick_every) {
                    Ok(event) => self.write_line(&event.to_line(), false),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                }
                tick();
            })
            .map(|_| ())
    }

    /// Writes everything still queued, from the calling thread (exit).
    pub fn flush_queued(&self) {
        while let Ok(event) = self.rx_exit.try_recv() {
            self.write_line(&event.to_line(), false);
        }
    }

    /// Builds and writes a line now from the calling thread; `durable`
    /// syncs it to the disk before returning.
    pub fn write_now(&self, tag: &str, payload: &str, fields: &[(&str, String)], durable: bool) {
        let line = BreadcrumbLine {
            time: OffsetDateTime::now_utc(),
            tag: tag.to_string(),
            payload: payload.to_string(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        };
        self.write_line(&line, durable);
    }

    /// A `SUBPROC_PRE`/`SUBPROC_POST`-style line, written and synced now.
    pub fn write_durable(&self, tag: &str, payload: &str, fields: &[(&str, String)]) {
        self.write_now(tag, payload, fields, true);
    }

    fn write_line(&self, line: &BreadcrumbLine, durable: bool) {
        let mut line = line.clone();
        line.fields
            .insert(0, ("pid".into(), std::process::id().to_string()));
        let dropped = self.dropped.load(Relaxed);
        if dropped > 0 {
            line.fields.push(("dropped".into(), dropped.to_string()));
        }
        let mut text = line.format();
        text.push('\n');
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        match self.append(&mut guard, text.as_bytes(), durable) {
            Ok(()) => {
                if dropped > 0 {
                    self.dropped.fetch_sub(dropped, Relaxed);
                }
            }
            Err(_) => {
                // Full disk or unwritable path: drop and count, try to
                // reopen on the next line.
                *guard = None;
                self.dropped.fetch_add(1, Relaxed);
            }
        }
    }

    fn append(
        &self,
        slot: &mut Option<OpenLog>,
        bytes: &[u8],
        durable: bool,
    ) -> std::io::Result<()> {
        if let Some(open) = slot.as_ref() {
            if open.size + bytes.len() as u64 > self.max_bytes {
                *slot = None;
                let mut rotated = self.path.clone().into_os_string();
                rotated.push(".1");
                std::fs::rename(&self.path, PathBuf::from(rotated))?;
            }
        }
        if slot.is_none() {
            *slot = Some(self.open()?);
        }
        let open = slot.as_mut().expect("opened above");
        open.file.write_all(bytes)?;
        open.size += bytes.len() as u64;
        if durable {
            full_sync(&open.file)?;
        }
        Ok(())
    }

    fn open(&self) -> std::io::Result<OpenLog> {
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir {
            metal_guard_core::state::atomic_file::ensure_private_dir(dir)?;
        }
        let existed = self.path.exists();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)?;
        if !existed {
            // A new log (first run, or just rotated): make its directory
            // entry durable too, or a panic could leave synced lines in a
            // file that no directory names.
            if let Some(d) = dir.and_then(|d| File::open(d).ok()) {
                let _ = d.sync_all();
            }
        }
        let size = file.metadata()?.len();
        Ok(OpenLog { file, size })
    }
}

/// Makes written data durable: `F_FULLFSYNC` on macOS (plain `fsync` there
/// only reaches the drive's cache), `fsync` elsewhere.
fn full_sync(file: &File) -> std::io::Result<()> {
    metal_guard_core::state::durable_sync::durable_sync(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(dir: &Path, max: u64) -> &'static BreadcrumbSink {
        Box::leak(Box::new(BreadcrumbSink::new(dir.join("sub/bc.log"), max)))
    }

    #[test]
    fn durable_lines_parse_back_with_pid() {
        let dir = tempfile::tempdir().unwrap();
        let s = sink(dir.path(), 1 << 20);
        s.write_durable("SUBPROC_PRE", "model_load", &[("bytes", "42".into())]);
        let text = std::fs::read_to_string(s.path()).unwrap();
        let line = metal_guard_core::breadcrumbs::parse_line(text.lines().next().unwrap()).unwrap();
        assert_eq!(line.tag, "SUBPROC_PRE");
        assert_eq!(line.payload, "model_load");
        assert_eq!(
            line.field("pid"),
            Some(std::process::id().to_string().as_str())
        );
        assert_eq!(line.field("bytes"), Some("42"));
    }

    #[test]
    fn posted_events_reach_the_file_through_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let s = sink(dir.path(), 1 << 20);
        s.post(
            Event::new("GUARD_HOOKED", "device")
                .with_class("SimDevice")
                .with("selectors", 7),
        );
        s.start_writer(Duration::from_millis(5), || {}).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(s.path()).unwrap_or_default();
            if let Some(l) = text.lines().next() {
                let line = metal_guard_core::breadcrumbs::parse_line(l).unwrap();
                assert_eq!(line.field("class"), Some("SimDevice"));
                assert_eq!(line.field("selectors"), Some("7"));
                break;
            }
            assert!(std::time::Instant::now() < deadline, "writer never wrote");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn rotates_before_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let s = sink(dir.path(), 4096);
        for i in 0..200 {
            s.write_now("GUARD_NOTE", "x", &[("i", i.to_string())], false);
        }
        let size = std::fs::metadata(s.path()).unwrap().len();
        assert!(size <= 4096, "{size}");
        let rotated = dir.path().join("sub/bc.log.1");
        assert!(rotated.exists());
        let last = std::fs::read_to_string(s.path()).unwrap();
        assert!(last.contains("i=199"));
    }

    #[test]
    fn unwritable_path_drops_and_counts_then_reports() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"").unwrap();
        let s: &'static BreadcrumbSink = Box::leak(Box::new(BreadcrumbSink::new(
            blocker.join("bc.log"),
            1 << 20,
        )));
        s.write_durable("SUBPROC_PRE", "x", &[]);
        s.write_now("GUARD_NOTE", "y", &[], false);
        assert_eq!(s.dropped(), 2);
    }

    #[test]
    fn full_channel_drops_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let s = sink(dir.path(), 1 << 20);
        for _ in 0..CHANNEL_CAPACITY + 10 {
            s.post(Event::new("GUARD_NOTE", "x"));
        }
        assert_eq!(s.dropped(), 10);
        s.flush_queued();
        let text = std::fs::read_to_string(s.path()).unwrap();
        assert_eq!(text.lines().count(), CHANNEL_CAPACITY);
        assert!(text.lines().next().unwrap().contains("dropped=10"));
    }
}
