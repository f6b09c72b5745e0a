//! The cooldown gate as the launcher sees it.
//!
//! The verdict itself (panic history, sentinel, ack, circuit breaker, the
//! environment switches) belongs to the core library; its caller passes it in
//! through [`LaunchGate`], so this crate stays free of that dependency.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

/// Exit status when the gate blocks (compatible with the Python tool's `mlx-safe-python`).
pub const EXIT_BLOCKED: u8 = 10;
/// The variable that runs a blocked command anyway.
pub const FORCE_VAR: &str = "MLX_SAFE_PYTHON_FORCE";
/// Modules that install or create environments and never touch the GPU: `-m` with these skips the gate.
pub const GATE_EXEMPT_MODULES: &[&str] =
    &["pip", "pip3", "build", "venv", "virtualenv", "ensurepip"];

/// What the gate says about starting an MLX process now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateVerdict {
    /// Go ahead, printing `notices` (complete lines, shown as given: a state file
    /// that was unreadable and reset, a setting that was ignored).
    Proceed { notices: Vec<String> },
    /// A cooldown or lockout is in force.
    Blocked {
        /// One line: why (for example "1 IOGPU panic in the last 24 h; cooldown until 14:05 UTC").
        reason: String,
        /// One line: how to clear it (for example "run `metal-guard ack`"), if there is a way besides waiting.
        how_to_clear: Option<String>,
        /// Complete lines shown before the refusal, as given.
        notices: Vec<String>,
    },
    /// The gate could not decide (unreadable report folder, say).
    Failed { error: String },
}

/// A source of verdicts: the core library's `current_verdict`, or a test double.
pub trait LaunchGate {
    fn verdict(&self) -> GateVerdict;
}

impl<F: Fn() -> GateVerdict> LaunchGate for F {
    fn verdict(&self) -> GateVerdict {
        self()
    }
}

/// What the launcher does after consulting the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateStep {
    /// Run; print these lines to stderr first (possibly none).
    Run { notices: Vec<String> },
    /// Stop with [`EXIT_BLOCKED`] after printing `lines` (the last one says why and how to override).
    Stop { lines: Vec<String> },
}

/// Apply the gate: `exempt` commands skip it, `force` runs through a block
/// with a warning, and a gate that fails lets the run go ahead with a warning
/// (a broken state file must never lock a user out).
pub fn apply_gate(
    gate: &dyn LaunchGate,
    exempt: Option<&str>,
    force: bool,
    tool: &str,
) -> GateStep {
    if exempt.is_some() {
        return GateStep::Run {
            notices: Vec::new(),
        };
    }
    match gate.verdict() {
        GateVerdict::Proceed { notices } => GateStep::Run { notices },
        GateVerdict::Failed { error } => GateStep::Run {
            notices: vec![format!(
                "{tool}: warning: the cooldown gate could not decide ({error}); running anyway. `metal-guard panic-gate` shows the problem"
            )],
        },
        GateVerdict::Blocked {
            reason,
            how_to_clear,
            mut notices,
        } => {
            if force {
                notices.push(format!(
                    "{tool}: warning: {FORCE_VAR}=1 overrides the cooldown ({reason}); another GPU panic may follow"
                ));
                GateStep::Run { notices }
            } else {
                let clear = how_to_clear
                    .map(|h| format!("; {h}"))
                    .unwrap_or_default();
                notices.push(format!(
                    "{tool}: blocked: {reason}{clear}; or set {FORCE_VAR}=1 to run anyway"
                ));
                GateStep::Stop { lines: notices }
            }
        }
    }
}

/// The module a Python command line runs with `-m`, if any, following
/// CPython's option rules (clustered flags like `-Bm pip`, `-mpip`, and the
/// options that take a value: `-c`, `-W`, `-X`, `--check-hash-based-pycs`).
pub fn python_module(args: &[OsString]) -> Option<&OsStr> {
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        let bytes = arg.as_bytes();
        if bytes == b"--" || bytes == b"-" || !bytes.starts_with(b"-") {
            return None;
        }
        if bytes.starts_with(b"--") {
            i += if bytes == b"--check-hash-based-pycs" {
                2
            } else {
                1
            };
            continue;
        }
        let mut skip_next = false;
        for (j, &flag) in bytes.iter().enumerate().skip(1) {
            let rest = &bytes[j + 1..];
            match flag {
                b'm' => {
                    return if rest.is_empty() {
                        args.get(i + 1).map(OsString::as_os_str)
                    } else {
                        Some(OsStr::from_bytes(rest))
                    };
                }
                b'c' => return None,
                b'W' | b'X' => {
                    skip_next = rest.is_empty();
                    break;
                }
                _ => {}
            }
        }
        i += if skip_next { 2 } else { 1 };
    }
    None
}

