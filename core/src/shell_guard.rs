//! The shell guard: interactive `python`/`python3` go through
//! `mlx-safe-python`, which pauses MLX runs during a cooldown.
//!
//! zsh and bash get one delimited block in their rc file,
//! `# >>> metal-guard >>>` / `# <<< metal-guard <<<` around one `source`
//! line (the Python tool's markers), that sources `~/.metal-guard/shell-guard.sh`;
//! fish gets its own file in `conf.d`. Only interactive shells are affected,
//! and `METALGUARD_SHELL_GUARD_DISABLED=1` turns it off at once.
//!
//! Nothing the user wrote is ever lost: edits are atomic (temp + rename)
//! with a backup, a symlinked rc is edited at its target, install then
//! uninstall gives back the file byte for byte (no trailing newline, CRLF
//! line endings, a file that did not exist), and a start marker without its
//! end marker makes uninstall refuse and show what it found.

use crate::state::atomic_file::{ensure_private_dir, write_atomic};
use serde::Serialize;
use std::path::{Path, PathBuf};

pub const START_MARKER: &str = "# >>> metal-guard >>>";
pub const END_MARKER: &str = "# <<< metal-guard <<<";
/// In-block notes that let uninstall undo exactly what install did.
const NOTE_ADDED_LF: &str = "# (metal-guard added the line break before this block)";
const NOTE_ADDED_CRLF: &str = "# (metal-guard added the CRLF line break before this block)";
const NOTE_CREATED: &str = "# (metal-guard created this file for this block)";
/// First line of the fish conf.d file, so uninstall only deletes our file.
const FISH_HEADER: &str = "# metal-guard shell guard (fish).";

/// A shell the guard supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shell {
    Zsh,
    Bash,
    Fish,
}

impl Shell {
    pub const ALL: [Shell; 3] = [Shell::Zsh, Shell::Bash, Shell::Fish];

    pub fn name(self) -> &'static str {
        match self {
            Shell::Zsh => "zsh",
            Shell::Bash => "bash",
            Shell::Fish => "fish",
        }
    }

    /// The user's login shell from `$SHELL`, if it is one we support.
    pub fn from_env() -> Option<Shell> {
        let shell = std::env::var_os("SHELL")?;
        let base = Path::new(&shell)
            .file_name()?
            .to_string_lossy()
            .into_owned();
        Shell::ALL.into_iter().find(|s| s.name() == base)
    }
}

/// Where the guard's files go (from `$HOME`, `$ZDOTDIR`, `$XDG_CONFIG_HOME`).
#[derive(Debug, Clone)]
pub struct GuardPaths {
    pub guard_dir: PathBuf,
    pub zshrc: PathBuf,
    pub bashrc: PathBuf,
    pub fish_conf: PathBuf,
}

impl GuardPaths {
    pub fn from_env() -> GuardPaths {
        let home = crate::paths::home_dir().unwrap_or_else(|| PathBuf::from("/tmp"));
        let env_dir = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let zdot = env_dir("ZDOTDIR").unwrap_or_else(|| home.clone());
        let config = env_dir("XDG_CONFIG_HOME").unwrap_or_else(|| home.join(".config"));
        GuardPaths::under(&home, &zdot, &config)
    }

    pub fn under(home: &Path, zdotdir: &Path, config: &Path) -> GuardPaths {
        GuardPaths {
            guard_dir: home.join(".metal-guard"),
            zshrc: zdotdir.join(".zshrc"),
            bashrc: home.join(".bashrc"),
            fish_conf: config.join("fish").join("conf.d").join("metal-guard.fish"),
        }
    }

    pub fn script(&self) -> PathBuf {
        self.guard_dir.join("shell-guard.sh")
    }

    pub fn rc(&self, shell: Shell) -> &Path {
        match shell {
            Shell::Zsh => &self.zshrc,
            Shell::Bash => &self.bashrc,
            Shell::Fish => &self.fish_conf,
        }
    }
}

/// The script zsh and bash source.
pub fn posix_script() -> String {
    r#"# metal-guard shell guard: interactive python/python3 go through mlx-safe-python,
# which pauses MLX runs during a panic cooldown and passes everything else straight through.
# Installed by `metal-guard guard install`; removed by `metal-guard guard uninstall`.
# Off for the current shell, without uninstalling: export METALGUARD_SHELL_GUARD_DISABLED=1
case $- in
  *i*) ;;
  *) return 0 2>/dev/null || exit 0 ;;
