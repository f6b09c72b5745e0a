//! Installed Python package versions, read from `*.dist-info/METADATA` in
//! the chosen interpreter's site-packages. Nothing is imported and no
//! interpreter is started: importing mlx initialises Metal, which is what
//! must not happen during a cooldown.

use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// PEP 503 normalisation: lower case, runs of `-`, `_`, `.` become `-`.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_sep = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_sep {
                out.push('-');
            }
            in_sep = true;
        } else {
            out.extend(c.to_lowercase());
            in_sep = false;
        }
    }
    out
}

/// Which interpreter was examined and what it has.
#[derive(Debug, Clone, Serialize)]
pub struct InstalledPackages {
    #[serde(serialize_with = "crate::paths::lossy::option")]
    pub interpreter: Option<PathBuf>,
    #[serde(serialize_with = "crate::paths::lossy::list")]
    pub site_packages: Vec<PathBuf>,
    /// Normalised name -> version, for the packages asked about that are installed.
    pub versions: BTreeMap<String, String>,
    /// Why nothing could be read, when that is the case.
    pub note: Option<String>,
}

/// The interpreter to examine: `explicit`, else `MLX_SAFE_PYTHON_BIN`, else
/// the first `python3` (then `python`) on `PATH`.
pub fn choose_interpreter(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("MLX_SAFE_PYTHON_BIN").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.components().count() > 1 {
            Some(p)
        } else {
            find_on_path(&p.to_string_lossy())
        };
    }
    find_on_path("python3").or_else(|| find_on_path("python"))
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// `<prefix>/lib/python3.*/site-packages` for the prefix above `bin/`, for
/// the interpreter path as given (a venv's `bin/python` is a symlink: its
/// own prefix is the venv) and as resolved; plus the base installation when
/// a venv's `pyvenv.cfg` includes system site-packages; plus the user site.
pub fn site_packages_for(interpreter: &Path) -> Vec<PathBuf> {
    let pyenv_version = std::env::var("PYENV_VERSION").ok();
    let cwd = std::env::current_dir().ok();
    if let Some(real) = pyenv_shim_target(interpreter, cwd.as_deref(), pyenv_version.as_deref()) {
        return site_packages_for(&real);
    }
    let mut prefixes: Vec<PathBuf> = Vec::new();
    let push = |p: PathBuf, v: &mut Vec<PathBuf>| {
        if !v.contains(&p) {
            v.push(p);
        }
    };
    let as_given_prefix = interpreter
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf);
    if let Some(p) = &as_given_prefix {
        push(p.clone(), &mut prefixes);
    }
    let mut venv_includes_system = false;
    if let Some(prefix) = &as_given_prefix {
        if let Ok(cfg) = std::fs::read_to_string(prefix.join("pyvenv.cfg")) {
            for line in cfg.lines() {
                if let Some((k, v)) = line.split_once('=') {
                    match k.trim() {
                        "include-system-site-packages" => {
                            venv_includes_system = v.trim().eq_ignore_ascii_case("true")
                        }
                        "home" => {
                            if let Some(base) = Path::new(v.trim()).parent() {
                                push(base.to_path_buf(), &mut prefixes);
                            }
                        }
                        _ => {}
                    }
                }
            }
            if !venv_includes_system {
                prefixes.truncate(1);
            }
        }
    }
    let is_venv = as_given_prefix
        .as_ref()
        .is_some_and(|p| p.join("pyvenv.cfg").is_file());
    if !is_venv || venv_includes_system {
        if let Some(p) = std::fs::canonicalize(interpreter)
            .ok()
            .and_then(|r| r.parent().and_then(Path::parent).map(Path::to_path_buf))
        {
            push(p, &mut prefixes);
        }
    }
    let mut dirs = Vec::new();
    for prefix in &prefixes {
        for lib in ["lib", "lib64"] {
            let Ok(entries) = std::fs::read_dir(prefix.join(lib)) else {
                continue;
            };
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
                .flat_map(|e| {
                    let p = e.path();
                    [p.join("site-packages"), p.join("dist-packages")]
                })
                .filter(|p| p.is_dir())
                .collect();
            found.sort();
            for f in found {
                if !dirs.contains(&f) {
                    dirs.push(f);
                }
            }
        }
    }
    if !is_venv || venv_includes_system {
        if let Some(home) = crate::paths::home_dir() {
            for base in [home.join("Library/Python"), home.join(".local/lib")] {
                let Ok(entries) = std::fs::read_dir(&base) else {
                    continue;
                };
                for e in entries.filter_map(|e| e.ok()) {
                    for cand in [
                        e.path().join("lib/python/site-packages"),
                        e.path().join("site-packages"),
                    ] {
                        if cand.is_dir() && !dirs.contains(&cand) {
                            dirs.push(cand);
                        }
                    }
                }
            }
        }
    }
    dirs
}

