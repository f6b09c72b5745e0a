//! What a command ends with, and the one place where that becomes the last
//! lines on stderr and the exit status. Commands print their report to
//! stdout themselves; they return an [`Outcome`] when they did their job (the
//! status says what they found) or a [`CommandError`] naming the cause and,
//! where there is one, the next command to run.

use metal_guard_core::exit_status;
use std::process::ExitCode;

/// A command that did its job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done, or the gate says go (exit 0).
    Proceed,
    /// A finding the caller asked about: an orphan, a held lock, a damaged
    /// rc block, a known model (exit 1).
    Finding,
    /// A cooldown, lockout, tripped breaker, held lock or too-soon load is
    /// in force (exit 2); `Some` is one line for stderr saying which.
    Blocked(Option<String>),
    /// The status of a program the command ran, or of the launcher.
    External(u8),
}

impl Outcome {
    /// [`Outcome::Proceed`] or [`Outcome::Finding`].
    pub fn finding_if(found: bool) -> Outcome {
        if found {
            Outcome::Finding
        } else {
            Outcome::Proceed
        }
    }

    /// The exit status.
    pub fn status(&self) -> u8 {
        match self {
            Outcome::Proceed => exit_status::SUCCESS,
            Outcome::Finding => exit_status::FINDING,
            Outcome::Blocked(_) => exit_status::GATE_BLOCKED,
            Outcome::External(code) => *code,
        }
    }
}

/// Why a command could not do its job.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandError {
    usage: bool,
    cause: String,
    hint: Option<String>,
    /// A machine-readable body for stdout (`--json` callers still get JSON).
    json: Option<serde_json::Value>,
}

impl CommandError {
    /// The command could not produce its answer (exit 3).
    pub fn failed(cause: impl Into<String>) -> Self {
        CommandError {
            usage: false,
            cause: cause.into(),
            hint: None,
            json: None,
        }
    }

    /// Bad usage: a malformed value, a missing argument (exit 64).
    pub fn usage(cause: impl Into<String>) -> Self {
        CommandError {
            usage: true,
            ..CommandError::failed(cause)
        }
    }

    /// What to do next (shown after the cause, on the same line).
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Print `body` to stdout instead of the message to stderr.
    pub fn json_body(mut self, body: serde_json::Value) -> Self {
        self.json = Some(body);
        self
    }

    /// The exit status.
    pub fn status(&self) -> u8 {
        if self.usage {
            exit_status::USAGE
        } else {
            exit_status::COULD_NOT_ANSWER
        }
    }

    /// The one line for stderr.
    pub fn message(&self) -> String {
        match &self.hint {
            Some(h) => format!("metal-guard: {}; {h}", self.cause),
            None => format!("metal-guard: {}", self.cause),
        }
    }
}

/// A command's result.
pub type CommandResult = Result<Outcome, CommandError>;

/// THE rendering of a result: the last stderr line (or the JSON body) and
/// the exit status.
pub fn finish(result: CommandResult) -> ExitCode {
    match result {
        Ok(outcome) => {
            if let Outcome::Blocked(Some(why)) = &outcome {
                eprintln!("metal-guard: {why}");
            }
            ExitCode::from(outcome.status())
        }
        Err(error) => {
            match &error.json {
                Some(body) => println!(
                    "{}",
                    serde_json::to_string_pretty(body).expect("JSON serializes")
                ),
                None => eprintln!("{}", error.message()),
            }
            ExitCode::from(error.status())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_one_table() {
        assert_eq!(Outcome::Proceed.status(), 0);
        assert_eq!(Outcome::finding_if(true).status(), 1);
        assert_eq!(Outcome::Blocked(None).status(), 2);
        assert_eq!(Outcome::External(10).status(), 10);
        assert_eq!(CommandError::failed("x").status(), 3);
        assert_eq!(CommandError::usage("x").status(), 64);
    }

    #[test]
    fn an_error_is_one_line_with_its_hint() {
        let e = CommandError::failed("cannot read /x (permission denied)")
            .hint("run `metal-guard status` to see which file");
        assert_eq!(
            e.message(),
            "metal-guard: cannot read /x (permission denied); run `metal-guard status` to see which file"
        );
        assert!(!e.message().contains('\n'));
    }
}
