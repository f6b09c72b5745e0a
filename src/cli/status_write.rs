//! `metal-guard status-write [--once | --interval N]`: keeps
//! `~/.cache/metal-guard/status.json` current (atomic, versioned); as a
//! daemon it stops cleanly on SIGTERM or SIGINT.

use super::exit;
use metal_guard_core::forensics;
use metal_guard_core::status;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Write one snapshot and exit (the default when --interval is not given).
    #[arg(long, conflicts_with = "interval")]
    pub once: bool,
    /// Write a snapshot every N seconds until SIGTERM or SIGINT.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub interval: Option<u64>,
    /// Where to write (default ~/.cache/metal-guard/status.json).
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// Folder of panic reports to read instead of the macOS defaults (repeatable).
    #[arg(long = "reports", value_name = "DIR")]
    pub reports: Vec<PathBuf>,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_sig: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn write_once(path: &std::path::Path, dirs: &[PathBuf]) -> bool {
    let snap = status::capture(dirs, 20);
    match status::write_snapshot(path, &snap) {
        Ok(w) => {
            if let Some(w) = w {
                eprintln!("{w}");
            }
            true
        }
        Err(e) => {
            eprintln!(
                "metal-guard: cannot write {} ({e}); check that the folder is writable",
                path.display()
            );
            false
        }
    }
}

pub fn run(args: Args) -> ExitCode {
    let path = args.out.unwrap_or_else(status::status_path);
    let dirs = forensics::report_dirs(&args.reports);
    let Some(interval) = args.interval else {
        return if write_once(&path, &dirs) {
            println!("wrote {}", path.display());
            ExitCode::from(exit::OK)
        } else {
            ExitCode::from(exit::GATE_FAILED)
        };
    };
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a zeroed sigaction is valid; the handler only stores to an atomic.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = request_stop as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    eprintln!(
        "metal-guard: writing {} every {interval} s (stop with SIGTERM or Ctrl-C)",
        path.display()
    );
    let mut failures = 0u32;
    while !STOP.load(Ordering::SeqCst) {
        if write_once(&path, &dirs) {
            failures = 0;
        } else {
            failures += 1;
        }
        let next = Instant::now() + Duration::from_secs(interval);
        while Instant::now() < next && !STOP.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    eprintln!("metal-guard: status-write stopped");
    ExitCode::from(if failures == 0 {
        exit::OK
    } else {
        exit::GATE_FAILED
    })
}
