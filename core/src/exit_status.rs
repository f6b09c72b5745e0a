//! The exit statuses metal-guard's programs promise, in one table. Scripts
//! written for the Python tool 1.1.0 test these numbers, so each one is a
//! compatibility contract: never renumber.

/// The command did its job, or the gate says go.
pub const SUCCESS: u8 = 0;
/// A finding: an orphaned GPU section, a failed self-test check, a model
/// with a panic advisory, `--check` found the guard would not reach the program.
pub const FINDING: u8 = 1;
/// `panic-gate`, `breaker`, `cadence`, `status`: a cooldown, lockout,
/// tripped breaker or too-soon load is in force.
pub const GATE_BLOCKED: u8 = 2;
/// The command could not produce its answer (the gate could not read the
/// reports, the JSON could not be written, the self-test could not run).
pub const COULD_NOT_ANSWER: u8 = 3;
/// `mlx-safe-python` / `metal-guard run` / the injected library: the start
/// was blocked by a cooldown (the Python tool's `mlx-safe-python` code).
pub const START_BLOCKED: u8 = 10;
/// Bad usage: an unknown flag, a malformed value (sysexits `EX_USAGE`).
pub const USAGE: u8 = 64;
/// The launcher failed: the guard library is missing or unusable.
pub const LAUNCHER_FAILED: u8 = 125;
/// The program cannot run guarded (it would drop the guard) or cannot be executed.
pub const CANNOT_RUN: u8 = 126;
/// The program or interpreter was not found.
pub const NOT_FOUND: u8 = 127;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_is_distinct() {
        let all = [
            SUCCESS,
            FINDING,
            GATE_BLOCKED,
            COULD_NOT_ANSWER,
            START_BLOCKED,
            USAGE,
            LAUNCHER_FAILED,
            CANNOT_RUN,
            NOT_FOUND,
        ];
        let mut sorted = all.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), all.len());
    }
}
