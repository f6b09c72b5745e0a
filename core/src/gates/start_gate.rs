//! The start gate: the one answer to "may an MLX process start now?", the
//! one override rule, and the one exit code of a blocked start.
//!
//! The launcher (`mlx-safe-python`, `metal-guard run`), the injected library
//! (when it was loaded without the launcher) and `metal-guard selftest` all
//! ask [`decide`]; the evidence behind the verdict is the cooldown rule
//! ([`super::cooldown::current_verdict`]), which `panic-gate` and `status`
//! report in full.
//!
//! The launcher hands its decision to the process it starts through
//! [`HANDOFF_VAR`], bound to that process's pid, so the injected library does
//! not scan the panic reports a second time nor print the same warnings
//! twice. A child the program forks later has another pid and asks again.

use super::cooldown::{CooldownVerdict, VerdictKind};
use super::panic_sources::GateError;
use crate::env_vars::{self, Lookup};
use std::path::PathBuf;

/// Exit status of a start the gate blocked (compatible with the Python
/// tool's `mlx-safe-python`; `panic-gate` itself says 2).
pub const EXIT_BLOCKED: u8 = crate::exit_status::START_BLOCKED;
/// Runs a blocked start anyway (with a warning).
pub const FORCE_VAR: &str = "MLX_SAFE_PYTHON_FORCE";
/// The launcher's decision, for the library injected into the program:
/// `<pid>:<outcome>`, see [`Handoff`].
pub const HANDOFF_VAR: &str = "METALGUARD_GATE_HANDOFF";

/// What the gate says about starting an MLX process now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateVerdict {
    /// Go ahead, printing `notices` (complete lines: a state file that was
    /// unreadable and reset, a setting that was ignored).
    Proceed { notices: Vec<String> },
    /// A cooldown or lockout is in force.
    Blocked {
        /// One line: why (for example "1 IOGPU panic in the last 24 h; cooldown until 14:05 UTC").
        reason: String,
        /// One line: how to clear it besides waiting, if there is a way.
        how_to_clear: Option<String>,
        /// Complete lines shown before the refusal.
        notices: Vec<String>,
    },
    /// The gate could not decide (an unreadable report folder, say).
    Failed { error: String },
}

impl GateVerdict {
    /// The start verdict from the cooldown rule's result.
    pub fn from_cooldown(result: Result<CooldownVerdict, GateError>) -> GateVerdict {
        match result {
            Ok(verdict) => match verdict.kind {
                VerdictKind::Proceed | VerdictKind::Disabled => GateVerdict::Proceed {
                    notices: verdict.warnings.into_lines(),
                },
                VerdictKind::Cooldown | VerdictKind::Lockout => GateVerdict::Blocked {
                    reason: verdict.reason,
                    how_to_clear: verdict.how_to_clear,
                    notices: verdict.warnings.into_lines(),
                },
            },
            Err(error) => GateVerdict::Failed {
                error: error.to_string(),
            },
        }
    }
}

/// A source of verdicts: [`CooldownGate`] in production, a closure in tests.
pub trait VerdictSource {
    fn verdict(&self) -> GateVerdict;
}

impl<F: Fn() -> GateVerdict> VerdictSource for F {
    fn verdict(&self) -> GateVerdict {
        self()
    }
}

/// The cooldown rule over the panic-report folders
/// (`METALGUARD_PANIC_REPORT_DIRS`, else the macOS defaults).
#[derive(Debug, Clone)]
pub struct CooldownGate {
    report_dirs: Vec<PathBuf>,
}

impl CooldownGate {
    /// The gate over the default report folders.
    pub fn from_environment() -> Self {
        CooldownGate {
            report_dirs: crate::forensics::report_dirs(&[]),
        }
    }
}

impl VerdictSource for CooldownGate {
    fn verdict(&self) -> GateVerdict {
        GateVerdict::from_cooldown(super::cooldown::current_verdict(&self.report_dirs))
    }
}