esac
__metal_guard_route() {
  local __mg_name="$1"
  shift
  case "${METALGUARD_SHELL_GUARD_DISABLED:-}" in
    1|true|TRUE|True|yes|YES|Yes|on|ON|On) command "$__mg_name" "$@"; return $? ;;
  esac
  if ! command -v mlx-safe-python >/dev/null 2>&1; then
    command "$__mg_name" "$@"
    return $?
  fi
  local __mg_bin="${MLX_SAFE_PYTHON_BIN:-}"
  if [ -z "$__mg_bin" ]; then
    # The interpreter's path, not our function of the same name.
    if [ -n "${BASH_VERSION:-}" ]; then __mg_bin=$(type -P "$__mg_name"); else __mg_bin=$(whence -p "$__mg_name"); fi
  fi
  MLX_SAFE_PYTHON_BIN="${__mg_bin:-$__mg_name}" command mlx-safe-python "$@"
}
function python { __metal_guard_route python "$@"; }
function python3 { __metal_guard_route python3 "$@"; }
"#
    .to_string()
}

/// The fish conf.d file.
pub fn fish_script() -> String {
    format!(
        r#"{FISH_HEADER} Interactive python/python3 go through mlx-safe-python,
# which pauses MLX runs during a panic cooldown and passes everything else straight through.
# Installed by `metal-guard guard install`; removed by `metal-guard guard uninstall`.
# Off for the current shell, without uninstalling: set -gx METALGUARD_SHELL_GUARD_DISABLED 1
status is-interactive; or return
function __metal_guard_route
    set -l name $argv[1]
    set -e argv[1]
    if contains -- (string lower -- "$METALGUARD_SHELL_GUARD_DISABLED") 1 true yes on; or not command -q mlx-safe-python
        command $name $argv
        return $status
    end
    set -l bin "$MLX_SAFE_PYTHON_BIN"
    test -n "$bin"; or set bin (command -s $name)
    env MLX_SAFE_PYTHON_BIN=$bin mlx-safe-python $argv
end
function python --wraps python
    __metal_guard_route python $argv
end
function python3 --wraps python3
    __metal_guard_route python3 $argv
end
"#
    )
}

/// The `source` line of the block.
pub fn source_line(script: &Path) -> String {
    format!("source \"{}\"", script.display())
}

fn lines_inclusive(bytes: &[u8]) -> Vec<&[u8]> {
    bytes.split_inclusive(|&b| b == b'\n').collect()
}

fn strip_eol(line: &[u8]) -> &[u8] {
    let l = line.strip_suffix(b"\n").unwrap_or(line);
    l.strip_suffix(b"\r").unwrap_or(l)
}

/// Whether the bytes hold a start marker line.
pub fn has_block(content: &[u8]) -> bool {
    lines_inclusive(content)
        .iter()
        .any(|l| strip_eol(l) == START_MARKER.as_bytes())
}

/// The rc content with the block appended (`None`: the file does not
/// exist). Content that already has a block is returned unchanged.
pub fn add_block(content: Option<&[u8]>, source: &str) -> Vec<u8> {
    let Some(c) = content else {
        return format!("{START_MARKER}\n{NOTE_CREATED}\n{source}\n{END_MARKER}\n").into_bytes();
    };
    if has_block(c) {
        return c.to_vec();
    }
    let crlf = c.windows(2).any(|w| w == b"\r\n");
    let eol: &[u8] = if crlf { b"\r\n" } else { b"\n" };
    let needs_break = !c.is_empty() && !c.ends_with(b"\n");
    let mut out = c.to_vec();
    if needs_break {
        out.extend_from_slice(eol);
    }
    let mut line = |text: &str| {
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(eol);
    };
    line(START_MARKER);
    if needs_break {
        line(if crlf { NOTE_ADDED_CRLF } else { NOTE_ADDED_LF });
    }
    line(source);
    line(END_MARKER);
    out
}

/// What removing the block gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// No block: nothing to do.
    NotInstalled,
    /// The content without the block.
    Content(Vec<u8>),
    /// The file existed only for the block: delete it.
    DeleteFile,
}

/// A start marker without its end marker: nothing may be deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingEndMarker {
    /// 1-based line number of the start marker.
    pub start_line: usize,
    /// The lines from the start marker on (at most 20), as text.
    pub lines: Vec<String>,
}

