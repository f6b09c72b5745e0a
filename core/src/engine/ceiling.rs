//! `SizeCeiling`: refuse one allocation above the single-allocation ceiling,
//! and any allocation that would push live bytes over the budget.
//!
//! A refusal makes the hook return nil, exactly what the driver returns when
//! it cannot allocate, so MLX raises its own catchable
//! `RuntimeError: [malloc] Unable to allocate N bytes`.

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// How a limit was configured, before the device's working set is known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LimitSpec {
    /// A fixed number of bytes (`..._GB` variables).
    Bytes(u64),
    /// A percentage of `recommendedMaxWorkingSetSize` (`..._PCT` variables).
    PercentOfWorkingSet(f64),
    /// No limit.
    Unlimited,
}

impl LimitSpec {
    /// From gigabytes (GiB, as the Python tool and `iogpu.wired_limit_mb` users think of them).
    pub fn gigabytes(gb: f64) -> Self {
        LimitSpec::Bytes((gb * GIB) as u64)
    }

    /// The limit in bytes for a device whose recommended working set is
    /// `working_set` bytes (0 when the device does not say: then percentages
    /// mean no limit rather than refusing everything).
    pub fn resolve(&self, working_set: u64) -> Option<u64> {
        match *self {
            LimitSpec::Bytes(b) => Some(b),
            LimitSpec::PercentOfWorkingSet(_) if working_set == 0 => None,
            LimitSpec::PercentOfWorkingSet(p) => Some((working_set as f64 * p / 100.0) as u64),
            LimitSpec::Unlimited => None,
        }
    }
}

/// Default single-allocation ceiling: half the recommended working set. A
/// model's weights arrive as many tensors far below this; one buffer this
/// large is the 173K-token-prefill pattern of mlx#3186.
pub const DEFAULT_SINGLE_PCT: f64 = 50.0;
/// Default live-bytes budget: the recommended working set itself.
pub const DEFAULT_BUDGET_PCT: f64 = 100.0;

/// The resolved ceiling for one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeCeiling {
    /// Largest single allocation allowed, in bytes.
    pub max_single: Option<u64>,
    /// Largest total of live bytes allowed, in bytes.
    pub budget: Option<u64>,
}

/// What the ceiling says about one allocation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeilingVerdict {
    Allow,
    /// The request alone is above the single-allocation ceiling.
    RefuseSingle {
        requested: u64,
        limit: u64,
    },
    /// The request would push live bytes over the budget.
    RefuseBudget {
        requested: u64,
        live: u64,
        budget: u64,
    },
}

impl CeilingVerdict {
    pub fn is_refusal(&self) -> bool {
        !matches!(self, CeilingVerdict::Allow)
    }
}

impl SizeCeiling {
    pub const UNLIMITED: SizeCeiling = SizeCeiling {
        max_single: None,
        budget: None,
    };

    pub fn resolve(single: LimitSpec, budget: LimitSpec, working_set: u64) -> Self {
        SizeCeiling {
            max_single: single.resolve(working_set),
            budget: budget.resolve(working_set),
        }
    }

    /// The verdict for a request of `requested` bytes while `live` bytes are held.
    #[inline]
    pub fn check(&self, requested: u64, live: u64) -> CeilingVerdict {
        if let Some(limit) = self.max_single {
            if requested > limit {
                return CeilingVerdict::RefuseSingle { requested, limit };
            }
        }
        if let Some(budget) = self.budget {
            if live.saturating_add(requested) > budget {
                return CeilingVerdict::RefuseBudget {
                    requested,
                    live,
                    budget,
                };
            }
        }
        CeilingVerdict::Allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WS: u64 = 16 << 30;

    #[test]
    fn percentages_follow_the_working_set() {
        let c = SizeCeiling::resolve(
            LimitSpec::PercentOfWorkingSet(DEFAULT_SINGLE_PCT),
            LimitSpec::PercentOfWorkingSet(DEFAULT_BUDGET_PCT),
            WS,
        );
        assert_eq!(c.max_single, Some(8 << 30));
        assert_eq!(c.budget, Some(WS));
    }

    #[test]
    fn unknown_working_set_means_no_percentage_limit() {
        let c = SizeCeiling::resolve(
            LimitSpec::PercentOfWorkingSet(50.0),
            LimitSpec::gigabytes(1.0),
            0,
        );
        assert_eq!(c.max_single, None);
        assert_eq!(c.budget, Some(1 << 30));
    }

    #[test]
    fn refuses_one_oversize_allocation() {
        let c = SizeCeiling {
            max_single: Some(1000),
            budget: None,
        };
        assert_eq!(c.check(1000, 0), CeilingVerdict::Allow);
        assert_eq!(
            c.check(1001, 0),
            CeilingVerdict::RefuseSingle {
                requested: 1001,
                limit: 1000
            }
        );
    }

    #[test]
    fn refuses_what_would_exceed_the_budget() {
        let c = SizeCeiling {
            max_single: None,
            budget: Some(1000),
        };
        assert_eq!(c.check(400, 600), CeilingVerdict::Allow);
        assert!(c.check(401, 600).is_refusal());
        assert!(c.check(u64::MAX, 600).is_refusal());
        assert_eq!(
            SizeCeiling::UNLIMITED.check(u64::MAX, u64::MAX),
            CeilingVerdict::Allow
        );
    }
}