/// What the override rule made of a verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOutcome {
    /// Run.
    Proceed,
    /// Blocked, but `MLX_SAFE_PYTHON_FORCE=1` runs it anyway.
    Overridden {
        reason: String,
        how_to_clear: Option<String>,
    },
    /// The gate could not decide; run (a broken state file must never lock a
    /// user out).
    FailedOpen { error: String },
    /// Stop with [`EXIT_BLOCKED`].
    Blocked {
        reason: String,
        how_to_clear: Option<String>,
    },
}

/// A starter's decision: the outcome, the verdict's notices and the rule's
/// own line (the warning of an override or a failure, the refusal of a block),
/// every line complete and prefixed with the tool's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateDecision {
    pub outcome: StartOutcome,
    /// The verdict's lines (a state file reset, a setting ignored).
    pub notices: Vec<String>,
    /// The rule's line, shown after the notices.
    pub message: Option<String>,
}

impl GateDecision {
    /// Whether the start goes ahead.
    pub fn runs(&self) -> bool {
        !matches!(self.outcome, StartOutcome::Blocked { .. })
    }

    /// Every line to show, in order.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.notices
            .iter()
            .chain(self.message.as_ref())
            .map(String::as_str)
    }

    /// The outcome as [`HANDOFF_VAR`] spells it.
    pub fn handoff_outcome(&self) -> &'static str {
        match self.outcome {
            StartOutcome::Proceed => "proceed",
            StartOutcome::Overridden { .. } => "overridden",
            StartOutcome::FailedOpen { .. } => "failed_open",
            StartOutcome::Blocked { .. } => "blocked",
        }
    }
}

/// Whether the override variable is set (the one flag rule: `1`, `true`,
/// `yes`, `on`, any case).
pub fn force_requested(get: Lookup<'_>) -> bool {
    env_vars::flag(get, FORCE_VAR)
}

/// THE override rule: applies `force` to `verdict`, with every message
/// prefixed by `tool` (`mlx-safe-python`, `metal-guard run`, `metal-guard`).
pub fn decide(verdict: GateVerdict, force: bool, tool: &str) -> GateDecision {
    match verdict {
        GateVerdict::Proceed { notices } => GateDecision {
            outcome: StartOutcome::Proceed,
            notices,
            message: None,
        },
        GateVerdict::Failed { error } => GateDecision {
            message: Some(format!(
                "{tool}: warning: the cooldown gate could not decide ({error}); running anyway. `metal-guard panic-gate` shows the problem"
            )),
            outcome: StartOutcome::FailedOpen { error },
            notices: Vec::new(),
        },
        GateVerdict::Blocked {
            reason,
            how_to_clear,
            notices,
        } if force => GateDecision {
            message: Some(format!(
                "{tool}: warning: {FORCE_VAR}=1 overrides the cooldown ({reason}); another GPU panic may follow"
            )),
            outcome: StartOutcome::Overridden {
                reason,
                how_to_clear,
            },
            notices,
        },
        GateVerdict::Blocked {
            reason,
            how_to_clear,
            notices,
        } => {
            let clear = how_to_clear
                .as_deref()
                .map(|h| format!("; {h}"))
                .unwrap_or_default();
            GateDecision {
                message: Some(format!(
                    "{tool}: blocked: {reason}{clear}; or set {FORCE_VAR}=1 to run anyway"
                )),
                outcome: StartOutcome::Blocked {
                    reason,
                    how_to_clear,
                },
                notices,
            }
        }
    }
}

/// The launcher's decision as the started process reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handoff {
    /// The pid the decision was made for (the launcher execs, so the
    /// program keeps the launcher's pid).
    pub pid: u32,
    pub outcome: HandoffOutcome,
}

/// The outcomes that let a program start (a blocked start never execs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoffOutcome {
    Proceed,
    Overridden,
    FailedOpen,
}

impl Handoff {
    /// The variable's value for `decision` made for `pid`; `None` for a
    /// blocked start (nothing is started).
    pub fn value_for(pid: u32, decision: &GateDecision) -> Option<String> {
        decision
            .runs()
            .then(|| format!("{pid}:{}", decision.handoff_outcome()))
    }

