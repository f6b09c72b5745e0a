//! Seeing through the shims of pyenv, asdf and mise.
//!
//! Their shims are shell scripts (pyenv, asdf) or a link to a multiplexing
//! binary (mise). On macOS a shell script in the exec chain means `/bin/bash`
//! or `/usr/bin/env`, both SIP-protected, and they strip `DYLD_INSERT_LIBRARIES`
//! before the real interpreter starts. So the launcher resolves the shim to the
//! real binary itself and execs that.
//!
//! Resolution reads the manager's own version selection natively (fast, no
//! subprocess) and falls back to asking the manager (`pyenv which`, `asdf
//! which`, `mise which`) when the native reading finds nothing, so plugins,
//! hooks and version formats we do not model still resolve correctly.

use crate::launch_env::{find_on_path, is_executable_file, LaunchEnv};
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Which version manager owns a shim, and where it keeps its installs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionManager {
    /// `$PYENV_ROOT` (installs in `versions/`).
    Pyenv { root: PathBuf },
    /// `$ASDF_DATA_DIR` (installs in `installs/python/`).
    Asdf { data_dir: PathBuf },
    /// `$MISE_DATA_DIR` (installs in `installs/python/`); `binary` is the mise executable the shim links to.
    Mise {
        data_dir: PathBuf,
        binary: Option<PathBuf>,
    },
}

impl VersionManager {
    /// The manager's command name.
    pub fn name(&self) -> &'static str {
        match self {
            VersionManager::Pyenv { .. } => "pyenv",
            VersionManager::Asdf { .. } => "asdf",
            VersionManager::Mise { .. } => "mise",
        }
    }
}

/// The real executable behind a shim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimResolution {
    /// The real program (may still be a symlink; the caller resolves links).
    pub target: PathBuf,
    /// A directory the manager would put first on `PATH` when it runs the program
    /// (`pyenv exec` and `asdf exec` do), so children that run `python` by name get the same one.
    pub path_prepend: Option<PathBuf>,
    /// One line for `--check`: how the version was chosen.
    pub explanation: String,
}

/// Decide whether `path` (a command found on `PATH`) is a version-manager shim.
pub fn detect(path: &Path, env: &LaunchEnv) -> Option<VersionManager> {
    let shim_dir = path.parent()?;
    let in_dir_named_shims = shim_dir.file_name() == Some(OsStr::new("shims"));

    // mise: shims are symlinks to the mise binary.
    if let Ok(target) = std::fs::read_link(path) {
        let target = if target.is_absolute() {
            target
        } else {
            shim_dir.join(target)
        };
        if target.file_name() == Some(OsStr::new("mise")) {
            return Some(VersionManager::Mise {
                data_dir: shim_dir.parent().unwrap_or(shim_dir).to_path_buf(),
                binary: Some(target),
            });
        }
    }
    if in_dir_named_shims {
        if let Some(mise_shims) = mise_data_dir(env).map(|d| d.join("shims")) {
            if mise_shims == shim_dir {
                return Some(VersionManager::Mise {
                    data_dir: shim_dir.parent().unwrap_or(shim_dir).to_path_buf(),
                    binary: None,
                });
            }
        }
    }

    let head = read_head(path)?;
    if !head.starts_with("#!") {
        return None;
    }
    if head.contains("pyenv") && (head.contains("PYENV_ROOT") || head.contains("pyenv\" exec")) {
        let root = quoted_assignment(&head, "export PYENV_ROOT=")
            .map(PathBuf::from)
            .or_else(|| env.var_path("PYENV_ROOT"))
            .unwrap_or_else(|| shim_dir.parent().unwrap_or(shim_dir).to_path_buf());
        return Some(VersionManager::Pyenv { root });
    }
    if head.contains("asdf exec") || head.contains("# asdf-plugin:") {
        return Some(VersionManager::Asdf {
            data_dir: shim_dir.parent().unwrap_or(shim_dir).to_path_buf(),
        });
    }
    None
}

