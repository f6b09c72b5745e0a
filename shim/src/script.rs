//! Reading how a script wants to be run, so the launcher can exec its real
//! interpreter directly.
//!
//! `#!/usr/bin/env python3` and pip's `#!/bin/sh` trampolines put a
//! SIP-protected program in the exec chain on macOS, which strips
//! `DYLD_INSERT_LIBRARIES`. The kernel's own shebang handling does nothing the
//! launcher cannot do itself: exec `INTERPRETER [ARGS] SCRIPT USER-ARGS`.

use crate::launch_env::Platform;
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// How a file asks to be run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptLaunch {
    /// Not a `#!` script: the kernel runs it itself (Mach-O, ELF).
    NotAScript,
    /// `#!/path/to/interpreter [args]`.
    Direct {
        interpreter: PathBuf,
        args: Vec<OsString>,
    },
    /// `#!/usr/bin/env [-S] [NAME=VALUE...] program [args]`: `program` is looked up on `PATH`.
    Env {
        program: OsString,
        args: Vec<OsString>,
        assignments: Vec<(OsString, OsString)>,
    },
    /// The `#!/bin/sh` + `'''exec' "INTERPRETER" "$0" "$@"` trampoline that
    /// pip (distlib) and uv write when the interpreter path has a space or is too long.
    ShTrampoline {
        interpreter: PathBuf,
        args: Vec<OsString>,
    },
}

/// Why a script's first lines could not be followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptError(pub String);

/// Read the first lines of `path` and classify them.
pub fn read_script_launch(path: &Path, platform: Platform) -> Result<ScriptLaunch, ScriptError> {
    let mut head = Vec::with_capacity(1024);
    std::fs::File::open(path)
        .and_then(|f| f.take(4096).read_to_end(&mut head))
        .map_err(|e| ScriptError(format!("cannot read {}: {e}", path.display())))?;
    parse_script_head(&head, platform)
}

/// Classify the first bytes of a file (pure; see [`read_script_launch`]).
pub fn parse_script_head(head: &[u8], platform: Platform) -> Result<ScriptLaunch, ScriptError> {
    let Some(after) = head.strip_prefix(b"#!") else {
        return Ok(ScriptLaunch::NotAScript);
    };
    let line_end = after
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(after.len());
    let line = trim_bytes(&after[..line_end]);
    let (interpreter, rest) = match line.iter().position(|b| *b == b' ' || *b == b'\t') {
        Some(i) => (&line[..i], trim_bytes(&line[i..])),
        None => (line, &b""[..]),
    };
    if interpreter.is_empty() {
        return Err(ScriptError("empty `#!` line".to_owned()));
    }
    let interpreter = PathBuf::from(std::ffi::OsStr::from_bytes(interpreter));
    let rest_text = String::from_utf8_lossy(rest).into_owned();

    if interpreter.file_name() == Some(std::ffi::OsStr::new("env")) {
        return parse_env_line(&rest_text);
    }
    if interpreter.file_name() == Some(std::ffi::OsStr::new("sh")) {
        let second = &after[(line_end + 1).min(after.len())..];
        let second_end = second
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or(second.len());
        if let Some(trampoline) = parse_trampoline(&String::from_utf8_lossy(&second[..second_end]))
        {
            return Ok(trampoline);
        }
    }
    // Linux passes everything after the interpreter as one argument; macOS
    // splits it on white space.
    let args = if rest.is_empty() {
        Vec::new()
    } else {
        match platform {
            Platform::Elf => vec![OsString::from(std::ffi::OsStr::from_bytes(rest))],
            Platform::MacOs => rest_text.split_whitespace().map(OsString::from).collect(),
        }
    };
    Ok(ScriptLaunch::Direct { interpreter, args })
}

fn parse_env_line(rest: &str) -> Result<ScriptLaunch, ScriptError> {
    let words: Vec<String> = if let Some(split) = rest.strip_prefix("-S") {
        shlex::split(split.trim_start())
            .ok_or_else(|| ScriptError(format!("unbalanced quotes in `env -S{split}`")))?
    } else {
        rest.split_whitespace().map(str::to_owned).collect()
    };
    let mut assignments = Vec::new();
    let mut words = words.into_iter();
    for word in words.by_ref() {
        if word == "-S" {
            continue;
        }
        if word.starts_with('-') {
            return Err(ScriptError(format!(
                "the `#!` line runs `env {word}`, which the launcher does not reproduce; run the interpreter directly"
            )));
        }
        if let Some((name, value)) = word.split_once('=') {
            if !name.is_empty() {
                assignments.push((OsString::from(name), OsString::from(value)));
                continue;
            }
        }
        return Ok(ScriptLaunch::Env {
            program: OsString::from(word),
            args: words.map(OsString::from).collect(),
            assignments,
        });
    }
    Err(ScriptError(
        "the `#!/usr/bin/env` line names no program".to_owned(),
    ))
}