    /// Reads a value; anything malformed is `None` (the library then asks
    /// the gate itself, the safe side).
    pub fn parse(value: &str) -> Option<Handoff> {
        let (pid, outcome) = value.trim().split_once(':')?;
        let outcome = match outcome {
            "proceed" => HandoffOutcome::Proceed,
            "overridden" => HandoffOutcome::Overridden,
            "failed_open" => HandoffOutcome::FailedOpen,
            _ => return None,
        };
        Some(Handoff {
            pid: pid.parse().ok()?,
            outcome,
        })
    }

    /// The launcher's decision for this very process, if it made one.
    pub fn for_process(get: Lookup<'_>, pid: u32) -> Option<Handoff> {
        get(HANDOFF_VAR)
            .as_deref()
            .and_then(Handoff::parse)
            .filter(|h| h.pid == pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked() -> GateVerdict {
        GateVerdict::Blocked {
            reason: "1 IOGPU panic in the last 24 h; cooldown until 14:05 UTC".into(),
            how_to_clear: Some("wait, or run `metal-guard ack` after a lockout".into()),
            notices: vec![],
        }
    }

    #[test]
    fn a_block_stops_with_the_reason_and_the_override() {
        let d = decide(blocked(), false, "mlx-safe-python");
        assert!(!d.runs());
        let lines: Vec<&str> = d.lines().collect();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].starts_with("mlx-safe-python: blocked: 1 IOGPU panic"));
        assert!(lines[0].contains("metal-guard ack"));
        assert!(lines[0].contains("MLX_SAFE_PYTHON_FORCE=1"));
        assert!(!lines[0].contains('\n'));
    }

    #[test]
    fn force_runs_with_a_warning() {
        let d = decide(blocked(), true, "mlx-safe-python");
        assert!(matches!(d.outcome, StartOutcome::Overridden { .. }));
        assert!(d.runs());
        let lines: Vec<&str> = d.lines().collect();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains("warning") && lines[0].contains("cooldown"));
    }

    #[test]
    fn proceed_and_failure_both_run() {
        let d = decide(
            GateVerdict::Proceed {
                notices: vec!["n".into()],
            },
            false,
            "x",
        );
        assert_eq!(d.outcome, StartOutcome::Proceed);
        assert_eq!(d.lines().collect::<Vec<_>>(), ["n"]);
        let d = decide(
            GateVerdict::Failed {
                error: "cannot read /x".into(),
            },
            false,
            "x",
        );
        assert!(d.runs());
        assert!(d.message.unwrap().contains("cannot read /x"));
    }

    #[test]
    fn the_force_flag_follows_the_one_flag_rule() {
        for (value, want) in [
            ("1", true),
            ("TRUE", true),
            ("Yes", true),
            ("0", false),
            ("", false),
        ] {
            let get = move |k: &str| (k == FORCE_VAR).then(|| value.to_string());
            assert_eq!(force_requested(&get), want, "{value:?}");
        }
    }

    #[test]
    fn the_handoff_is_bound_to_one_pid() {
        let d = decide(GateVerdict::Proceed { notices: vec![] }, false, "x");
        let value = Handoff::value_for(4242, &d).unwrap();
        assert_eq!(value, "4242:proceed");
        let get = |k: &str| (k == HANDOFF_VAR).then(|| value.clone());
        assert_eq!(
            Handoff::for_process(&get, 4242),
            Some(Handoff {
                pid: 4242,
                outcome: HandoffOutcome::Proceed
            })
        );
        assert_eq!(
            Handoff::for_process(&get, 4243),
            None,
            "a forked child asks again"
        );
        assert_eq!(Handoff::value_for(1, &decide(blocked(), false, "x")), None);
        for bad in ["", "4242", "x:proceed", "4242:blocked", "4242:PROCEED:1"] {
            assert_eq!(Handoff::parse(bad), None, "{bad:?}");
        }
    }
}
