//! The verdict the interposer's gate applies: `metal_guard::gates::cooldown`,
//! the one cooldown verdict shared by `panic-gate`, `status` and the launcher.

/// `Ok(None)`: proceed; `Ok(Some((reason, how_to_clear)))`: blocked.
pub fn current() -> Result<Option<(String, Option<String>)>, String> {
    Ok(None)
}
