//! The one cadence rule, shared by the injected guard (loads and unloads it
//! sees in its own process) and `cadence.json` (loads any process marked):
//! a load must not start within an interval of the previous unload, of the
//! previous load of the same model, or (when asked for) of another model's
//! load. The worst shortfall decides; the mode says whether to stall, warn
//! or only record.
//!
//! The panic this guards against hit two loads about 40 s apart: completion
//! bookkeeping of the first model's buffers was still arriving when the
//! second model's allocations reused the memory. The fix is time: stall the
//! allocating thread (never the completion thread) until the interval has
//! passed, bounded.

/// Default minimum time between two loads of the same model, seconds (the
/// Python tool's 180 s: a panic once hit two loads about 40 s apart).
pub const DEFAULT_SAME_MODEL_INTERVAL_S: f64 = 180.0;
/// Default minimum time between an unload and the next load, seconds.
pub const DEFAULT_AFTER_UNLOAD_INTERVAL_S: f64 = 30.0;
/// Default bound on one stall, seconds.
pub const DEFAULT_MAX_STALL_S: f64 = 180.0;

/// `METALGUARD_CADENCE=off|warn|wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CadenceMode {
    /// Detect and log loads/unloads, never warn or stall.
    Off,
    /// Warn (stderr + breadcrumb) when a load comes too soon, do not stall.
    Warn,
    /// Stall the allocating thread until the interval has passed (bounded).
    Wait,
}

/// The intervals, the mode and the stall bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CadencePolicy {
    pub mode: CadenceMode,
    /// Minimum time between two loads of the same model (compat: 180 s).
    pub same_model_interval_ns: u64,
    /// Minimum time between an unload and the next load.
    pub after_unload_interval_ns: u64,
    /// Minimum time between loads of different models
    /// (`METALGUARD_CROSS_MODEL_INTERVAL`); `None`: not spaced.
    pub cross_model_interval_ns: Option<u64>,
    /// The longest one stall may last.
    pub max_stall_ns: u64,
}

impl Default for CadencePolicy {
    fn default() -> Self {
        let ns = |s: f64| std::time::Duration::from_secs_f64(s).as_nanos() as u64;
        CadencePolicy {
            mode: CadenceMode::Wait,
            same_model_interval_ns: ns(DEFAULT_SAME_MODEL_INTERVAL_S),
            after_unload_interval_ns: ns(DEFAULT_AFTER_UNLOAD_INTERVAL_S),
            cross_model_interval_ns: None,
            max_stall_ns: ns(DEFAULT_MAX_STALL_S),
        }
    }
}

/// Why a load came too soon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TooSoonReason {
    AfterUnload,
    AfterLoadOfSameModel,
    AfterLoadOfOtherModel,
}

impl TooSoonReason {
    /// The breadcrumb spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            TooSoonReason::AfterUnload => "after_unload",
            TooSoonReason::AfterLoadOfSameModel => "after_same_model_load",
            TooSoonReason::AfterLoadOfOtherModel => "after_other_model_load",
        }
    }

    /// The `rule` of `metal-guard cadence --json` (the Python tool's names).
    pub fn rule(&self) -> &'static str {
        match self {
            TooSoonReason::AfterUnload => "after_unload",
            TooSoonReason::AfterLoadOfSameModel => "same_model",
            TooSoonReason::AfterLoadOfOtherModel => "cross_model",
        }
    }

    /// What came before, in words ("the previous {}").
    pub fn previous_event(&self) -> &'static str {
        match self {
            TooSoonReason::AfterUnload => "unload",
            TooSoonReason::AfterLoadOfSameModel => "load of this model",
            TooSoonReason::AfterLoadOfOtherModel => "load of another model",
        }
    }
}

/// How long ago the events the rule looks at happened (`None`: never, as far
/// as the caller knows).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadHistory {
    pub since_unload_ns: Option<u64>,
    pub since_same_model_load_ns: Option<u64>,
    /// Since the most recent load of any other model.
    pub since_other_model_load_ns: Option<u64>,
}

/// The one cadence decision about a load starting now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CadenceDecision {
    Clear,
    /// The load is `short_by_ns` early for `reason`'s interval.
    TooSoon {
        reason: TooSoonReason,
        short_by_ns: u64,
    },
}

impl CadenceDecision {
    /// The stronger of two decisions (the larger shortfall; `self` on a tie).
    pub fn worst(self, other: CadenceDecision) -> CadenceDecision {
        match (self, other) {
            (_, CadenceDecision::Clear) => self,
            (CadenceDecision::Clear, _) => other,
            (
                CadenceDecision::TooSoon { short_by_ns: a, .. },
                CadenceDecision::TooSoon { short_by_ns: b, .. },
            ) => {
                if b > a {
                    other
                } else {
                    self
                }
            }
        }
    }
}

/// THE rule: the worst shortfall over the intervals the policy sets.
pub fn decide(policy: &CadencePolicy, history: &LoadHistory) -> CadenceDecision {
    let short = |since: Option<u64>, interval: Option<u64>| {
        since
            .zip(interval)
            .map(|(s, i)| i.saturating_sub(s))
            .filter(|s| *s > 0)
    };
    [
        (
            TooSoonReason::AfterUnload,
            short(
                history.since_unload_ns,
                Some(policy.after_unload_interval_ns),
            ),
        ),
        (
            TooSoonReason::AfterLoadOfSameModel,
            short(
                history.since_same_model_load_ns,
                Some(policy.same_model_interval_ns),
            ),
        ),
        (
            TooSoonReason::AfterLoadOfOtherModel,
            short(
                history.since_other_model_load_ns,
                policy.cross_model_interval_ns,
            ),
        ),
    ]
    .into_iter()
    .filter_map(|(reason, s)| {
        s.map(|short_by_ns| CadenceDecision::TooSoon {
            reason,
            short_by_ns,
        })
    })
    .fold(CadenceDecision::Clear, CadenceDecision::worst)
}

