//! `metal-guard status-write [--once | --interval N]`: keeps
//! `~/.cache/metal-guard/status.json` current (atomic, versioned); as a
//! daemon it stops cleanly on SIGTERM or SIGINT.

use super::outcome::{CommandError, CommandResult, Outcome};
use super::shared_args::ReportFolders;
use metal_guard_core::status;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Write one snapshot and exit (wins over --interval, as in the Python tool).
    #[arg(long)]
    pub once: bool,
    /// Write a snapshot every N seconds until SIGTERM or SIGINT (default 30:
    /// without --once this is a daemon, as the Python tool's `status-write`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub interval: Option<u64>,
    /// Where to write (default ~/.cache/metal-guard/status.json).
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub reports: ReportFolders,
}

/// The daemon's interval when none is given (the Python tool's).
const DEFAULT_INTERVAL_SEC: u64 = 30;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_sig: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn write_once(path: &std::path::Path, dirs: &[PathBuf]) -> Result<(), CommandError> {
    let snap = status::capture(dirs, 20);
    match status::write_snapshot(path, &snap) {
        Ok(w) => {
            if let Some(w) = w {
                eprintln!("{w}");
            }
            Ok(())
        }
        // The error names the path and the cause.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(CommandError::failed(e.to_string()).hint("check that the folder is writable"))
        }
        Err(e) => Err(CommandError::failed(e.to_string())),
    }
}

pub fn run(args: Args, output: super::shared_args::JsonOutput) -> CommandResult {
    let path = args.out.unwrap_or_else(status::status_path);
    let dirs = args.reports.dirs();
    let say = |mode: &str| {
        if output.json {
            let body = serde_json::json!({"out": path.to_string_lossy(), "mode": mode});
            println!(
                "{}",
                serde_json::to_string_pretty(&body).expect("JSON serializes")
            );
        }
    };
    if args.once {
        write_once(&path, &dirs)?;
        say("once");
        if !output.json {
            println!("wrote {}", path.display());
        }
        return Ok(Outcome::Proceed);
    }
    let interval = args.interval.unwrap_or(DEFAULT_INTERVAL_SEC);
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a zeroed sigaction is valid; the handler only stores to an atomic.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = request_stop as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    // A path that cannot be written (a directory, a missing permission) is
    // said at once and ends the daemon; later failures are retried.
    write_once(&path, &dirs)?;
    say("daemon");
    eprintln!(
        "metal-guard: writing {} every {interval} s (stop with SIGTERM or Ctrl-C)",
        path.display()
    );
    // A daemon reports each failed write and keeps going; it ends with the
    // last write's result.
    let mut last = Ok(());
    let mut first = true;
    while !STOP.load(Ordering::SeqCst) {
        if !first {
            last = write_once(&path, &dirs);
            if let Err(e) = &last {
                eprintln!("{}", e.message());
            }
        }
        first = false;
        let next = Instant::now() + Duration::from_secs(interval);
        while Instant::now() < next && !STOP.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    eprintln!("metal-guard: status-write stopped");
    last.map(|()| Outcome::Proceed)
}