/// Removes every complete block, undoing exactly what [`add_block`] added.
pub fn remove_block(content: &[u8]) -> Result<Removal, MissingEndMarker> {
    let mut current = content.to_vec();
    let mut removed_any = false;
    let mut created = false;
    loop {
        let lines = lines_inclusive(&current);
        let Some(start) = lines
            .iter()
            .position(|l| strip_eol(l) == START_MARKER.as_bytes())
        else {
            break;
        };
        let Some(end_rel) = lines[start + 1..]
            .iter()
            .position(|l| strip_eol(l) == END_MARKER.as_bytes())
        else {
            return Err(MissingEndMarker {
                start_line: start + 1,
                lines: lines[start..]
                    .iter()
                    .take(20)
                    .map(|l| String::from_utf8_lossy(strip_eol(l)).into_owned())
                    .collect(),
            });
        };
        let end = start + 1 + end_rel;
        let block = &lines[start..=end];
        let has = |note: &str| block.iter().any(|l| strip_eol(l) == note.as_bytes());
        let before_len: usize = lines[..start].iter().map(|l| l.len()).sum();
        let mut before = current[..before_len].to_vec();
        if has(NOTE_ADDED_CRLF) && before.ends_with(b"\r\n") {
            before.truncate(before.len() - 2);
        } else if has(NOTE_ADDED_LF) && before.ends_with(b"\n") {
            before.truncate(before.len() - 1);
        }
        created |= has(NOTE_CREATED);
        let after: Vec<u8> = lines[end + 1..].concat();
        before.extend_from_slice(&after);
        current = before;
        removed_any = true;
    }
    if !removed_any {
        return Ok(Removal::NotInstalled);
    }
    if created && current.is_empty() {
        return Ok(Removal::DeleteFile);
    }
    Ok(Removal::Content(current))
}

/// Why an install or uninstall did nothing.
#[derive(Debug)]
pub enum GuardError {
    MissingEnd {
        rc: PathBuf,
        found: MissingEndMarker,
    },
    Io(String),
    /// The file changed while we edited it (the user, or another program,
    /// wrote to it): nothing was replaced; the edit is done again.
    ChangedMeanwhile(PathBuf),
}

impl std::fmt::Display for GuardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GuardError::MissingEnd { rc, found } => {
                writeln!(
                    f,
                    "{} has the metal-guard start marker on line {} but no end marker after it; nothing was changed.",
                    rc.display(),
                    found.start_line
                )?;
                writeln!(f, "These are the lines from the start marker on:")?;
                for (i, l) in found.lines.iter().enumerate() {
                    writeln!(f, "  {:>5} | {l}", found.start_line + i)?;
                }
                write!(
                    f,
                    "Add the line `{END_MARKER}` where our block ends (after the `source` line), or delete the block by hand, then run `metal-guard guard uninstall` again."
                )
            }
            GuardError::Io(e) => f.write_str(e),
            GuardError::ChangedMeanwhile(p) => write!(
                f,
                "{} kept changing while metal-guard edited it; nothing was changed: run the command again when nothing else writes to it",
                p.display()
            ),
        }
    }
}

/// The file to edit: the target of a symlinked rc (the link itself stays).
pub fn edit_target(rc: &Path) -> Result<PathBuf, GuardError> {
    match std::fs::symlink_metadata(rc) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(rc).or_else(|_| {
            // A dangling link: edit (create) the file it points to.
            let target = std::fs::read_link(rc).map_err(|e| {
                GuardError::Io(format!("cannot read the symlink {} ({e})", rc.display()))
            })?;
            Ok(if target.is_absolute() {
                target
            } else {
                rc.parent().unwrap_or(Path::new("/")).join(target)
            })
        }),
        _ => Ok(rc.to_path_buf()),
    }
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, GuardError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(GuardError::Io(format!(
            "cannot read {} ({e})",
            path.display()
        ))),
    }
}

fn backup(paths: &GuardPaths, target: &Path, bytes: &[u8]) -> Result<PathBuf, GuardError> {
    let dir = paths.guard_dir.join("backups");
    ensure_private_dir(&dir)
        .map_err(|e| GuardError::Io(format!("cannot create {} ({e})", dir.display())))?;
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let name = format!(
        "{}.{stamp}.bak",
        target.file_name().unwrap_or_default().to_string_lossy()
    );
    let dest = dir.join(name);
    write_atomic(&dest, bytes)
        .map_err(|e| GuardError::Io(format!("cannot write the backup {} ({e})", dest.display())))?;
    Ok(dest)
}

