//! The breadcrumb log of the injected library. One writer thread owns the
//! file: every line reaches it through one bounded lock-free queue.
//!
//! - `post`: hooks hand a fixed-size [`Event`] (static strings and numbers,
//!   no heap allocation) to the writer; a full queue drops the event and
//!   counts it. Never blocks the caller.
//! - `post_durable`: before a risky transition (load start, release burst,
//!   refusal, the first hook fault) the hook posts its `SUBPROC_PRE` event
//!   with a sequence number and waits, at most [`DURABLE_WAIT`], until the
//!   writer has written it and synced it to the disk (`fsync`;
//!   `F_FULLFSYNC` on macOS, where `fsync` does not reach the platters) and
//!   published that number: the line survives the kernel panic it may
//!   precede. Fail open: on timeout the hook goes on and the line is still
//!   written (or drained at exit).
//! - `write_now` / `write_durable`: cold paths (the first device, the
//!   reaper, exit, the CUDA backend) post a line built with strings, the
//!   same way.
//!
//! Until the writer runs (before the first device, in unit tests) or on the
//! writer thread itself, a line is written by the calling thread. After
//! `fork`, the child forgets the parent's queue and starts its own writer at
//! its first line ([`BreadcrumbSink::reset_after_fork`]).
//!
//! The file is rotated to `<path>.1` before it grows past its bound. A write
//! that fails (full disk, unwritable directory) drops the line and counts
//! it; the count rides on the next line that gets through (`dropped=N`).

use crate::event_queue::EventQueue;
use crate::fork_safe_lock::{ForkSafeLock, ForkSafeLockGuard};
use metal_guard_core::breadcrumbs::BreadcrumbLine;
use std::cell::{Cell, UnsafeCell};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicU8, Ordering::*};
use std::thread::Thread;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// Lines in flight to the writer thread before new ones are dropped.
pub const CHANNEL_CAPACITY: usize = 4096;
/// Longest a caller waits for its durable line to be on the disk.
pub const DURABLE_WAIT: Duration = Duration::from_millis(250);
const MAX_EVENT_FIELDS: usize = 6;
const CLASS_NAME_BYTES: usize = 64;

/// A field's value in an [`Event`].
#[derive(Debug, Clone, Copy)]
pub enum FieldValue {
    Number(u64),
    Text(&'static str),
}

/// One breadcrumb as a hook posts it: static strings and numbers only.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    pub tag: &'static str,
    pub payload: &'static str,
    fields: [(&'static str, FieldValue); MAX_EVENT_FIELDS],
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
            fields: [("", FieldValue::Number(0)); MAX_EVENT_FIELDS],
            nfields: 0,
            class: None,
            at: std::time::SystemTime::now(),
        }
    }

    /// Adds a numeric field (the first six fields are kept).
    pub fn with(self, key: &'static str, value: u64) -> Self {
        self.with_value(key, FieldValue::Number(value))
    }

    /// Adds a text field (the first six fields are kept).
    pub fn with_text(self, key: &'static str, value: &'static str) -> Self {
        self.with_value(key, FieldValue::Text(value))
    }

    fn with_value(mut self, key: &'static str, value: FieldValue) -> Self {
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
            let v = match v {
                FieldValue::Number(n) => n.to_string(),
                FieldValue::Text(t) => t.to_string(),
            };
            fields.push((k.to_string(), v));
        }
        BreadcrumbLine {
            time: OffsetDateTime::from(self.at),
            tag: self.tag.to_string(),
            payload: self.payload.to_string(),
            fields,
        }
    }
}

/// What travels to the writer: a hook's fixed-size event, or a line a cold
/// path built; `ack` (non-zero) is the durable sequence number to publish
/// once the line is synced.
// The event travels inline on purpose: boxing it would be a heap allocation
// on the hook's side.
#[allow(clippy::large_enum_variant)]
enum Body {
    Event(Event),
    Line(Box<BreadcrumbLine>),
}

struct Message {
    body: Body,
    ack: u64,
}

impl Message {
    fn line(self) -> (BreadcrumbLine, bool) {
        let durable = self.ack != 0;
        match self.body {
            Body::Event(e) => (e.to_line(), durable),
            Body::Line(l) => (*l, durable),
        }
    }
}

struct OpenLog {
    file: File,
    size: u64,
}

/// The open log, owned by whoever holds `lock` (the writer thread; before
/// it runs or at exit, the calling thread). Not a lock any hook holds
/// across an original call; a child resets it after `fork`.
struct FileSlot {
    lock: ForkSafeLock,
    log: UnsafeCell<Option<OpenLog>>,
}

