//! `macho-check`: verifies the cross-built macOS artifacts by reading them
//! (see `docs/macos.md`). Prints one `ok:` line per good file and one
//! `FAIL:` line per problem; exits 1 if any file fails, 2 if one cannot be read.

use clap::{Parser, Subcommand};
use metal_guard_macho::check::{self, DylibExpectations, Problem, Summary};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "macho-check",
    about = "Check macOS arm64 artifacts (Mach-O) built on another platform."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The injected library: arm64 dylib, @rpath install name, weak Metal,
    /// the Metal entry points interposed, no flat-namespace binds, an
    /// initializer, an ad-hoc signature that matches the file.
    Dylib {
        path: PathBuf,
        /// A symbol (Mach-O spelling, leading underscore) the dylib must
        /// export, in addition to `_metal_guard_inject_version`.
        #[arg(long = "expect-export", value_name = "SYMBOL")]
        expect_export: Vec<String>,
    },
    /// Executables: arm64, system dylibs only, no flat-namespace binds, an
    /// ad-hoc signature that matches the file.
    Executable {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut failed = false;
    let mut unreadable = false;
    let mut report = |path: &Path, result: Result<Summary, Vec<Problem>>| match result {
        Ok(summary) => println!("ok: {}: {}", path.display(), summary.description),
        Err(problems) => {
            failed = true;
            for p in problems {
                println!("FAIL: {}: {p}", path.display());
            }
        }
    };
    match cli.command {
        Command::Dylib {
            path,
            expect_export,
        } => {
            let mut expect = DylibExpectations::metal_guard_inject();
            expect.required_exports.extend(expect_export);
            match std::fs::read(&path) {
                Ok(data) => report(&path, check::check_dylib(&data, &expect)),
                Err(e) => {
                    eprintln!(
                        "error: cannot read {}: {e}; build it first with `cargo zigbuild --release --target aarch64-apple-darwin -p metal-guard-inject`",
                        path.display()
                    );
                    unreadable = true;
                }
            }
        }
        Command::Executable { paths } => {
            for path in paths {
                match std::fs::read(&path) {
                    Ok(data) => report(&path, check::check_executable(&data)),
                    Err(e) => {
                        eprintln!(
                            "error: cannot read {}: {e}; build it first with `cargo zigbuild --release --target aarch64-apple-darwin`",
                            path.display()
                        );
                        unreadable = true;
                    }
                }
            }
        }
    }
    if unreadable {
        ExitCode::from(2)
    } else if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
