//! Thread-local state of the hooks: a re-entrancy depth per hook family, so
//! that nested forwarding (a validation layer calling the same selector on
//! the wrapped object, or the driver freeing a buffer inside a commit) acts
//! once, at the outermost call; and a mark on threads that run completion
//! handlers, which the guard must never stall.

use std::cell::Cell;

/// Hook families with their own depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookFamily {
    Allocation = 0,
    Creation = 1,
    Commit = 2,
    Residency = 3,
    Free = 4,
    Wait = 5,
}

const FAMILIES: usize = 6;

thread_local! {
    static DEPTH: [Cell<u32>; FAMILIES] = const { [const { Cell::new(0) }; FAMILIES] };
    static COMPLETION_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Held for the duration of one hooked call.
pub struct DepthGuard {
    family: HookFamily,
    outermost: bool,
}

impl DepthGuard {
    #[inline]
    pub fn enter(family: HookFamily) -> Self {
        let before = DEPTH
            .try_with(|d| {
                let c = &d[family as usize];
                let v = c.get();
                c.set(v.saturating_add(1));
                v
            })
            // Thread-local storage already torn down (thread exit): act as
            // nested, i.e. pass through without policy.
            .unwrap_or(1);
        DepthGuard {
            family,
            outermost: before == 0,
        }
    }

    /// Whether this is the outermost hooked call of its family on this thread.
    #[inline]
    pub fn outermost(&self) -> bool {
        self.outermost
    }
}

impl Drop for DepthGuard {
    #[inline]
    fn drop(&mut self) {
        let _ = DEPTH.try_with(|d| {
            let c = &d[self.family as usize];
            c.set(c.get().saturating_sub(1));
        });
    }
}

/// Marks the current thread as one that runs completion handlers.
pub fn mark_completion_thread() {
    let _ = COMPLETION_THREAD.try_with(|c| c.set(true));
}

/// Whether the current thread has run a completion handler (never stall it).
#[inline]
pub fn is_completion_thread() -> bool {
    COMPLETION_THREAD.try_with(|c| c.get()).unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_outermost_call_acts() {
        let a = DepthGuard::enter(HookFamily::Allocation);
        assert!(a.outermost());
        let b = DepthGuard::enter(HookFamily::Allocation);
        assert!(!b.outermost());
        let other = DepthGuard::enter(HookFamily::Commit);
        assert!(other.outermost(), "families are independent");
        drop(b);
        drop(a);
        assert!(DepthGuard::enter(HookFamily::Allocation).outermost());
    }

    #[test]
    fn completion_mark_is_per_thread() {
        std::thread::spawn(|| {
            assert!(!is_completion_thread());
            mark_completion_thread();
            assert!(is_completion_thread());
        })
        .join()
        .unwrap();
        assert!(!is_completion_thread());
    }
}
