//! The verdict the interposer's gate applies: `metal_guard_core::gates::cooldown`,
//! the one cooldown verdict shared by `panic-gate`, `status` and the launcher,
//! over the report folders `metal_guard_core::forensics::report_dirs` names
//! (`METALGUARD_PANIC_REPORT_DIRS`, else the macOS defaults).

use metal_guard_core::gates::cooldown::current_verdict;

/// `Ok(None)`: proceed; `Ok(Some((reason, how_to_clear)))`: blocked.
pub fn current() -> Result<Option<(String, Option<String>)>, String> {
    let dirs = metal_guard_core::forensics::report_dirs(&[]);
    let verdict = current_verdict(&dirs).map_err(|e| e.to_string())?;
    for w in &verdict.warnings {
        eprintln!("{w}");
    }
    if verdict.allows_run() {
        Ok(None)
    } else {
        Ok(Some((verdict.reason, verdict.how_to_clear)))
    }
}