/// Replaces `target` atomically with `bytes`, keeping its mode and owner
/// (set on the temporary before the rename; new files: 0644), and only if it
/// still holds `based_on` just before the rename: a line the user appended
/// meanwhile is never lost (the caller edits again).
fn replace(target: &Path, based_on: Option<&[u8]>, bytes: &[u8]) -> Result<(), GuardError> {
    let attributes = std::fs::metadata(target)
        .ok()
        .map(|m| crate::state::atomic_file::Attributes::of(&m));
    let unchanged = || {
        let now = std::fs::read(target).ok();
        if now.as_deref() == based_on {
            Ok(())
        } else {
            Err(std::io::Error::other(CHANGED_MEANWHILE))
        }
    };
    // Held across the rename: a line appended to the old file between the
    // last check and the rename is still readable here, and is carried over.
    let old = std::fs::File::open(target).ok();
    crate::state::atomic_file::write_replacing(target, bytes, 0o644, attributes, &unchanged)
        .map_err(|e| {
            if e.to_string() == CHANGED_MEANWHILE {
                GuardError::ChangedMeanwhile(target.to_path_buf())
            } else {
                GuardError::Io(format!("cannot write {} ({e})", target.display()))
            }
        })?;
    if let (Some(mut old), Some(based_on)) = (old, based_on) {
        use std::io::{Read, Write};
        let mut after = Vec::new();
        if old.read_to_end(&mut after).is_ok()
            && after.len() > based_on.len()
            && after.starts_with(based_on)
        {
            let late = &after[based_on.len()..];
            std::fs::OpenOptions::new()
                .append(true)
                .open(target)
                .and_then(|mut f| f.write_all(late))
                .map_err(|e| {
                    GuardError::Io(format!(
                        "{} received {} byte(s) while metal-guard rewrote it and they could not be carried over ({e}); they are in the backup",
                        target.display(),
                        late.len()
                    ))
                })?;
        }
    }
    Ok(())
}

const CHANGED_MEANWHILE: &str = "the file changed while it was edited";

/// How often an edit is redone when the file keeps changing under it.
const EDIT_ATTEMPTS: usize = 5;

/// Runs an edit again while the file changes under it.
fn retrying(edit: impl Fn() -> Result<GuardChange, GuardError>) -> Result<GuardChange, GuardError> {
    let mut last = None;
    for _ in 0..EDIT_ATTEMPTS {
        match edit() {
            Err(GuardError::ChangedMeanwhile(p)) => {
                last = Some(p);
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
    Err(GuardError::ChangedMeanwhile(last.unwrap_or_default()))
}

/// What an install or uninstall did for one shell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuardChange {
    pub shell: Shell,
    #[serde(serialize_with = "crate::paths::lossy::path")]
    pub file: PathBuf,
    /// `installed`, `already_installed`, `removed`, `deleted_file`, `not_installed`.
    pub action: &'static str,
    #[serde(serialize_with = "crate::paths::lossy::option")]
    pub backup: Option<PathBuf>,
    /// The rc file when it is a symlink: `file` is its target, edited in place.
    #[serde(
        serialize_with = "crate::paths::lossy::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub via_symlink: Option<PathBuf>,
}

/// Installs the guard for `shell`.
pub fn install(paths: &GuardPaths, shell: Shell) -> Result<GuardChange, GuardError> {
    retrying(|| install_once(paths, shell)).map(|c| c.noting_symlink(paths.rc(shell)))
}

fn install_once(paths: &GuardPaths, shell: Shell) -> Result<GuardChange, GuardError> {
    ensure_private_dir(&paths.guard_dir).map_err(|e| {
        GuardError::Io(format!("cannot create {} ({e})", paths.guard_dir.display()))
    })?;
    if shell == Shell::Fish {
        let file = &paths.fish_conf;
        let existing = read_optional(file)?;
        let script = fish_script();
        if existing.as_deref() == Some(script.as_bytes()) {
            return Ok(GuardChange {
                shell,
                file: file.clone(),
                action: "already_installed",
                backup: None,
                via_symlink: None,
            });
        }
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| GuardError::Io(format!("cannot create {} ({e})", parent.display())))?;
        }
        replace(file, existing.as_deref(), script.as_bytes())?;
        return Ok(GuardChange {
            shell,
            file: file.clone(),
            action: "installed",
            backup: None,
            via_symlink: None,
        });
    }
    let script = paths.script();
    write_atomic(&script, posix_script().as_bytes())
        .map_err(|e| GuardError::Io(format!("cannot write {} ({e})", script.display())))?;
    let rc = paths.rc(shell);
    let target = edit_target(rc)?;
    let existing = read_optional(&target)?;
    if existing.as_deref().is_some_and(has_block) {
        return Ok(GuardChange {
            shell,
            file: target,
            action: "already_installed",
            backup: None,
            via_symlink: None,
        });
    }
    let backup = match &existing {
        Some(b) => Some(backup(paths, &target, b)?),
        None => None,
    };
    let new = add_block(existing.as_deref(), &source_line(&script));
    replace(&target, existing.as_deref(), &new)?;
    Ok(GuardChange {
        shell,
        file: target,
        action: "installed",
        backup,
        via_symlink: None,
    })
}

