//! Which starts skip the cooldown gate: Python commands that only install
//! or create environments and never touch the GPU. The gate itself, its
//! override rule and its exit code are the core's
//! (`metal_guard_core::gates::start_gate`).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

/// Modules that install or create environments and never touch the GPU: `-m` with these skips the gate.
pub const GATE_EXEMPT_MODULES: &[&str] =
    &["pip", "pip3", "build", "venv", "virtualenv", "ensurepip"];

/// The module a Python command line runs with `-m`, if any, following
/// CPython's option rules (clustered flags like `-Bm pip`, `-mpip`, and the
/// options that take a value: `-c`, `-W`, `-X`, `--check-hash-based-pycs`).
pub fn python_module(args: &[OsString]) -> Option<&OsStr> {
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        let bytes = arg.as_bytes();
        if bytes == b"--" || bytes == b"-" || !bytes.starts_with(b"-") {
            return None;
        }
        if bytes.starts_with(b"--") {
            i += if bytes == b"--check-hash-based-pycs" {
                2
            } else {
                1
            };
            continue;
        }
        let mut skip_next = false;
        for (j, &flag) in bytes.iter().enumerate().skip(1) {
            let rest = &bytes[j + 1..];
            match flag {
                b'm' => {
                    return if rest.is_empty() {
                        args.get(i + 1).map(OsString::as_os_str)
                    } else {
                        Some(OsStr::from_bytes(rest))
                    };
                }
                b'c' => return None,
                b'W' | b'X' => {
                    skip_next = rest.is_empty();
                    break;
                }
                _ => {}
            }
        }
        i += if skip_next { 2 } else { 1 };
    }
    None
}

/// The exempt module a Python command line runs, if it is one.
pub fn gate_exempt_module(args: &[OsString]) -> Option<&'static str> {
    let module = python_module(args)?.to_str()?;
    GATE_EXEMPT_MODULES.iter().copied().find(|m| *m == module)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn module_is_found_past_flags_and_values() {
        let cases: &[(&[&str], Option<&str>)] = &[
            (&["-m", "pip", "install", "x"], Some("pip")),
            (&["-u", "-m", "venv", ".venv"], Some("venv")),
            (&["-Bm", "ensurepip"], Some("ensurepip")),
            (&["-mpip"], Some("pip")),
            (&["-W", "ignore", "-m", "build"], Some("build")),
            (&["-Wignore", "-X", "dev", "-m", "pip3"], Some("pip3")),
            (
                &["--check-hash-based-pycs", "always", "-m", "virtualenv"],
                Some("virtualenv"),
            ),
            (&["-c", "import pip", "-m", "pip"], None),
            (&["train.py", "-m", "pip"], None),
            (&["-", "-m", "pip"], None),
            (&["-m"], None),
            (&[], None),
        ];
        for (argv, want) in cases {
            assert_eq!(
                python_module(&args(argv)).and_then(OsStr::to_str),
                *want,
                "{argv:?}"
            );
        }
    }

    #[test]
    fn only_the_listed_modules_are_exempt() {
        assert_eq!(
            gate_exempt_module(&args(&["-m", "pip", "list"])),
            Some("pip")
        );
        assert_eq!(gate_exempt_module(&args(&["-m", "mlx_lm.generate"])), None);
        assert_eq!(gate_exempt_module(&args(&["-m", "pip.__main__"])), None);
        assert_eq!(gate_exempt_module(&args(&["pip.py"])), None);
    }
}
