//! `metal-guard lock status|run LABEL -- CMD...|release [--force]`: one MLX
//! workload per machine, enforced by a kernel lock held for the holder's life.

use super::outcome::{CommandError, CommandResult, Outcome};
use super::shared_args::JsonOutput;
use metal_guard_core::exit_status;
use metal_guard_core::gates::mlx_lock::{self, AcquireError, LockPaths, ReleaseOutcome};
use metal_guard_core::timefmt;
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// Who holds the lock. Exit 0 free, 1 held.
    Status,
    /// Take the lock (or exit 2 at once when it is held), run CMD, release.
    /// Exits with CMD's status.
    Run {
        /// What holds the lock (shown to others).
        label: String,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Remove a stale holder record; with --force, stop a live holder
    /// (SIGTERM, wait, then SIGKILL) and take the lock back.
    Release {
        #[arg(long)]
        force: bool,
        /// Seconds to wait after SIGTERM before SIGKILL.
        #[arg(long, default_value_t = 10)]
        grace_sec: u64,
    },
}

pub fn run(args: Args, output: JsonOutput) -> CommandResult {
    let paths = LockPaths::from_env();
    match args.action {
        Action::Status => status(&paths, output.json),
        Action::Run { label, command } => run_locked(&paths, &label, &command),
        Action::Release { force, grace_sec } => release(&paths, force, grace_sec),
    }
}

fn status(paths: &LockPaths, json: bool) -> CommandResult {
    let s = mlx_lock::lock_status(paths);
    s.warnings.emit();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&s).expect("status serializes")
        );
    } else if s.held {
        match &s.record {
            Some(r) => println!(
                "MLX lock HELD by pid {} ({}){}{}",
                r.pid,
                if r.label.is_empty() {
                    "no label"
                } else {
                    &r.label
                },
                r.started_at
                    .and_then(timefmt::from_unix_f64)
                    .map(|t| format!(" since {}", timefmt::human(t)))
                    .unwrap_or_default(),
                r.host
                    .as_deref()
                    .map(|h| format!(" on {h}"))
                    .unwrap_or_default()
            ),
            None => println!(
                "MLX lock HELD (no holder record at {})",
                s.record_path.display()
            ),
        }
    } else if let (true, Some(r)) = (s.stale_record, &s.record) {
        println!(
            "MLX lock free (stale record of pid {} left by a holder that died; `metal-guard lock release` removes it)",
            r.pid
        );
    } else {
        println!("MLX lock free");
    }
    Ok(Outcome::finding_if(s.held))
}

/// The child `lock run` started, for the signal forwarder.
static CHILD_PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward_signal(sig: libc::c_int) {
    let pid = CHILD_PID.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe; pid is the child we started.
        unsafe { libc::kill(pid, sig) };
    }
}

extern "C" fn ignore_in_parent(_sig: libc::c_int) {}

fn install(sig: libc::c_int, handler: extern "C" fn(libc::c_int)) {
    // SAFETY: a zeroed sigaction is a valid starting value; the handler is
    // async-signal-safe (an atomic load and kill, or nothing).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, std::ptr::null_mut());
    }
}

fn run_locked(paths: &LockPaths, label: &str, command: &[String]) -> CommandResult {
    let mut guard = match mlx_lock::try_acquire(paths, label, command) {
        Ok(g) => g,
        Err(e @ AcquireError::Held(_)) => return Ok(Outcome::Blocked(Some(e.to_string()))),
        Err(e) => return Err(CommandError::failed(e.to_string())),
    };
    // The child inherits the locked descriptor: the lock lives as long as
    // either of us does.
    if let Err(e) = guard.inherit_across_exec() {
        eprintln!("metal-guard: warning: the child will not share the lock descriptor ({e})");
    }
    // SIGTERM/SIGHUP (e.g. from `lock release --force`) go to the child; a
    // terminal's SIGINT already reaches it through the process group. A
    // handler (not SIG_IGN) so the child starts with default dispositions.
    install(libc::SIGTERM, forward_signal);
    install(libc::SIGHUP, forward_signal);
    install(libc::SIGINT, ignore_in_parent);
    let mut child = match Command::new(&command[0]).args(&command[1..]).spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "metal-guard: cannot start {:?} ({e}); check the command and your PATH",
                command[0]
            );
            return Ok(Outcome::External(
                if e.kind() == std::io::ErrorKind::NotFound {
                    exit_status::NOT_FOUND
                } else {
                    exit_status::CANNOT_RUN
                },
            ));
        }
    };
    CHILD_PID.store(child.id() as i32, Ordering::SeqCst);
    if let Err(e) = guard.set_child(child.id()) {
        eprintln!("metal-guard: warning: could not record the child pid ({e})");
    }
    let status = loop {
        match child.wait() {
            Ok(s) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(CommandError::failed(format!(
                    "lost track of the child ({e})"
                )))
            }
        }
    };
    drop(guard);
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    Ok(Outcome::External(code.clamp(0, 255) as u8))
}

fn release(paths: &LockPaths, force: bool, grace_sec: u64) -> CommandResult {
    match mlx_lock::release(paths, force, Duration::from_secs(grace_sec)) {
        Ok(ReleaseOutcome::NotHeld) => {
            println!("MLX lock was not held.");
            Ok(Outcome::Proceed)
        }
        Ok(ReleaseOutcome::RemovedStale { pid }) => {
            println!("Removed the stale record of pid {pid} (it had died); the lock is free.");
            Ok(Outcome::Proceed)
        }
        Ok(ReleaseOutcome::Stopped { pid, killed }) => {
            println!(
                "Stopped pid {pid} ({}); the lock is free.",
                if killed {
                    "SIGKILL after SIGTERM was ignored"
                } else {
                    "SIGTERM"
                }
            );
            Ok(Outcome::Proceed)
        }
        Err(e @ AcquireError::Held(_)) => Ok(Outcome::Blocked(Some(e.to_string()))),
        Err(e) => Err(CommandError::failed(e.to_string())),
    }
}