/// Find the real program behind the shim at `shim`.
pub fn resolve(
    manager: &VersionManager,
    shim: &Path,
    env: &LaunchEnv,
) -> Result<ShimResolution, String> {
    let command = shim
        .file_name()
        .ok_or_else(|| format!("{} is not a file name", shim.display()))?;
    let shim_dir = shim.parent().unwrap_or(Path::new("/")).to_path_buf();
    let native = match manager {
        VersionManager::Pyenv { root } => pyenv_native(root, command, &shim_dir, env),
        VersionManager::Asdf { data_dir } => asdf_native(data_dir, command, &shim_dir, env),
        VersionManager::Mise { data_dir, .. } => mise_native(data_dir, command, env),
    };
    if let Some(found) = native {
        return Ok(found);
    }
    ask_manager(manager, command, env)
}

// ---------------------------------------------------------------- pyenv

fn pyenv_native(
    root: &Path,
    command: &OsStr,
    shim_dir: &Path,
    env: &LaunchEnv,
) -> Option<ShimResolution> {
    let (versions, origin) = match env.var("PYENV_VERSION").and_then(OsStr::to_str) {
        Some(v) => (
            v.split(':')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            "PYENV_VERSION".to_owned(),
        ),
        None => {
            let file = pyenv_version_file(root, env);
            let versions = file
                .as_deref()
                .map(read_pyenv_version_file)
                .unwrap_or_default();
            let origin = file
                .map(|f| f.display().to_string())
                .unwrap_or_else(|| "no version file".to_owned());
            (versions, origin)
        }
    };
    let versions: Vec<String> = if versions.is_empty() {
        vec!["system".to_owned()]
    } else {
        versions
    };
    for version in &versions {
        if version == "system" {
            if let Some(found) = find_on_path(env, command, &[shim_dir.to_path_buf()]) {
                return Some(ShimResolution {
                    target: found,
                    path_prepend: None,
                    explanation: format!("pyenv version `system` (from {origin})"),
                });
            }
            continue;
        }
        let Some(install) = installed_version_dir(&root.join("versions"), version) else {
            continue;
        };
        let bin = install.join("bin");
        let candidate = bin.join(command);
        if is_executable_file(&candidate) {
            return Some(ShimResolution {
                target: candidate,
                path_prepend: Some(bin),
                explanation: format!("pyenv version `{version}` (from {origin})"),
            });
        }
    }
    None
}

/// `.python-version` in `PYENV_DIR` or the working directory or any parent, else `$PYENV_ROOT/version`.
fn pyenv_version_file(root: &Path, env: &LaunchEnv) -> Option<PathBuf> {
    let mut starts = Vec::new();
    if let Some(dir) = env.var_path("PYENV_DIR") {
        starts.push(env.absolute(&dir));
    }
    starts.push(env.cwd.clone());
    for start in starts {
        if let Some(found) = find_upwards(&start, ".python-version") {
            return Some(found);
        }
    }
    let global = root.join("version");
    global.is_file().then_some(global)
}

/// The first word of each line, skipping blanks and `#` comments (pyenv's own reading).
fn read_pyenv_version_file(path: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|word| !word.starts_with('#'))
        .filter(|word| *word != ".." && !word.contains("/.."))
        .map(str::to_owned)
        .collect()
}

/// The install directory for `version`: exact, without a `python-` prefix, or
/// the newest installed version that `version` is a prefix of (`3.11` -> `3.11.7`).
fn installed_version_dir(versions_dir: &Path, version: &str) -> Option<PathBuf> {
    for name in [version, version.strip_prefix("python-").unwrap_or(version)] {
        let dir = versions_dir.join(name);
        if dir.is_dir() {
            return Some(dir);
        }
    }
    let prefix = version.strip_prefix("python-").unwrap_or(version);
    let entries = std::fs::read_dir(versions_dir).ok()?;
    entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| {
            name.strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('-'))
        })
        .filter(|name| !is_prerelease(name))
        .max_by(|a, b| compare_versions(a, b))
        .map(|name| versions_dir.join(name))
}

fn is_prerelease(name: &str) -> bool {
    if name.contains("dev") {
        return true;
    }
    let tail = name.rsplit('.').next().unwrap_or(name);
    ["a", "b", "rc"].iter().any(|tag| {
        tail.split_once(tag).is_some_and(|(before, after)| {
            !before.is_empty()
                && before.chars().all(|c| c.is_ascii_digit())
                && after.chars().all(|c| c.is_ascii_digit())
        })
    })
}

