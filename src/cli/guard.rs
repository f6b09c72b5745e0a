//! `metal-guard guard install|uninstall|status`: the reversible shell guard.

use super::outcome::{CommandError, CommandResult, Outcome};
use super::shared_args::JsonOutput;
use metal_guard_core::shell_guard::{self, GuardError, GuardPaths, Shell};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// What to do (default: status, as the Python tool's bare `guard`).
    #[command(subcommand)]
    pub action: Option<Action>,
}

#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// Route interactive python/python3 through mlx-safe-python.
    Install {
        /// Shells to set up (default: your login shell from $SHELL, else zsh).
        #[arg(long = "shell", value_parser = shell_parser())]
        shells: Vec<Shell>,
    },
    /// Remove the guard (default: from every shell that has it).
    Uninstall {
        #[arg(long = "shell", value_parser = shell_parser())]
        shells: Vec<Shell>,
    },
    /// Show where the guard is installed.
    Status,
}

pub fn run(args: Args, output: JsonOutput) -> CommandResult {
    let paths = GuardPaths::from_env();
    match args.action.unwrap_or(Action::Status) {
        Action::Install { shells } => {
            let shells = if shells.is_empty() {
                vec![Shell::from_env().unwrap_or(Shell::Zsh)]
            } else {
                shells
            };
            let mut failures = Vec::new();
            for shell in shells {
                match shell_guard::install(&paths, shell) {
                    Ok(c) => match c.action {
                        "already_installed" => println!(
                            "{}: already installed in {}",
                            shell.name(),
                            c.file.display()
                        ),
                        _ => println!(
                            "{}: installed in {}{}{}",
                            shell.name(),
                            c.file.display(),
                            c.via_symlink
                                .as_ref()
                                .map(|l| format!(
                                    ", the file the symlink {} points to",
                                    l.display()
                                ))
                                .unwrap_or_default(),
                            c.backup
                                .map(|b| format!(" (backup: {})", b.display()))
                                .unwrap_or_default()
                        ),
                    },
                    Err(e) => failures.push(format!("{}: {e}", shell.name())),
                }
            }
            if !failures.is_empty() {
                return Err(CommandError::failed(failures.join("; ")));
            }
            println!("Open a new terminal (or `source` your rc) for it to take effect. Turn it off with METALGUARD_SHELL_GUARD_DISABLED=1; remove it with `metal-guard guard uninstall`.");
            Ok(Outcome::Proceed)
        }
        Action::Uninstall { shells } => {
            let shells = if shells.is_empty() {
                Shell::ALL.to_vec()
            } else {
                shells
            };
            let mut damaged = Vec::new();
            let mut failures = Vec::new();
            for shell in shells {
                match shell_guard::uninstall(&paths, shell) {
                    Ok(c) => match c.action {
                        "not_installed" => {}
                        "deleted_file" => {
                            println!("{}: removed {}", shell.name(), c.file.display())
                        }
                        _ => println!(
                            "{}: removed the block from {}{}{}",
                            shell.name(),
                            c.file.display(),
                            c.via_symlink
                                .as_ref()
                                .map(|l| format!(
                                    ", the file the symlink {} points to",
                                    l.display()
                                ))
                                .unwrap_or_default(),
                            c.backup
                                .map(|b| format!(" (backup: {})", b.display()))
                                .unwrap_or_default()
                        ),
                    },
                    Err(e @ GuardError::MissingEnd { .. }) => damaged.push(e.to_string()),
                    Err(e) => failures.push(format!("{}: {e}", shell.name())),
                }
            }
            if !failures.is_empty() {
                for d in &damaged {
                    eprintln!("metal-guard: {d}");
                }
                return Err(CommandError::failed(failures.join("; ")));
            }
            for d in &damaged {
                eprintln!("metal-guard: {d}");
            }
            Ok(Outcome::finding_if(!damaged.is_empty()))
        }
        Action::Status => {
            let s = shell_guard::status(&paths);
            if output.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&s).expect("status serializes")
                );
            } else {
                for g in &s.shells {
                    let state = if g.damaged {
                        "DAMAGED: start marker without end marker (see `metal-guard guard uninstall`)"
                    } else if g.installed {
                        "installed"
                    } else {
                        "not installed"
                    };
                    println!("{:<5} {state}  ({})", g.shell.name(), g.file.display());
                }
                if s.disabled_by_env {
                    println!("METALGUARD_SHELL_GUARD_DISABLED is set: the guard passes everything through.");
                }
                if !s.mlx_safe_python_on_path {
                    println!("mlx-safe-python is not on PATH: the guard passes everything through until it is.");
                }
            }
            Ok(Outcome::Proceed)
        }
    }
}

/// `--shell zsh|bash|fish`, with the names listed in `--help` and errors.
fn shell_parser() -> impl clap::builder::TypedValueParser<Value = Shell> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(Shell::ALL.map(Shell::name)).map(|name| {
        Shell::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .expect("clap admits only the listed names")
    })
}
