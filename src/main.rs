//! The `metal-guard` command line.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    // Like any Unix filter, stop quietly when the reader of our output goes
    // away (`metal-guard models --json | head`) instead of panicking on a
    // broken pipe; `metal-guard run` also hands the default to its command.
    // SAFETY: called first thing in `main`, before any thread exists, with a
    // valid signal number and the default disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    cli::run()
}
