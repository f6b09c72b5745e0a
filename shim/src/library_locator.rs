//! Finding the injected library.
//!
//! Search order (first existing file wins):
//! 1. `METALGUARD_DYLIB` (when set, it is the only place looked at);
//! 2. beside the launcher executable (`cargo build` output, a flat tarball);
//! 3. `../lib/` relative to it (Homebrew, `make install`, `/usr/local`);
//! 4. `../lib/metal_guard/` relative to it: the Python wheel layout, where the
//!    wheel installs the launcher into `<prefix>/bin/` and the library as data
//!    into `<prefix>/lib/metal_guard/`.
//!
//! The launcher's own path is resolved through symlinks first, so a link in
//! `~/.local/bin` to an installed launcher finds the installed library.

use crate::launch_env::{LaunchEnv, Platform};
use std::path::{Path, PathBuf};

/// The variable that names the library explicitly.
pub const LIBRARY_OVERRIDE_VAR: &str = "METALGUARD_DYLIB";

/// The library's file name on `platform`.
pub fn library_file_name(platform: Platform) -> &'static str {
    match platform {
        Platform::MacOs => "libmetal_guard_inject.dylib",
        Platform::Elf => "libmetal_guard_inject.so",
    }
}

/// Where the library was found, and why there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocatedLibrary {
    /// Absolute path of the library file.
    pub path: PathBuf,
    /// Which rule found it (for `--check`).
    pub found_by: &'static str,
}

/// The library was not found: every place looked at, for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibraryMissing {
    pub searched: Vec<PathBuf>,
    pub from_override: bool,
}

impl std::fmt::Display for LibraryMissing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let places: Vec<String> = self
            .searched
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        if self.from_override {
            write!(
                f,
                "the guard library named by {LIBRARY_OVERRIDE_VAR} does not exist: {}; fix or unset {LIBRARY_OVERRIDE_VAR}, or pass --no-inject to run with the gate only",
                places.join(", ")
            )
        } else {
            write!(
                f,
                "the guard library was not found (looked in {}); reinstall metal-guard, set {LIBRARY_OVERRIDE_VAR} to the library's path, or pass --no-inject to run with the gate only",
                places.join(", ")
            )
        }
    }
}

/// The candidate paths, in search order.
pub fn candidate_paths(env: &LaunchEnv) -> (Vec<PathBuf>, bool) {
    if let Some(explicit) = env.var_path(LIBRARY_OVERRIDE_VAR) {
        return (vec![env.absolute(&explicit)], true);
    }
    let name = library_file_name(env.platform);
    let exe_dir = env
        .launcher_exe
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let prefix = exe_dir.parent().map(Path::to_path_buf).unwrap_or_default();
    (
        vec![
            exe_dir.join(name),
            prefix.join("lib").join(name),
            prefix.join("lib").join("metal_guard").join(name),
        ],
        false,
    )
}

/// Find the library (see the module documentation for the order).
pub fn locate_library(env: &LaunchEnv) -> Result<LocatedLibrary, LibraryMissing> {
    let (candidates, from_override) = candidate_paths(env);
    const RULES: [&str; 3] = [
        "beside the launcher",
        "in ../lib next to the launcher",
        "in ../lib/metal_guard (Python wheel layout)",
    ];
    for (i, candidate) in candidates.iter().enumerate() {
        if candidate.is_file() {
            return Ok(LocatedLibrary {
                path: candidate.clone(),
                found_by: if from_override {
                    LIBRARY_OVERRIDE_VAR
                } else {
                    RULES[i]
                },
            });
        }
    }
    Err(LibraryMissing {
        searched: candidates,
        from_override,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(tmp: &Path, vars: Vec<(&str, String)>) -> LaunchEnv {
        LaunchEnv::new(
            vars,
            tmp.to_path_buf(),
            tmp.join("prefix/bin/mlx-safe-python"),
            Platform::Elf,
        )
    }

    #[test]
    fn search_order_is_beside_then_lib_then_wheel_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let prefix = tmp.path().join("prefix");
        let wheel = prefix.join("lib/metal_guard/libmetal_guard_inject.so");
        let lib = prefix.join("lib/libmetal_guard_inject.so");
        let beside = prefix.join("bin/libmetal_guard_inject.so");
        std::fs::create_dir_all(wheel.parent().unwrap()).unwrap();
        std::fs::create_dir_all(beside.parent().unwrap()).unwrap();
        let e = env(tmp.path(), vec![]);

        let missing = locate_library(&e).unwrap_err();
        assert_eq!(
            missing.searched,
            vec![beside.clone(), lib.clone(), wheel.clone()]
        );
        let text = missing.to_string();
        for p in [&beside, &lib, &wheel] {
            assert!(text.contains(&p.display().to_string()), "{text}");
        }
        assert!(text.contains("--no-inject"));

        std::fs::write(&wheel, "x").unwrap();
        assert_eq!(locate_library(&e).unwrap().path, wheel);
        std::fs::write(&lib, "x").unwrap();
        assert_eq!(locate_library(&e).unwrap().path, lib);
        std::fs::write(&beside, "x").unwrap();
        let found = locate_library(&e).unwrap();
        assert_eq!(
            (found.path, found.found_by),
            (beside, "beside the launcher")
        );
    }

    #[test]
    fn the_override_is_the_only_place_looked_at() {
        let tmp = tempfile::tempdir().unwrap();
        let beside = tmp.path().join("prefix/bin/libmetal_guard_inject.so");
        std::fs::create_dir_all(beside.parent().unwrap()).unwrap();
        std::fs::write(&beside, "x").unwrap();
        let e = env(
            tmp.path(),
            vec![(LIBRARY_OVERRIDE_VAR, "custom/lib.so".to_owned())],
        );
        let missing = locate_library(&e).unwrap_err();
        assert!(missing.from_override);
        assert_eq!(missing.searched, vec![tmp.path().join("custom/lib.so")]);
        assert!(missing.to_string().contains(LIBRARY_OVERRIDE_VAR));
        std::fs::create_dir_all(tmp.path().join("custom")).unwrap();
        std::fs::write(tmp.path().join("custom/lib.so"), "x").unwrap();
        assert_eq!(locate_library(&e).unwrap().found_by, LIBRARY_OVERRIDE_VAR);
    }
}