/// A pyenv shim (`~/.pyenv/shims/python3`) stands for the interpreter of the
/// active pyenv version: `PYENV_VERSION`, else the nearest `.python-version`
/// from `cwd` up, else `$PYENV_ROOT/version`. `None` for anything else, or
/// for the `system` version (the next interpreter on PATH, not resolved here).
pub fn pyenv_shim_target(
    interpreter: &Path,
    cwd: Option<&Path>,
    pyenv_version: Option<&str>,
) -> Option<PathBuf> {
    let shims = interpreter.parent()?;
    if shims.file_name()? != "shims" {
        return None;
    }
    let root = shims.parent()?;
    if !root.join("versions").is_dir() {
        return None;
    }
    let first_word = |text: &str| text.split_whitespace().next().map(str::to_string);
    let version = pyenv_version
        .and_then(first_word)
        .or_else(|| {
            cwd?.ancestors()
                .find_map(|d| std::fs::read_to_string(d.join(".python-version")).ok())
                .and_then(|t| first_word(&t))
        })
        .or_else(|| {
            std::fs::read_to_string(root.join("version"))
                .ok()
                .and_then(|t| first_word(&t))
        })?;
    if version == "system" {
        return None;
    }
    let name = interpreter.file_name()?;
    Some(root.join("versions").join(version).join("bin").join(name))
}

/// `Name` and `Version` from a METADATA file's header block.
fn read_metadata(path: &Path) -> Option<(String, String)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut name = None;
    let mut version = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        if let Some(v) = line.strip_prefix("Name:") {
            name = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("Version:") {
            version = Some(v.trim().to_string());
        }
    }
    Some((name?, version?))
}

/// Versions of `wanted` packages found in `dirs` (the first directory that
/// has a package wins, as on `sys.path`).
pub fn versions_in(dirs: &[PathBuf], wanted: &[&str]) -> BTreeMap<String, String> {
    let wanted: Vec<String> = wanted.iter().map(|w| normalize_name(w)).collect();
    let mut out = BTreeMap::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.filter_map(|e| e.ok()) {
            let fname = e.file_name().to_string_lossy().into_owned();
            let Some(stem) = fname.strip_suffix(".dist-info") else {
                continue;
            };
            // `mlx_lm-0.28.0`: check the name part before reading the file.
            let dist = stem.split('-').next().unwrap_or(stem);
            if !wanted.contains(&normalize_name(dist)) {
                continue;
            }
            if let Some((name, version)) = read_metadata(&e.path().join("METADATA")) {
                let n = normalize_name(&name);
                if wanted.contains(&n) {
                    out.entry(n).or_insert(version);
                }
            }
        }
    }
    out
}