/// `'''exec' "/path/python" [args] "$0" "$@"` (quotes may be single or double).
fn parse_trampoline(line: &str) -> Option<ScriptLaunch> {
    if !line.starts_with("'''exec'") {
        return None;
    }
    let words = shlex::split(line)?;
    let mut words = words.into_iter();
    if words.next()? != "exec" {
        return None;
    }
    let interpreter = PathBuf::from(words.next()?);
    let mut args = Vec::new();
    for word in words {
        if word == "$0" {
            return Some(ScriptLaunch::ShTrampoline { interpreter, args });
        }
        args.push(OsString::from(word));
    }
    None
}

fn trim_bytes(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b {
        if first.is_ascii_whitespace() {
            b = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = b {
        if last.is_ascii_whitespace() {
            b = rest;
        } else {
            break;
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ScriptLaunch {
        parse_script_head(text.as_bytes(), Platform::Elf).unwrap()
    }

    #[test]
    fn binaries_are_not_scripts() {
        assert_eq!(parse("\x7fELF\x02\x01"), ScriptLaunch::NotAScript);
        assert_eq!(
            parse_script_head(&[0xcf, 0xfa, 0xed, 0xfe], Platform::MacOs).unwrap(),
            ScriptLaunch::NotAScript
        );
    }

    #[test]
    fn direct_interpreter_keeps_one_argument_on_linux_and_splits_on_macos() {
        assert_eq!(
            parse("#!/opt/py/bin/python3.12 -E -s\nimport x\n"),
            ScriptLaunch::Direct {
                interpreter: "/opt/py/bin/python3.12".into(),
                args: vec!["-E -s".into()]
            }
        );
        assert_eq!(
            parse_script_head(b"#! /opt/py/bin/python3 -E -s \r\n", Platform::MacOs).unwrap(),
            ScriptLaunch::Direct {
                interpreter: "/opt/py/bin/python3".into(),
                args: vec!["-E".into(), "-s".into()]
            }
        );
        assert_eq!(
            parse("#!/bin/bash\necho hi\n"),
            ScriptLaunch::Direct {
                interpreter: "/bin/bash".into(),
                args: vec![]
            }
        );
    }

    #[test]
    fn env_lines_name_a_program_with_assignments_and_split_args() {
        assert_eq!(
            parse("#!/usr/bin/env python3\n"),
            ScriptLaunch::Env {
                program: "python3".into(),
                args: vec![],
                assignments: vec![]
            }
        );
        assert_eq!(
            parse("#!/usr/bin/env -S PYTHONUNBUFFERED=1 python3 -X 'dev mode'\n"),
            ScriptLaunch::Env {
                program: "python3".into(),
                args: vec!["-X".into(), "dev mode".into()],
                assignments: vec![("PYTHONUNBUFFERED".into(), "1".into())]
            }
        );
        assert!(parse_script_head(b"#!/usr/bin/env -i python3\n", Platform::Elf).is_err());
        assert!(parse_script_head(b"#!/usr/bin/env\n", Platform::Elf).is_err());
    }

    #[test]
    fn pip_and_uv_trampolines_give_the_real_interpreter() {
        let distlib = "#!/bin/sh\n'''exec' \"/Users/a b/Library/Application Support/venv/bin/python\" \"$0\" \"$@\"\n' '''\n# -*- coding: utf-8 -*-\nimport re\n";
        assert_eq!(
            parse(distlib),
            ScriptLaunch::ShTrampoline {
                interpreter: "/Users/a b/Library/Application Support/venv/bin/python".into(),
                args: vec![]
            }
        );
        let uv = "#!/bin/sh\n'''exec' '/long/path/bin/python3' -E \"$0\" \"$@\"\n' '''\n";
        assert_eq!(
            parse(uv),
            ScriptLaunch::ShTrampoline {
                interpreter: "/long/path/bin/python3".into(),
                args: vec!["-E".into()]
            }
        );
        // An ordinary shell script stays a shell script.
        assert_eq!(
            parse("#!/bin/sh\nexec python3 \"$@\"\n"),
            ScriptLaunch::Direct {
                interpreter: "/bin/sh".into(),
                args: vec![]
            }
        );
    }
}
