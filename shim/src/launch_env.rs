//! A snapshot of the process context the launcher decides from: environment
//! variables, working directory, home and the launcher's own executable.
//!
//! Every decision function takes a `LaunchEnv` instead of reading the process
//! environment, so tests can build fake pyenv/asdf/mise trees and fake
//! environments without touching the real ones.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// The platform rules the launcher applies. Only macOS strips `DYLD_*`
/// variables for protected binaries; every other Unix honours `LD_PRELOAD`
/// except in secure-execution mode (setuid, setgid, file capabilities).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// dyld + `DYLD_INSERT_LIBRARIES`, SIP and the hardened runtime.
    MacOs,
    /// ld.so + `LD_PRELOAD` (Linux and other ELF systems).
    Elf,
}

impl Platform {
    /// The platform this binary was built for.
    pub const fn current() -> Platform {
        if cfg!(target_os = "macos") {
            Platform::MacOs
        } else {
            Platform::Elf
        }
    }
}

/// Environment, working directory and launcher location, captured once.
#[derive(Debug, Clone)]
pub struct LaunchEnv {
    vars: BTreeMap<OsString, OsString>,
    /// The working directory (version files are looked up from here).
    pub cwd: PathBuf,
    /// The launcher's own executable (the injected library is searched relative to it).
    pub launcher_exe: PathBuf,
    /// Which platform's injection rules apply.
    pub platform: Platform,
}

impl LaunchEnv {
    /// Capture the running process's environment.
    pub fn from_process() -> LaunchEnv {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        let launcher_exe = std::env::current_exe()
            .map(|exe| std::fs::canonicalize(&exe).unwrap_or(exe))
            .unwrap_or_default();
        LaunchEnv {
            vars: std::env::vars_os().collect(),
            cwd,
            launcher_exe,
            platform: Platform::current(),
        }
    }

    /// Build one by hand (tests, or a caller that already has the pieces).
    pub fn new<I, K, V>(vars: I, cwd: PathBuf, launcher_exe: PathBuf, platform: Platform) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        LaunchEnv {
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            cwd,
            launcher_exe,
            platform,
        }
    }

    /// A variable's value; an empty value counts as unset.
    pub fn var(&self, name: &str) -> Option<&OsStr> {
        self.vars
            .get(OsStr::new(name))
            .map(OsString::as_os_str)
            .filter(|v| !v.is_empty())
    }

    /// A variable as a path; empty counts as unset.
    pub fn var_path(&self, name: &str) -> Option<PathBuf> {
        self.var(name).map(PathBuf::from)
    }

    /// Whether a flag is on, by the one flag rule
    /// (`metal_guard_core::env_vars::parse_switch`).
    pub fn flag(&self, name: &str) -> bool {
        metal_guard_core::env_vars::is_truthy(self.var(name).and_then(OsStr::to_str))
    }

    /// `HOME`, if set.
    pub fn home(&self) -> Option<PathBuf> {
        self.var_path("HOME")
    }

    /// The directories of `PATH`, in order (empty entries mean the working directory, as in execvp).
    pub fn search_path(&self) -> Vec<PathBuf> {
        match self.var("PATH") {
            Some(path) => std::env::split_paths(path)
                .map(|dir| {
                    if dir.as_os_str().is_empty() {
                        self.cwd.clone()
                    } else {
                        self.absolute(&dir)
                    }
                })
                .collect(),
            None => vec![PathBuf::from("/usr/bin"), PathBuf::from("/bin")],
        }
    }

    /// `path` made absolute against the working directory.
    pub fn absolute(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.cwd.join(path)
        }
    }

    /// All variables, in name order.
    pub fn vars(&self) -> impl Iterator<Item = (&OsStr, &OsStr)> {
        self.vars
            .iter()
            .map(|(k, v)| (k.as_os_str(), v.as_os_str()))
    }
}

/// Find `name` on the search path: the first regular, executable file.
/// `skip` leaves out directories (a version manager's shims, when it says "system").
pub fn find_on_path(env: &LaunchEnv, name: &OsStr, skip: &[PathBuf]) -> Option<PathBuf> {
    env.search_path()
        .into_iter()
        .filter(|dir| !skip.iter().any(|s| same_dir(s, dir)))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable_file(candidate))
}

fn same_dir(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// A regular file (after symlinks) with an execute bit set.
pub fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(meta) => meta.is_file() && meta.permissions().mode() & 0o111 != 0,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with(vars: &[(&str, &str)], cwd: &Path) -> LaunchEnv {
        LaunchEnv::new(
            vars.iter().map(|(k, v)| (*k, *v)),
            cwd.to_path_buf(),
            PathBuf::from("/opt/mg/bin/mlx-safe-python"),
            Platform::Elf,
        )
    }

    #[test]
    fn empty_values_count_as_unset() {
        let env = env_with(&[("A", ""), ("B", "x")], Path::new("/"));
        assert_eq!(env.var("A"), None);
        assert_eq!(env.var("B"), Some(OsStr::new("x")));
    }

    #[test]
    fn flags_accept_common_spellings() {
        let env = env_with(
            &[("A", "1"), ("B", "TRUE"), ("C", "0"), ("D", "no")],
            Path::new("/"),
        );
        assert!(env.flag("A") && env.flag("B"));
        assert!(!env.flag("C") && !env.flag("D") && !env.flag("E"));
    }

    #[test]
    fn path_lookup_skips_non_executables_and_skipped_dirs() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        let c = tmp.path().join("c");
        for d in [&a, &b, &c] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(a.join("tool"), "plain").unwrap();
        for d in [&b, &c] {
            std::fs::write(d.join("tool"), "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(d.join("tool"), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
        let path = std::env::join_paths([&a, &b, &c]).unwrap();
        let env = env_with(&[("PATH", path.to_str().unwrap())], tmp.path());
        assert_eq!(
            find_on_path(&env, OsStr::new("tool"), &[]),
            Some(b.join("tool"))
        );
        assert_eq!(
            find_on_path(&env, OsStr::new("tool"), std::slice::from_ref(&b)),
            Some(c.join("tool"))
        );
        assert_eq!(find_on_path(&env, OsStr::new("missing"), &[]), None);
    }
}