/// Removes the guard for `shell`.
pub fn uninstall(paths: &GuardPaths, shell: Shell) -> Result<GuardChange, GuardError> {
    retrying(|| uninstall_once(paths, shell)).map(|c| c.noting_symlink(paths.rc(shell)))
}

impl GuardChange {
    /// Records that `rc` is a symlink whose target was the file edited.
    fn noting_symlink(mut self, rc: &Path) -> GuardChange {
        if self.file != rc && self.shell != Shell::Fish {
            self.via_symlink = Some(rc.to_path_buf());
        }
        self
    }
}

fn uninstall_once(paths: &GuardPaths, shell: Shell) -> Result<GuardChange, GuardError> {
    if shell == Shell::Fish {
        let file = &paths.fish_conf;
        return match read_optional(file)? {
            Some(b) if b.starts_with(FISH_HEADER.as_bytes()) => {
                std::fs::remove_file(file).map_err(|e| {
                    GuardError::Io(format!("cannot remove {} ({e})", file.display()))
                })?;
                Ok(GuardChange {
                    shell,
                    file: file.clone(),
                    action: "deleted_file",
                    backup: None,
                    via_symlink: None,
                })
            }
            Some(_) => Err(GuardError::Io(format!(
                "{} was not written by metal-guard; left it alone",
                file.display()
            ))),
            None => Ok(GuardChange {
                shell,
                file: file.clone(),
                action: "not_installed",
                backup: None,
                via_symlink: None,
            }),
        };
    }
    let target = edit_target(paths.rc(shell))?;
    let Some(existing) = read_optional(&target)? else {
        return Ok(GuardChange {
            shell,
            file: target,
            action: "not_installed",
            backup: None,
            via_symlink: None,
        });
    };
    let removal = remove_block(&existing).map_err(|found| GuardError::MissingEnd {
        rc: target.clone(),
        found,
    })?;
    match removal {
        Removal::NotInstalled => Ok(GuardChange {
            shell,
            file: target,
            action: "not_installed",
            backup: None,
            via_symlink: None,
        }),
        Removal::Content(new) => {
            let b = backup(paths, &target, &existing)?;
            replace(&target, Some(&existing), &new)?;
            Ok(GuardChange {
                shell,
                file: target,
                action: "removed",
                backup: Some(b),
                via_symlink: None,
            })
        }
        Removal::DeleteFile => {
            let b = backup(paths, &target, &existing)?;
            if std::fs::read(&target).ok().as_deref() != Some(&existing[..]) {
                return Err(GuardError::ChangedMeanwhile(target));
            }
            std::fs::remove_file(&target)
                .map_err(|e| GuardError::Io(format!("cannot remove {} ({e})", target.display())))?;
            Ok(GuardChange {
                shell,
                file: target,
                action: "deleted_file",
                backup: Some(b),
                via_symlink: None,
            })
        }
    }
}

/// The guard's state for one shell.
#[derive(Debug, Clone, Serialize)]
pub struct ShellGuardState {
    pub shell: Shell,
    #[serde(serialize_with = "crate::paths::lossy::path")]
    pub file: PathBuf,
    pub installed: bool,
    /// A start marker without an end marker.
    pub damaged: bool,
}