/// What the guard does about a decision, by the policy's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CadenceAction {
    Proceed,
    /// Too soon; log it, do not wait (`warn` mode, or `off` for the record).
    Warn {
        reason: TooSoonReason,
        short_by_ns: u64,
    },
    /// Too soon; the allocating thread waits `wait_ns` (already bounded).
    Stall {
        reason: TooSoonReason,
        wait_ns: u64,
        short_by_ns: u64,
    },
}

impl CadencePolicy {
    /// The interval `reason` refers to.
    pub fn interval_ns(&self, reason: TooSoonReason) -> u64 {
        match reason {
            TooSoonReason::AfterUnload => self.after_unload_interval_ns,
            TooSoonReason::AfterLoadOfSameModel => self.same_model_interval_ns,
            TooSoonReason::AfterLoadOfOtherModel => self.cross_model_interval_ns.unwrap_or(0),
        }
    }

    /// The action for `decision` in this policy's mode.
    pub fn action(&self, decision: CadenceDecision) -> CadenceAction {
        match (decision, self.mode) {
            (CadenceDecision::Clear, _) => CadenceAction::Proceed,
            (
                CadenceDecision::TooSoon {
                    reason,
                    short_by_ns,
                },
                CadenceMode::Wait,
            ) => CadenceAction::Stall {
                reason,
                wait_ns: short_by_ns.min(self.max_stall_ns),
                short_by_ns,
            },
            (
                CadenceDecision::TooSoon {
                    reason,
                    short_by_ns,
                },
                CadenceMode::Warn | CadenceMode::Off,
            ) => CadenceAction::Warn {
                reason,
                short_by_ns,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn policy(mode: CadenceMode) -> CadencePolicy {
        CadencePolicy {
            mode,
            same_model_interval_ns: 180_000 * MS,
            after_unload_interval_ns: 10_000 * MS,
            cross_model_interval_ns: None,
            max_stall_ns: 30_000 * MS,
        }
    }

    fn history(unload: Option<u64>, same: Option<u64>) -> LoadHistory {
        LoadHistory {
            since_unload_ns: unload,
            since_same_model_load_ns: same,
            since_other_model_load_ns: None,
        }
    }

    #[test]
    fn first_load_proceeds() {
        let p = policy(CadenceMode::Wait);
        assert_eq!(decide(&p, &history(None, None)), CadenceDecision::Clear);
        assert_eq!(
            decide(&p, &history(Some(10_000 * MS), Some(180_000 * MS))),
            CadenceDecision::Clear
        );
    }

    #[test]
    fn load_soon_after_unload_stalls_for_the_rest() {
        let p = policy(CadenceMode::Wait);
        assert_eq!(
            p.action(decide(&p, &history(Some(4_000 * MS), None))),
            CadenceAction::Stall {
                reason: TooSoonReason::AfterUnload,
                wait_ns: 6_000 * MS,
                short_by_ns: 6_000 * MS
            }
        );
    }

    #[test]
    fn stall_is_bounded_and_worst_reason_wins() {
        let p = policy(CadenceMode::Wait);
        assert_eq!(
            p.action(decide(&p, &history(Some(4_000 * MS), Some(40_000 * MS)))),
            CadenceAction::Stall {
                reason: TooSoonReason::AfterLoadOfSameModel,
                wait_ns: 30_000 * MS,
                short_by_ns: 140_000 * MS
            }
        );
    }

    #[test]
    fn warn_mode_never_stalls() {
        let p = policy(CadenceMode::Warn);
        assert_eq!(
            p.action(decide(&p, &history(Some(0), None))),
            CadenceAction::Warn {
                reason: TooSoonReason::AfterUnload,
                short_by_ns: 10_000 * MS
            }
        );
    }

    #[test]
    fn other_models_count_only_with_a_cross_model_interval() {
        let mut p = policy(CadenceMode::Wait);
        let h = LoadHistory {
            since_other_model_load_ns: Some(1_000 * MS),
            ..LoadHistory::default()
        };
        assert_eq!(decide(&p, &h), CadenceDecision::Clear);
        p.cross_model_interval_ns = Some(60_000 * MS);
        assert_eq!(
            decide(&p, &h),
            CadenceDecision::TooSoon {
                reason: TooSoonReason::AfterLoadOfOtherModel,
                short_by_ns: 59_000 * MS
            }
        );
    }

    #[test]
    fn the_worst_of_two_decisions_is_the_larger_shortfall() {
        let a = CadenceDecision::TooSoon {
            reason: TooSoonReason::AfterUnload,
            short_by_ns: 5,
        };
        let b = CadenceDecision::TooSoon {
            reason: TooSoonReason::AfterLoadOfSameModel,
            short_by_ns: 9,
        };
        assert_eq!(a.worst(b), b);
        assert_eq!(b.worst(a), b);
        assert_eq!(CadenceDecision::Clear.worst(a), a);
        assert_eq!(a.worst(CadenceDecision::Clear), a);
    }
}