/// The watched packages of the chosen interpreter.
pub fn installed_packages(explicit: Option<&Path>, wanted: &[&str]) -> InstalledPackages {
    let Some(interpreter) = choose_interpreter(explicit) else {
        return InstalledPackages {
            interpreter: None,
            site_packages: Vec::new(),
            versions: BTreeMap::new(),
            note: Some(
                "no python3 on PATH; pass --python PATH or set MLX_SAFE_PYTHON_BIN".to_string(),
            ),
        };
    };
    let dirs = site_packages_for(&interpreter);
    let note = dirs.is_empty().then(|| {
        format!(
            "no site-packages found for {}; pass --python with the interpreter that runs MLX",
            interpreter.display()
        )
    });
    InstalledPackages {
        versions: versions_in(&dirs, wanted),
        interpreter: Some(interpreter),
        site_packages: dirs,
        note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyenv_shims_resolve_to_the_active_version() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join(".pyenv");
        let sp = root.join("versions/3.12.4/lib/python3.12/site-packages/mlx-0.30.0.dist-info");
        std::fs::create_dir_all(&sp).unwrap();
        std::fs::write(sp.join("METADATA"), "Name: mlx\nVersion: 0.30.0\n").unwrap();
        std::fs::create_dir_all(root.join("shims")).unwrap();
        std::fs::write(root.join("version"), "3.12.4\n").unwrap();
        let project = dir.path().join("project");
        std::fs::create_dir_all(project.join("sub")).unwrap();
        let shim = root.join("shims/python3");
        assert_eq!(
            pyenv_shim_target(&shim, Some(&project.join("sub")), None),
            Some(root.join("versions/3.12.4/bin/python3"))
        );
        std::fs::write(project.join(".python-version"), "3.11.9\n").unwrap();
        assert_eq!(
            pyenv_shim_target(&shim, Some(&project.join("sub")), None),
            Some(root.join("versions/3.11.9/bin/python3"))
        );
        assert_eq!(
            pyenv_shim_target(&shim, Some(&project), Some("3.10.1 3.9.0")),
            Some(root.join("versions/3.10.1/bin/python3"))
        );
        std::fs::write(project.join(".python-version"), "system\n").unwrap();
        assert_eq!(pyenv_shim_target(&shim, Some(&project), None), None);
        assert_eq!(
            pyenv_shim_target(&dir.path().join("bin/python3"), None, None),
            None
        );
        let found = versions_in(
            &site_packages_for(&root.join("versions/3.12.4/bin/python3")),
            &["mlx"],
        );
        assert_eq!(found.get("mlx").map(String::as_str), Some("0.30.0"));
    }

    #[test]
    fn names_normalise() {
        assert_eq!(normalize_name("MLX_LM"), "mlx-lm");
        assert_eq!(normalize_name("mlx.-vlm"), "mlx-vlm");
    }

    #[test]
    fn reads_a_venv_without_running_python() {
        let dir = tempfile::tempdir().unwrap();
        let venv = dir.path().join("venv");
        let sp = venv.join("lib/python3.12/site-packages");
        for (dist, name, ver) in [
            ("mlx-0.31.2.dist-info", "mlx", "0.31.2"),
            ("mlx_lm-0.28.0.dist-info", "mlx-lm", "0.28.0"),
            ("numpy-2.0.0.dist-info", "numpy", "2.0.0"),
        ] {
            std::fs::create_dir_all(sp.join(dist)).unwrap();
            std::fs::write(
                sp.join(dist).join("METADATA"),
                format!("Metadata-Version: 2.1\nName: {name}\nVersion: {ver}\n\nVersion: 9.9 in the body\n"),
            )
            .unwrap();
        }
        std::fs::create_dir_all(venv.join("bin")).unwrap();
        std::fs::write(venv.join("bin/python"), b"").unwrap();
        std::fs::write(
            venv.join("pyvenv.cfg"),
            "home = /nonexistent/bin\ninclude-system-site-packages = false\n",
        )
        .unwrap();
        let found = installed_packages(
            Some(&venv.join("bin/python")),
            &crate::registry::WATCHED_PACKAGES,
        );
        assert_eq!(found.site_packages, vec![sp]);
        assert_eq!(
            found.versions.get("mlx").map(String::as_str),
            Some("0.31.2")
        );
        assert_eq!(
            found.versions.get("mlx-lm").map(String::as_str),
            Some("0.28.0")
        );
        assert!(!found.versions.contains_key("numpy"));
        assert!(!found.versions.contains_key("transformers"));
    }
}
