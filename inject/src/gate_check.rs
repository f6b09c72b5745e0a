//! Lever (e): the cooldown gate, checked once when the process first gets a
//! device, before any GPU work. During a cooldown the process is told why
//! (stderr + breadcrumb) and, in defensive mode, exits with code 10, the
//! code `mlx-safe-python` uses, so a wrapper script sees the same outcome.
//!
//! The verdict itself is `metal_guard_core::gates::cooldown::current_verdict`,
//! the one verdict every part of metal-guard uses; this module only applies
//! it. The overrides users know from the Python tool apply:
//! `MLX_SAFE_PYTHON_FORCE=1` runs anyway (with a warning), and
//! `METALGUARD_PANIC_GATE_DISABLED=1` turns the gate off.

/// The exit code of a process blocked by a cooldown (compat: `mlx-safe-python`).
pub const EXIT_BLOCKED: i32 = 10;

/// What the gate said, reduced to what the interposer acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateOutcome {
    Proceed,
    Blocked {
        reason: String,
        how_to_clear: Option<String>,
    },
    /// Blocked, but an override lets the process run.
    Overridden {
        reason: String,
        by: &'static str,
    },
    /// The gate could not decide; the interposer fails open and says so.
    Failed(String),
}

/// A source of verdicts: `Ok(None)` proceed, `Ok(Some((reason, how_to_clear)))` blocked.
pub type VerdictSource = fn() -> Result<Option<(String, Option<String>)>, String>;

/// The flag rule every part of metal-guard uses (`1`, `true`, `yes`, `on`, any case).
fn truthy(v: Option<String>) -> bool {
    metal_guard_core::gates::env_config::is_truthy(v.as_deref())
}

/// Applies the overrides around `source`.
pub fn evaluate(env: &dyn Fn(&str) -> Option<String>, source: VerdictSource) -> GateOutcome {
    if truthy(env("METALGUARD_PANIC_GATE_DISABLED")) {
        return GateOutcome::Proceed;
    }
    match source() {
        Ok(None) => GateOutcome::Proceed,
        Ok(Some((reason, how_to_clear))) => {
            if truthy(env("MLX_SAFE_PYTHON_FORCE")) {
                GateOutcome::Overridden {
                    reason,
                    by: "MLX_SAFE_PYTHON_FORCE=1",
                }
            } else {
                GateOutcome::Blocked {
                    reason,
                    how_to_clear,
                }
            }
        }
        Err(e) => GateOutcome::Failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    fn blocked() -> Result<Option<(String, Option<String>)>, String> {
        Ok(Some((
            "1 IOGPU panic in 24 h".into(),
            Some("metal-guard ack".into()),
        )))
    }

    fn clear() -> Result<Option<(String, Option<String>)>, String> {
        Ok(None)
    }

    fn broken() -> Result<Option<(String, Option<String>)>, String> {
        Err("cannot list reports".into())
    }

    #[test]
    fn cooldown_blocks_unless_overridden() {
        assert!(matches!(
            evaluate(&env(&[]), blocked),
            GateOutcome::Blocked { .. }
        ));
        assert!(matches!(
            evaluate(&env(&[("MLX_SAFE_PYTHON_FORCE", "1")]), blocked),
            GateOutcome::Overridden { .. }
        ));
        assert_eq!(
            evaluate(&env(&[("METALGUARD_PANIC_GATE_DISABLED", "1")]), blocked),
            GateOutcome::Proceed
        );
        assert_eq!(evaluate(&env(&[]), clear), GateOutcome::Proceed);
        assert_eq!(
            evaluate(&env(&[]), broken),
            GateOutcome::Failed("cannot list reports".into())
        );
    }
}