// SAFETY: `log` is only touched by the thread holding `lock`.
unsafe impl Sync for FileSlot {}

struct FileAccess<'a> {
    slot: &'a FileSlot,
    _held: ForkSafeLockGuard<'a>,
}

impl FileSlot {
    fn take(&self) -> FileAccess<'_> {
        FileAccess {
            slot: self,
            _held: self.lock.lock(),
        }
    }
}

impl FileAccess<'_> {
    fn log(&mut self) -> &mut Option<OpenLog> {
        // SAFETY: this access holds `lock` (see `FileSlot`), and `&mut self`
        // makes the borrow unique.
        unsafe { &mut *self.slot.log.get() }
    }
}

const WRITER_NONE: u8 = 0;
const WRITER_STARTING: u8 = 1;
const WRITER_RUNNING: u8 = 2;
/// Spawning failed: callers write their own lines from now on.
const WRITER_FAILED: u8 = 3;

thread_local! {
    static ON_WRITER_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// What the writer runs when idle (closes load/unload sections).
type Tick = dyn Fn() + Send + Sync;

pub struct BreadcrumbSink {
    path: PathBuf,
    max_bytes: u64,
    file: FileSlot,
    dropped: AtomicU64,
    queue: EventQueue<Message>,
    /// Durable sequence numbers: the last handed out, the last on disk.
    durable_next: AtomicU64,
    durable_done: AtomicU64,
    writer_state: AtomicU8,
    /// The running writer's handle (leaked, one per start), for `unpark`.
    writer: AtomicPtr<Thread>,
    /// Set by `start_writer`: how often the writer ticks, and the tick (a
    /// forked child restarts its writer with them).
    tick_every_ms: AtomicU64,
    tick: AtomicPtr<Box<Tick>>,
    /// This sink, as the `&'static` `start_writer` was called on (a writer
    /// thread borrows it for ever).
    this: AtomicPtr<BreadcrumbSink>,
    /// Set by [`BreadcrumbSink::begin_exit`].
    exiting: AtomicBool,
}

impl BreadcrumbSink {
    pub fn new(path: PathBuf, max_bytes: u64) -> Self {
        BreadcrumbSink {
            path,
            max_bytes: max_bytes.max(4096),
            file: FileSlot {
                lock: ForkSafeLock::new(),
                log: UnsafeCell::new(None),
            },
            dropped: AtomicU64::new(0),
            queue: EventQueue::new(CHANNEL_CAPACITY),
            durable_next: AtomicU64::new(0),
            durable_done: AtomicU64::new(0),
            writer_state: AtomicU8::new(WRITER_NONE),
            writer: AtomicPtr::new(std::ptr::null_mut()),
            tick_every_ms: AtomicU64::new(0),
            tick: AtomicPtr::new(std::ptr::null_mut()),
            this: AtomicPtr::new(std::ptr::null_mut()),
            exiting: AtomicBool::new(false),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lines or events lost so far (full queue, full disk).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Hands an event to the writer thread; never blocks, never allocates.
    #[inline]
    pub fn post(&self, event: Event) {
        if self
            .queue
            .push(Message {
                body: Body::Event(event),
                ack: 0,
            })
            .is_err()
        {
            self.dropped.fetch_add(1, Relaxed);
            return;
        }
        self.wake_writer();
    }

    /// Posts `event` as a durable line and waits (at most [`DURABLE_WAIT`])
    /// until the writer has synced it. No heap allocation on this side.
    pub fn post_durable(&self, event: Event) {
        self.send(Body::Event(event), true);
    }

    /// Builds a line now and has it written (cold paths); `durable` waits,
    /// bounded, until it is synced to the disk.
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
        self.send(Body::Line(Box::new(line)), durable);
    }

    /// A `SUBPROC_PRE`/`SUBPROC_POST`-style line, synced before returning
    /// (bounded wait).
    pub fn write_durable(&self, tag: &str, payload: &str, fields: &[(&str, String)]) {
        self.write_now(tag, payload, fields, true);
    }

    fn send(&self, body: Body, durable: bool) {
        if self.exiting.load(Acquire) || !self.writer_runs() || ON_WRITER_THREAD.with(Cell::get) {
            // Exiting, no writer (yet), or this is the writer: write it
            // here, after what is queued (taking the file waits for a batch
            // the writer is writing).
            let line = Message { body, ack: 0 }.line().0;
            let mut access = self.file.take();
            self.write_queued_with(&mut access);
            self.write_line(&mut access, &line, durable);
            return;
        }
        let ack = if durable {
            self.durable_next.fetch_add(1, AcqRel) + 1
        } else {
            0
        };
        let mut message = Message { body, ack };
        let deadline = Instant::now() + DURABLE_WAIT;
        loop {
            match self.queue.push(message) {
                Ok(()) => break,
                Err(m) if durable && Instant::now() < deadline => {
                    message = m;
                    self.wake_writer();
                    std::thread::sleep(Duration::from_micros(50));
                }
                Err(_) => {
                    self.dropped.fetch_add(1, Relaxed);
                    if durable {
                        self.durable_done.fetch_max(ack, AcqRel);
                    }
                    return;
                }
            }
        }
        self.wake_writer();
        if durable {
            self.wait_durable(ack, deadline);
        }
    }

    /// Waits until the writer has published `ack` (or `deadline` passes:
    /// fail open, the line is still written later).
    fn wait_durable(&self, ack: u64, deadline: Instant) {
        let mut spins = 0u32;
        while self.durable_done.load(Acquire) < ack {
            if Instant::now() >= deadline {
                return;
            }
            spins += 1;
            if spins < 16 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }

    fn writer_runs(&self) -> bool {
        match self.writer_state.load(Acquire) {
            WRITER_RUNNING => true,
            // A forked child whose writer has not been restarted yet.
            WRITER_NONE if !self.tick.load(Acquire).is_null() => {
                self.restart_writer();
                self.writer_state.load(Acquire) == WRITER_RUNNING
            }
            _ => false,
        }
    }

    #[inline]
    fn wake_writer(&self) {
        let t = self.writer.load(Acquire);
        if !t.is_null() {
            // SAFETY: a leaked `Box<Thread>` published by `spawn_writer`,
            // never freed.
            unsafe { &*t }.unpark();
        } else if self.writer_state.load(Relaxed) == WRITER_NONE {
            self.restart_writer();
        }
    }

    /// A forked child's first line: its writer, with the parent's tick.
    #[cold]
    fn restart_writer(&self) {
        let this = self.this.load(Acquire);
        if !this.is_null() {
            // SAFETY: `this` was stored from the `&'static self` that
            // `start_writer` was called on.
            unsafe { &*this }.spawn_writer();
        }
    }

    /// Starts the writer thread (once; again in a forked child). `tick`
    /// runs at least every `tick_every` with the thread otherwise idle
    /// (section ends are detected there).
    pub fn start_writer(
        &'static self,
        tick_every: Duration,
        tick: impl Fn() + Send + Sync + 'static,
    ) -> std::io::Result<()> {
        let boxed: Box<Box<Tick>> = Box::new(Box::new(tick));
        let raw = Box::into_raw(boxed);
        if self
            .tick
            .compare_exchange(std::ptr::null_mut(), raw, AcqRel, Acquire)
            .is_err()
        {
            // SAFETY: `raw` was never published: it is still ours.
            drop(unsafe { Box::from_raw(raw) });
            return Ok(());
        }
        self.tick_every_ms
            .store(tick_every.as_millis().max(1) as u64, Release);
        self.this.store(
            self as *const BreadcrumbSink as *mut BreadcrumbSink,
            Release,
        );
        self.spawn_writer();
        match self.writer_state.load(Acquire) {
            WRITER_RUNNING => Ok(()),
            _ => Err(std::io::Error::other("the breadcrumb writer did not start")),
        }
    }

    #[cold]
    fn spawn_writer(&'static self) {
        if self
            .writer_state
            .compare_exchange(WRITER_NONE, WRITER_STARTING, AcqRel, Relaxed)
            .is_err()
        {
            return;
        }
        let every = Duration::from_millis(self.tick_every_ms.load(Acquire).max(1));
        let spawned = std::thread::Builder::new()
            .name("metal-guard-breadcrumbs".into())
            .spawn(move || self.writer_loop(every));
        match spawned {
            Ok(h) => {
                let handle = Box::into_raw(Box::new(h.thread().clone()));
                self.writer.store(handle, Release);
                self.writer_state.store(WRITER_RUNNING, Release);
            }
            // No thread: lines are written by their callers.
            Err(_) => self.writer_state.store(WRITER_FAILED, Release),
        }
    }

    fn writer_loop(&'static self, every: Duration) {
        ON_WRITER_THREAD.with(|c| c.set(true));
        loop {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.write_queued();
                let tick = self.tick.load(Acquire);
                if !tick.is_null() {
                    // SAFETY: published once by `start_writer`, never freed.
                    (unsafe { &**tick })();
                }
            }));
            // A post after the drain above unparks us (the token is kept
            // if it comes before we park).
            std::thread::park_timeout(every);
        }
    }

    /// Writes everything queued, publishing each durable line's number.
    fn write_queued(&self) {
        self.write_queued_with(&mut self.file.take());
    }

    fn write_queued_with(&self, access: &mut FileAccess<'_>) {
        while let Some(m) = self.queue.pop() {
            let ack = m.ack;
            let (line, durable) = m.line();
            self.write_line(access, &line, durable);
            if ack != 0 {
                self.durable_done.fetch_max(ack, AcqRel);
            }
        }
    }

    /// Writes everything still queued, from the calling thread.
    pub fn flush_queued(&self) {
        self.write_queued();
    }

    /// The exit drain has begun: from now on every line is written by the
    /// thread that sends it, after the queue is drained (the process may end
    /// before the writer would wake). Waits for a batch the writer is
    /// writing, so no line it took is lost.
    pub fn begin_exit(&self) {
        self.exiting.store(true, Release);
        self.write_queued();
    }

    /// In a child process after `fork` (its `pthread_atfork` handler, one
    /// thread): the writer stayed in the parent and so did its queue; the
    /// file is the child's now. The next line starts a new writer.
    pub fn reset_after_fork(&self) {
        self.queue.forget_after_fork();
        self.writer.store(std::ptr::null_mut(), Release);
        self.writer_state.store(WRITER_NONE, Release);
        let done = self.durable_next.load(Acquire);
        self.durable_done.store(done, Release);
        self.file.lock.reset_after_fork();
    }

    fn write_line(&self, access: &mut FileAccess<'_>, line: &BreadcrumbLine, durable: bool) {
        let mut line = line.clone();
        line.fields
            .insert(0, ("pid".into(), std::process::id().to_string()));
        let dropped = self.dropped.load(Relaxed);
        if dropped > 0 {
            line.fields.push(("dropped".into(), dropped.to_string()));
        }
        let mut text = line.format();
        text.push('\n');
        let slot = access.log();
        match self.append(slot, text.as_bytes(), durable) {
            Ok(()) => {
                if dropped > 0 {
                    self.dropped.fetch_sub(dropped, Relaxed);
                }
            }
            Err(_) => {
                // Full disk or unwritable path: drop and count, try to
                // reopen on the next line.
                *slot = None;
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
    fn a_durable_event_is_written_by_the_writer_before_post_durable_returns() {
        let dir = tempfile::tempdir().unwrap();
        let s = sink(dir.path(), 1 << 20);
        let writer_started = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = writer_started.clone();
        s.start_writer(Duration::from_secs(60), move || {
            flag.store(true, Relaxed);
        })
        .unwrap();
        for i in 0..20 {
            s.post_durable(
                Event::new("SUBPROC_PRE", "model_load")
                    .with_text("model", "m")
                    .with("live", i),
            );
            let text = std::fs::read_to_string(s.path()).unwrap();
            let last =
                metal_guard_core::breadcrumbs::parse_line(text.lines().last().unwrap()).unwrap();
            assert_eq!(last.field("live"), Some(i.to_string().as_str()));
            assert_eq!(last.field("model"), Some("m"));
            assert_eq!(text.lines().count(), i as usize + 1);
        }
        assert!(writer_started.load(Relaxed), "the writer thread wrote them");
        // Cold-path lines (strings) go the same way.
        s.write_durable("SUBPROC_POST", "model_load", &[("live", "7".into())]);
        let text = std::fs::read_to_string(s.path()).unwrap();
        assert!(text.lines().last().unwrap().contains("live=7"));
    }

    #[test]
    fn event_lines_match_string_lines_byte_for_byte() {
        let at = std::time::SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let mut e = Event::new("SUBPROC_PRE", "allocation_refusal")
            .with("bytes", 42)
            .with_text("rule", "single_allocation");
        e.at = at;
        let built = BreadcrumbLine {
            time: OffsetDateTime::from(at),
            tag: "SUBPROC_PRE".into(),
            payload: "allocation_refusal".into(),
            fields: vec![
                ("bytes".into(), "42".into()),
                ("rule".into(), "single_allocation".into()),
            ],
        };
        assert_eq!(e.to_line().format(), built.format());
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