/// The exempt module a Python command line runs, if it is one.
pub fn gate_exempt_module(args: &[OsString]) -> Option<&'static str> {
    let module = python_module(args)?.to_str()?;
    GATE_EXEMPT_MODULES.iter().copied().find(|m| *m == module)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn module_is_found_past_flags_and_values() {
        let cases: &[(&[&str], Option<&str>)] = &[
            (&["-m", "pip", "install", "x"], Some("pip")),
            (&["-u", "-m", "venv", ".venv"], Some("venv")),
            (&["-Bm", "ensurepip"], Some("ensurepip")),
            (&["-mpip"], Some("pip")),
            (&["-W", "ignore", "-m", "build"], Some("build")),
            (&["-Wignore", "-X", "dev", "-m", "pip3"], Some("pip3")),
            (
                &["--check-hash-based-pycs", "always", "-m", "virtualenv"],
                Some("virtualenv"),
            ),
            (&["-c", "import pip", "-m", "pip"], None),
            (&["train.py", "-m", "pip"], None),
            (&["-", "-m", "pip"], None),
            (&["-m"], None),
            (&[], None),
        ];
        for (argv, want) in cases {
            assert_eq!(
                python_module(&args(argv)).and_then(OsStr::to_str),
                *want,
                "{argv:?}"
            );
        }
    }

    #[test]
    fn only_the_listed_modules_are_exempt() {
        assert_eq!(
            gate_exempt_module(&args(&["-m", "pip", "list"])),
            Some("pip")
        );
        assert_eq!(gate_exempt_module(&args(&["-m", "mlx_lm.generate"])), None);
        assert_eq!(gate_exempt_module(&args(&["-m", "pip.__main__"])), None);
        assert_eq!(gate_exempt_module(&args(&["pip.py"])), None);
    }

    fn blocked() -> GateVerdict {
        GateVerdict::Blocked {
            reason: "1 IOGPU panic in the last 24 h; cooldown until 14:05 UTC".into(),
            how_to_clear: Some("wait, or run `metal-guard ack` after a lockout".into()),
            notices: vec![],
        }
    }

    #[test]
    fn a_block_stops_with_the_reason_and_the_override() {
        match apply_gate(&blocked, None, false, "mlx-safe-python") {
            GateStep::Stop { lines } => {
                assert_eq!(lines.len(), 1);
                let message = &lines[0];
                assert!(message.starts_with("mlx-safe-python: blocked: 1 IOGPU panic"));
                assert!(message.contains("metal-guard ack"));
                assert!(message.contains("MLX_SAFE_PYTHON_FORCE=1"));
                assert!(!message.contains('\n'));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn force_runs_with_a_warning_and_exempt_commands_skip_the_gate() {
        match apply_gate(&blocked, None, true, "mlx-safe-python") {
            GateStep::Run { notices } => {
                assert_eq!(notices.len(), 1);
                assert!(notices[0].contains("warning") && notices[0].contains("cooldown"));
            }
            other => panic!("{other:?}"),
        }
        let never_called = || -> GateVerdict { panic!("the gate must not be consulted") };
        assert_eq!(
            apply_gate(&never_called, Some("pip"), false, "x"),
            GateStep::Run { notices: vec![] }
        );
    }

    #[test]
    fn proceed_and_failure_both_run() {
        let ok = || GateVerdict::Proceed { notices: vec![] };
        assert_eq!(
            apply_gate(&ok, None, false, "x"),
            GateStep::Run { notices: vec![] }
        );
        let failed = || GateVerdict::Failed {
            error: "cannot read /x".into(),
        };
        match apply_gate(&failed, None, false, "x") {
            GateStep::Run { notices } => assert!(notices[0].contains("cannot read /x")),
            other => panic!("{other:?}"),
        }
    }
}
