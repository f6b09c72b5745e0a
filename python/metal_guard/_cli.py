"""The bridge to the `metal-guard` executable.

Every answer the Python layer gives is computed by the Rust CLI
(`metal-guard SUBCOMMAND --json`), so Python and Rust can never disagree.
This module finds that executable and runs it; nothing here runs at import.

Search order for the executable:

1. `METALGUARD_BIN` (an explicit path; nothing else is tried when it is set).
2. The scripts folder of the install scheme this package was installed into
   (the wheel puts `metal-guard` there: `<venv>/bin`, `~/.local/bin`, ...).
3. The folder of the running interpreter (`sys.executable`).
4. `PATH`.
"""

import os
import sys

EXECUTABLE_NAME = "metal-guard"

# Seconds one CLI call may take. A scan of the panic-report folders is the
# slowest thing the CLI does, and it finishes in milliseconds; the limit only
# stops a wedged call from hanging the caller forever.
CALL_TIMEOUT_SEC = 60.0

_found = None


class MetalGuardError(RuntimeError):
    """The `metal-guard` executable could not be found, run, or understood."""


def _package_scripts_dirs():
    """Scripts folders of the install schemes whose library folder holds us."""
    import sysconfig

    package_parent = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    dirs = []
    for scheme in sysconfig.get_scheme_names():
        try:
            paths = sysconfig.get_paths(scheme)
        except (KeyError, ValueError):
            continue
        libs = {paths.get("purelib"), paths.get("platlib")}
        libs = {os.path.realpath(p) for p in libs if p}
        scripts = paths.get("scripts")
        if scripts and package_parent in libs and scripts not in dirs:
            dirs.append(scripts)
    return dirs


def candidate_paths():
    """Where `executable()` looks, in order (for messages and tests)."""
    explicit = os.environ.get("METALGUARD_BIN")
    if explicit:
        return [explicit]
    candidates = [os.path.join(d, EXECUTABLE_NAME) for d in _package_scripts_dirs()]
    candidates.append(
        os.path.join(os.path.dirname(os.path.abspath(sys.executable)), EXECUTABLE_NAME)
    )
    for entry in os.environ.get("PATH", os.defpath).split(os.pathsep):
        if entry:
            candidates.append(os.path.join(entry, EXECUTABLE_NAME))
    unique = []
    for path in candidates:
        if path not in unique:
            unique.append(path)
    return unique


def executable():
    """The path of the `metal-guard` executable; raises `MetalGuardError` if absent."""
    global _found
    if _found is not None and os.environ.get("METALGUARD_BIN", _found) == _found:
        return _found
    searched = candidate_paths()
    for path in searched:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            _found = path
            return path
    if os.environ.get("METALGUARD_BIN"):
        raise MetalGuardError(
            "METALGUARD_BIN=%s is not an executable file; point it at the metal-guard "
            "binary or unset it" % searched[0]
        )
    raise MetalGuardError(
        "the metal-guard executable was not found (searched the package's scripts "
        "folder, the interpreter's folder and PATH); reinstall with "
        "`pip install --force-reinstall metal-guard` or set METALGUARD_BIN"
    )


def run(args, accept_codes=(0,)):
    """Run `metal-guard ARGS`; return `(exit_code, stdout_text)`.

    An exit code outside `accept_codes` raises `MetalGuardError` carrying the
    first line the CLI wrote to stderr.
    """
    import subprocess

    command = [executable()] + list(args)
    try:
        proc = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=CALL_TIMEOUT_SEC,
        )
    except subprocess.TimeoutExpired:
        raise MetalGuardError(
            "`%s` did not answer within %.0f s; run it in a terminal to see why"
            % (" ".join(command), CALL_TIMEOUT_SEC)
        ) from None
    except OSError as exc:
        raise MetalGuardError(
            "could not run %s: %s; reinstall with `pip install --force-reinstall "
            "metal-guard` or set METALGUARD_BIN" % (command[0], exc)
        ) from None
    stdout = proc.stdout.decode("utf-8", "replace")
    if proc.returncode not in accept_codes:
        detail = _first_line(proc.stderr.decode("utf-8", "replace")) or _first_line(stdout)
        raise MetalGuardError(
            "`metal-guard %s` failed with exit code %d: %s"
            % (" ".join(args), proc.returncode, detail or "(no message)")
        )
    return proc.returncode, stdout


def run_json(args, accept_codes=(0,)):
    """Run `metal-guard ARGS` (which must include `--json`); return `(exit_code, value)`."""
    import json

    code, stdout = run(args, accept_codes)
    try:
        return code, json.loads(stdout)
    except ValueError:
        raise MetalGuardError(
            "`metal-guard %s` printed something that is not JSON (%r); the executable "
            "at %s may be from another version: check `metal-guard --version`"
            % (" ".join(args), _first_line(stdout)[:120], executable())
        ) from None


def _first_line(text):
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line
    return ""