/// The guard's state overall.
#[derive(Debug, Clone, Serialize)]
pub struct GuardStatus {
    pub shells: Vec<ShellGuardState>,
    #[serde(serialize_with = "crate::paths::lossy::path")]
    pub script: PathBuf,
    pub script_present: bool,
    /// `METALGUARD_SHELL_GUARD_DISABLED` is set.
    pub disabled_by_env: bool,
    pub mlx_safe_python_on_path: bool,
}

impl GuardStatus {
    pub fn installed_anywhere(&self) -> bool {
        self.shells.iter().any(|s| s.installed)
    }
}

/// Reads the guard's state (never writes).
pub fn status(paths: &GuardPaths) -> GuardStatus {
    let shells = Shell::ALL
        .into_iter()
        .map(|shell| {
            let file =
                edit_target(paths.rc(shell)).unwrap_or_else(|_| paths.rc(shell).to_path_buf());
            let content = std::fs::read(&file).ok();
            let (installed, damaged) = match (shell, &content) {
                (_, None) => (false, false),
                (Shell::Fish, Some(b)) => (b.starts_with(FISH_HEADER.as_bytes()), false),
                (_, Some(b)) => match remove_block(b) {
                    Ok(Removal::NotInstalled) => (false, false),
                    Ok(_) => (true, false),
                    Err(_) => (false, true),
                },
            };
            ShellGuardState {
                shell,
                file,
                installed,
                damaged,
            }
        })
        .collect();
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("mlx-safe-python").is_file()));
    GuardStatus {
        shells,
        script: paths.script(),
        script_present: paths.script().is_file(),
        disabled_by_env: crate::env_vars::is_truthy(
            std::env::var("METALGUARD_SHELL_GUARD_DISABLED")
                .ok()
                .as_deref(),
        ),
        mlx_safe_python_on_path: on_path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::os::unix::fs::PermissionsExt;

    const SRC: &str = "source \"/home/u/.metal-guard/shell-guard.sh\"";

    fn round_trip(original: Option<&[u8]>) {
        let installed = add_block(original, SRC);
        assert!(has_block(&installed));
        assert_eq!(add_block(Some(&installed), SRC), installed, "idempotent");
        match (remove_block(&installed).unwrap(), original) {
            (Removal::Content(back), Some(o)) => assert_eq!(back, o),
            (Removal::DeleteFile, None) => {}
            (r, o) => panic!("{r:?} for {o:?}"),
        }
    }

    #[test]
    fn edge_cases_round_trip() {
        for c in [
            &b""[..],
            b"\n",
            b"export A=1",
            b"export A=1\n",
            b"a\r\nb\r\n",
            b"a\r\nb",
            b"a\r",
            b"\xff\xfe binary \x00",
        ] {
            round_trip(Some(c));
        }
        round_trip(None);
    }

    #[test]
    fn missing_end_marker_refuses_and_shows_the_lines() {
        let c = format!("keep 1\n{START_MARKER}\n{SRC}\nuser line after\n").into_bytes();
        let err = remove_block(&c).unwrap_err();
        assert_eq!(err.start_line, 2);
        assert_eq!(
            err.lines,
            vec![
                START_MARKER.to_string(),
                SRC.to_string(),
                "user line after".to_string()
            ]
        );
    }

    fn arb_rc() -> impl Strategy<Value = Option<Vec<u8>>> {
        // Text lines (shell-like), raw byte lines (any byte but a newline:
        // `\r`, NUL, invalid UTF-8), and lines that look like ours but are not.
        let text = "[ -~\t]{0,30}".prop_map(String::into_bytes);
        let raw = prop::collection::vec(
            any::<u8>().prop_filter("no newline", |b| *b != b'\n'),
            0..30,
        );
        let near = prop_oneof![
            Just(b"# >>> metal-guard".to_vec()),
            Just(b" # >>> metal-guard >>>".to_vec()),
            Just(b"# <<< metal-guard".to_vec()),
            Just(NOTE_ADDED_LF.as_bytes().to_vec()),
            Just(source_line(Path::new("/x")).into_bytes()),
        ];
        let line = prop_oneof![6 => text, 3 => raw, 1 => near].prop_filter(
            "not a marker",
            |l: &Vec<u8>| {
                let t = strip_eol(l);
                t != START_MARKER.as_bytes() && t != END_MARKER.as_bytes()
            },
        );
        let eol = prop_oneof![Just(&b"\n"[..]), Just(&b"\r\n"[..])];
        let body = (
            prop::collection::vec((line, eol), 0..12),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(lines, drop_last_eol, uniform_crlf)| {
                let mut out = Vec::new();
                for (i, (l, e)) in lines.iter().enumerate() {
                    out.extend_from_slice(l);
                    let last = i + 1 == lines.len();
                    if !(last && drop_last_eol) {
                        out.extend_from_slice(if uniform_crlf { b"\r\n" } else { e });
                    }
                }
                out
            });
        prop_oneof![1 => Just(None), 9 => body.prop_map(Some)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn install_then_uninstall_gives_the_rc_back(rc in arb_rc()) {
            round_trip(rc.as_deref());
        }
    }

    /// A user appending to the rc while install and uninstall run loses no line.
    #[test]
    fn lines_appended_during_edits_are_never_lost() {
        use std::io::Write;
        let home = tempfile::tempdir().unwrap();
        let h = home.path().to_path_buf();
        let paths = GuardPaths::under(&h, &h, &h.join(".config"));
        std::fs::write(&paths.bashrc, b"export A=1\n").unwrap();
        let rc = paths.bashrc.clone();
        let writer = std::thread::spawn(move || {
            for i in 0..65 {
                let mut f = std::fs::OpenOptions::new().append(true).open(&rc).unwrap();
                writeln!(f, "echo line-{i}").unwrap();
                drop(f);
                std::thread::sleep(std::time::Duration::from_micros(300));
            }
        });
        let mut edits = 0;
        while !writer.is_finished() {
            install(&paths, Shell::Bash).unwrap();
            uninstall(&paths, Shell::Bash).unwrap();
            edits += 2;
        }
        writer.join().unwrap();
        let text = String::from_utf8(std::fs::read(&paths.bashrc).unwrap()).unwrap();
        let missing: Vec<i32> = (0..65)
            .filter(|i| !text.contains(&format!("echo line-{i}\n")))
            .collect();
        assert!(
            missing.is_empty(),
            "lost {missing:?} over {edits} edits:\n{text}"
        );
        assert!(!has_block(text.as_bytes()));
    }

    #[test]
    fn files_round_trip_including_symlinks_and_modes() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        let paths = GuardPaths::under(h, h, &h.join(".config"));
        // zsh: a symlinked rc without a trailing newline, mode 0640.
        let real = h.join("dotfiles-zshrc");
        std::fs::write(&real, b"alias ll='ls -l'\r\nexport X=1").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::symlink(&real, &paths.zshrc).unwrap();
        let before = std::fs::read(&real).unwrap();
        let c = install(&paths, Shell::Zsh).unwrap();
        assert_eq!(c.action, "installed");
        assert!(c.backup.is_some());
        assert!(std::fs::symlink_metadata(&paths.zshrc)
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(has_block(&std::fs::read(&real).unwrap()));
        assert!(paths.script().is_file());
        assert_eq!(
            install(&paths, Shell::Zsh).unwrap().action,
            "already_installed"
        );
        assert!(status(&paths).shells[0].installed);
        assert_eq!(uninstall(&paths, Shell::Zsh).unwrap().action, "removed");
        assert_eq!(std::fs::read(&real).unwrap(), before);
        assert_eq!(
            std::fs::metadata(&real).unwrap().permissions().mode() & 0o777,
            0o640
        );
        // bash: rc absent -> created -> deleted again.
        install(&paths, Shell::Bash).unwrap();
        assert!(paths.bashrc.is_file());
        assert_eq!(
            uninstall(&paths, Shell::Bash).unwrap().action,
            "deleted_file"
        );
        assert!(!paths.bashrc.exists());
        // fish: its own conf.d file.
        install(&paths, Shell::Fish).unwrap();
        assert!(std::fs::read_to_string(&paths.fish_conf)
            .unwrap()
            .contains("status is-interactive"));
        assert_eq!(
            uninstall(&paths, Shell::Fish).unwrap().action,
            "deleted_file"
        );
        assert!(!paths.fish_conf.exists());
        // A damaged block: uninstall refuses and changes nothing.
        let damaged = format!("x\n{START_MARKER}\n{SRC}\ny\n");
        std::fs::write(&paths.bashrc, &damaged).unwrap();
        match uninstall(&paths, Shell::Bash) {
            Err(e @ GuardError::MissingEnd { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains("nothing was changed") && text.contains("| y"),
                    "{text}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read_to_string(&paths.bashrc).unwrap(), damaged);
        assert!(status(&paths).shells[1].damaged);
    }
}