/// Compare dotted versions numerically where both parts are numbers.
pub(crate) fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let parts =
        |s: &str| -> Vec<String> { s.split(['.', '-']).map(str::to_owned).collect::<Vec<_>>() };
    let (pa, pb) = (parts(a), parts(b));
    for (x, y) in pa.iter().zip(pb.iter()) {
        let ord = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => x.cmp(y),
        };
        if ord != std::cmp::Ordering::Equal {
            return ord;
        }
    }
    pa.len().cmp(&pb.len())
}

// ---------------------------------------------------------------- asdf

fn asdf_native(
    data_dir: &Path,
    command: &OsStr,
    shim_dir: &Path,
    env: &LaunchEnv,
) -> Option<ShimResolution> {
    let (versions, origin) = if let Some(v) = env.var("ASDF_PYTHON_VERSION").and_then(OsStr::to_str)
    {
        (
            v.split_whitespace().map(str::to_owned).collect::<Vec<_>>(),
            "ASDF_PYTHON_VERSION".to_owned(),
        )
    } else {
        let name = env
            .var("ASDF_DEFAULT_TOOL_VERSIONS_FILENAME")
            .map(OsString::from)
            .unwrap_or_else(|| OsString::from(".tool-versions"));
        let mut found = None;
        let mut candidates: Vec<PathBuf> = Vec::new();
        let mut dir = Some(env.cwd.as_path());
        while let Some(d) = dir {
            candidates.push(d.join(&name));
            dir = d.parent();
        }
        if let Some(home) = env.home() {
            candidates.push(home.join(&name));
        }
        for file in candidates {
            let versions = tool_versions_entry(&file, "python");
            if !versions.is_empty() {
                found = Some((versions, file.display().to_string()));
                break;
            }
        }
        found?
    };
    let installs = data_dir.join("installs").join("python");
    for version in &versions {
        let bin = if version == "system" {
            if let Some(found) = find_on_path(env, command, &[shim_dir.to_path_buf()]) {
                return Some(ShimResolution {
                    target: found,
                    path_prepend: None,
                    explanation: format!("asdf python `system` (from {origin})"),
                });
            }
            continue;
        } else if let Some(dir) = version.strip_prefix("path:") {
            env.absolute(Path::new(dir)).join("bin")
        } else if let Some(git_ref) = version.strip_prefix("ref:") {
            installs.join(format!("ref-{git_ref}")).join("bin")
        } else {
            installs.join(version).join("bin")
        };
        let candidate = bin.join(command);
        if is_executable_file(&candidate) {
            return Some(ShimResolution {
                target: candidate,
                path_prepend: Some(bin),
                explanation: format!("asdf python `{version}` (from {origin})"),
            });
        }
    }
    None
}

/// The versions listed for `tool` in a `.tool-versions` file (`python 3.11.7 3.10.13 # note`).
fn tool_versions_entry(file: &Path, tool: &str) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return Vec::new();
    };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        if words.next() == Some(tool) {
            return words.map(str::to_owned).collect();
        }
    }
    Vec::new()
}

// ---------------------------------------------------------------- mise

fn mise_native(data_dir: &Path, command: &OsStr, env: &LaunchEnv) -> Option<ShimResolution> {
    // mise's configuration (mise.toml, .tool-versions, idiomatic files, fuzzy
    // versions, environments) is rich; only the explicit variable is read here,
    // everything else is answered by `mise which`.
    let version = env.var("MISE_PYTHON_VERSION")?.to_str()?.to_owned();
    let bin = data_dir
        .join("installs")
        .join("python")
        .join(&version)
        .join("bin");
    let candidate = bin.join(command);
    is_executable_file(&candidate).then(|| ShimResolution {
        target: candidate,
        path_prepend: Some(bin),
        explanation: format!("mise python `{version}` (from MISE_PYTHON_VERSION)"),
    })
}

fn mise_data_dir(env: &LaunchEnv) -> Option<PathBuf> {
    if let Some(dir) = env.var_path("MISE_DATA_DIR") {
        return Some(dir);
    }
    if let Some(xdg) = env.var_path("XDG_DATA_HOME") {
        return Some(xdg.join("mise"));
    }
    env.home()
        .map(|h| h.join(".local").join("share").join("mise"))
}

// ---------------------------------------------------------------- fallback

/// Ask the manager itself (`<manager> which <command>`).
fn ask_manager(
    manager: &VersionManager,
    command: &OsStr,
    env: &LaunchEnv,
) -> Result<ShimResolution, String> {
    let program: Option<PathBuf> = match manager {
        VersionManager::Pyenv { root } => [root.join("libexec/pyenv"), root.join("bin/pyenv")]
            .into_iter()
            .find(|p| is_executable_file(p))
            .or_else(|| find_on_path(env, OsStr::new("pyenv"), &[])),
        VersionManager::Asdf { .. } => env
            .var_path("ASDF_DIR")
            .map(|d| d.join("bin/asdf"))
            .filter(|p| is_executable_file(p))
            .or_else(|| find_on_path(env, OsStr::new("asdf"), &[])),
        VersionManager::Mise { binary, .. } => binary
            .clone()
            .filter(|p| is_executable_file(p))
            .or_else(|| find_on_path(env, OsStr::new("mise"), &[])),
    };
    let name = manager.name();
    let program = program.ok_or_else(|| {
        format!(
            "{} is a {name} shim but `{name}` itself was not found to resolve it",
            command.to_string_lossy()
        )
    })?;
    let mut cmd = Command::new(&program);
    cmd.arg("which")
        .arg(command)
        .env_clear()
        .envs(env.vars())
        .current_dir(&env.cwd)
        .stdin(Stdio::null());
    if let VersionManager::Pyenv { root } = manager {
        cmd.env("PYENV_ROOT", root);
    }
    let output = cmd
        .output()
        .map_err(|e| format!("could not run `{name} which`: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let answer = stdout.lines().rev().find(|l| !l.trim().is_empty());
    match answer.map(|l| PathBuf::from(l.trim())) {
        Some(target) if output.status.success() && is_executable_file(&target) => {
            Ok(ShimResolution {
                path_prepend: target.parent().map(Path::to_path_buf),
                explanation: format!("`{name} which {}`", command.to_string_lossy()),
                target,
            })
        }
        _ => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let why = stderr
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no answer")
                .trim()
                .to_owned();
            Err(format!(
                "{name} could not resolve `{}`: {why}",
                command.to_string_lossy()
            ))
        }
    }
}

// ---------------------------------------------------------------- helpers

fn find_upwards(start: &Path, name: &str) -> Option<PathBuf> {
    let mut dir = Some(start);
    while let Some(d) = dir {
        let candidate = d.join(name);
        if candidate.is_file() {
            return Some(candidate);
        }
        dir = d.parent();
    }
    None
}

fn read_head(path: &Path) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut buf = Vec::with_capacity(4096);
    file.take(4096).read_to_end(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// The value of `prefix"VALUE"` on a line of `text` (pyenv writes `export PYENV_ROOT="/root/.pyenv"`).
fn quoted_assignment(text: &str, prefix: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let rest = line.trim().strip_prefix(prefix)?;
        let words = shlex::split(rest)?;
        words.into_iter().next().filter(|w| !w.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launch_env::Platform;
    use std::os::unix::fs::PermissionsExt;

    fn write_exec(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn env(vars: Vec<(&str, String)>, cwd: &Path) -> LaunchEnv {
        LaunchEnv::new(
            vars,
            cwd.to_path_buf(),
            PathBuf::from("/x/mlx-safe-python"),
            Platform::Elf,
        )
    }

    fn pyenv_shim(root: &Path) -> PathBuf {
        let shim = root.join("shims/python3");
        write_exec(
            &shim,
            &format!(
                "#!/usr/bin/env bash\nset -e\nprogram=\"${{0##*/}}\"\n\nexport PYENV_ROOT=\"{}\"\nexec \"{}/libexec/pyenv\" exec \"$program\" \"$@\"\n",
                root.display(),
                root.display()
            ),
        );
        shim
    }

    /// A pyenv root with 3.11.7, 3.11.2, 3.12.1 and 3.13.0rc1 installed.
    fn pyenv_tree(tmp: &Path) -> (PathBuf, PathBuf) {
        let root = tmp.join("pyenv");
        for v in ["3.11.7", "3.11.2", "3.12.1", "3.13.0rc1"] {
            write_exec(&root.join("versions").join(v).join("bin/python3"), "bin");
        }
        let shim = pyenv_shim(&root);
        (root, shim)
    }

    #[test]
    fn pyenv_shim_is_detected_from_its_content() {
        let tmp = tempfile::tempdir().unwrap();
        let (root, shim) = pyenv_tree(tmp.path());
        let e = env(vec![], tmp.path());
        assert_eq!(detect(&shim, &e), Some(VersionManager::Pyenv { root }));
        write_exec(&tmp.path().join("bin/python3"), "#!/bin/sh\nexec true\n");
        assert_eq!(detect(&tmp.path().join("bin/python3"), &e), None);
    }

    #[test]
    fn pyenv_version_variable_wins_and_resolves_prefixes() {
        let tmp = tempfile::tempdir().unwrap();
        let (root, shim) = pyenv_tree(tmp.path());
        std::fs::write(root.join("version"), "3.12.1\n").unwrap();
        let e = env(vec![("PYENV_VERSION", "3.11".into())], tmp.path());
        let vm = detect(&shim, &e).unwrap();
        let r = resolve(&vm, &shim, &e).unwrap();
        assert_eq!(r.target, root.join("versions/3.11.7/bin/python3"));
        assert_eq!(r.path_prepend, Some(root.join("versions/3.11.7/bin")));
        assert!(r.explanation.contains("PYENV_VERSION"));
    }

    #[test]
    fn pyenv_reads_local_file_from_parent_dirs_then_global() {
        let tmp = tempfile::tempdir().unwrap();
        let (root, shim) = pyenv_tree(tmp.path());
        std::fs::write(root.join("version"), "3.12.1\n").unwrap();
        let project = tmp.path().join("project/src/deep");
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(
            tmp.path().join("project/.python-version"),
            "# pinned\n\npython-3.11.2 extra words\n",
        )
        .unwrap();
        let vm = detect(&shim, &env(vec![], &project)).unwrap();
        let r = resolve(&vm, &shim, &env(vec![], &project)).unwrap();
        assert_eq!(r.target, root.join("versions/3.11.2/bin/python3"));

        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        let r = resolve(&vm, &shim, &env(vec![], &elsewhere)).unwrap();
        assert_eq!(r.target, root.join("versions/3.12.1/bin/python3"));
    }

    #[test]
    fn pyenv_prefix_skips_prereleases_and_falls_through_lists() {
        let tmp = tempfile::tempdir().unwrap();
        let (root, shim) = pyenv_tree(tmp.path());
        let e = env(vec![("PYENV_VERSION", "3.9:3.13".into())], tmp.path());
        let vm = detect(&shim, &e).unwrap();
        // 3.9 is not installed; 3.13 has only a release candidate, so the
        // native reading finds nothing and asks pyenv, which is absent here.
        let err = resolve(&vm, &shim, &e).unwrap_err();
        assert!(err.contains("pyenv"), "{err}");
        let e = env(vec![("PYENV_VERSION", "3.9:3.12".into())], tmp.path());
        assert_eq!(
            resolve(&vm, &shim, &e).unwrap().target,
            root.join("versions/3.12.1/bin/python3")
        );
    }

    #[test]
    fn pyenv_system_searches_path_without_the_shims() {
        let tmp = tempfile::tempdir().unwrap();
        let (root, shim) = pyenv_tree(tmp.path());
        let sys = tmp.path().join("usr/bin");
        write_exec(&sys.join("python3"), "sys");
        let path = std::env::join_paths([root.join("shims"), sys.clone()]).unwrap();
        let e = env(
            vec![
                ("PYENV_VERSION", "system".into()),
                ("PATH", path.into_string().unwrap()),
            ],
            tmp.path(),
        );
        let r = resolve(&detect(&shim, &e).unwrap(), &shim, &e).unwrap();
        assert_eq!(r.target, sys.join("python3"));
        assert_eq!(r.path_prepend, None);
    }

    #[test]
    fn pyenv_falls_back_to_asking_pyenv() {
        let tmp = tempfile::tempdir().unwrap();
        let (root, shim) = pyenv_tree(tmp.path());
        let answer = root.join("versions/3.12.1/bin/python3");
        // A stand-in `pyenv` that answers like `pyenv which` does.
        write_exec(
            &root.join("libexec/pyenv"),
            &format!(
                "#!/bin/sh\n[ \"$1\" = which ] && [ \"$2\" = python3 ] && echo {}\n",
                answer.display()
            ),
        );
        let e = env(vec![("PYENV_VERSION", "my-virtualenv".into())], tmp.path());
        let r = resolve(&detect(&shim, &e).unwrap(), &shim, &e).unwrap();
        assert_eq!(r.target, answer);
        assert!(r.explanation.contains("pyenv which"));
    }

    #[test]
    fn asdf_reads_tool_versions_upwards_then_home() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("asdf");
        let shim = data.join("shims/python3");
        write_exec(
            &shim,
            "#!/usr/bin/env bash\n# asdf-plugin: python 3.12.1\nexec asdf exec \"python3\" \"$@\"\n",
        );
        for v in ["3.12.1", "3.11.7"] {
            write_exec(
                &data.join("installs/python").join(v).join("bin/python3"),
                "x",
            );
        }
        let home = tmp.path().join("home");
        let project = home.join("p/q");
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(home.join(".tool-versions"), "nodejs 20\npython 3.12.1\n").unwrap();
        let e = env(vec![("HOME", home.display().to_string())], &project);
        let vm = detect(&shim, &e).unwrap();
        assert_eq!(
            vm,
            VersionManager::Asdf {
                data_dir: data.clone()
            }
        );
        assert_eq!(
            resolve(&vm, &shim, &e).unwrap().target,
            data.join("installs/python/3.12.1/bin/python3")
        );
        std::fs::write(
            home.join("p/.tool-versions"),
            "python 3.10.0 3.11.7 # first is missing\n",
        )
        .unwrap();
        assert_eq!(
            resolve(&vm, &shim, &e).unwrap().target,
            data.join("installs/python/3.11.7/bin/python3")
        );
        let e = env(
            vec![
                ("HOME", home.display().to_string()),
                ("ASDF_PYTHON_VERSION", "3.12.1".into()),
            ],
            &project,
        );
        assert_eq!(
            resolve(&vm, &shim, &e).unwrap().target,
            data.join("installs/python/3.12.1/bin/python3")
        );
    }

    #[test]
    fn mise_shim_symlink_is_detected_and_resolved_by_variable_or_by_mise() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("mise");
        let mise_bin = tmp.path().join("bin/mise");
        let answer = data.join("installs/python/3.12.1/bin/python3");
        write_exec(&answer, "x");
        write_exec(
            &mise_bin,
            &format!(
                "#!/bin/sh\n[ \"$1\" = which ] && echo {}\n",
                answer.display()
            ),
        );
        std::fs::create_dir_all(data.join("shims")).unwrap();
        let shim = data.join("shims/python3");
        std::os::unix::fs::symlink(&mise_bin, &shim).unwrap();
        let e = env(vec![], tmp.path());
        let vm = detect(&shim, &e).unwrap();
        assert_eq!(vm.name(), "mise");
        let r = resolve(&vm, &shim, &e).unwrap();
        assert_eq!(r.target, answer);
        assert!(r.explanation.contains("mise which"));

        write_exec(&data.join("installs/python/3.11/bin/python3"), "x");
        let e = env(vec![("MISE_PYTHON_VERSION", "3.11".into())], tmp.path());
        let r = resolve(&vm, &shim, &e).unwrap();
        assert_eq!(r.target, data.join("installs/python/3.11/bin/python3"));
    }

    #[test]
    fn versions_compare_numerically() {
        use std::cmp::Ordering::*;
        assert_eq!(compare_versions("3.11.10", "3.11.9"), Greater);
        assert_eq!(compare_versions("3.9", "3.10"), Less);
        assert!(is_prerelease("3.13.0rc1"));
        assert!(is_prerelease("3.14.0a3"));
        assert!(!is_prerelease("3.12.1"));
        assert!(is_prerelease("3.12-dev"));
    }
}
