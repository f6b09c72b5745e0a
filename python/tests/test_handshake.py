"""is_guarded(): true exactly when the injected library is loaded into the process."""

import os
import subprocess
import sys
import unittest

import metal_guard
from metal_guard import _cli

from support import IsolatedStateTest, python_subprocess

LIBRARY = "libmetal_guard_inject.dylib" if sys.platform == "darwin" else "libmetal_guard_inject.so"
PRELOAD_VAR = "DYLD_INSERT_LIBRARIES" if sys.platform == "darwin" else "LD_PRELOAD"


def installed_library():
    """The library the launcher beside our CLI would inject (same search as the launcher)."""
    bindir = os.path.dirname(os.path.realpath(_cli.executable()))
    for candidate in (
        os.path.join(bindir, LIBRARY),
        os.path.join(bindir, "..", "lib", LIBRARY),
        os.path.join(bindir, "..", "lib", "metal_guard", LIBRARY),
    ):
        if os.path.isfile(candidate):
            return os.path.normpath(candidate)
    raise AssertionError("no %s beside %s, in ../lib or ../lib/metal_guard" % (LIBRARY, bindir))


class IsGuardedTest(IsolatedStateTest):
    def test_a_plain_interpreter_is_not_guarded(self):
        env = dict(os.environ)
        env.pop(PRELOAD_VAR, None)
        proc = python_subprocess(
            "import metal_guard; print(metal_guard.is_guarded(), metal_guard.guard_version())", env
        )
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout.decode().split(), ["False", "None"])

    def test_preloading_the_library_is_seen(self):
        env = dict(os.environ)
        env[PRELOAD_VAR] = installed_library()
        proc = python_subprocess("import metal_guard; print(metal_guard.guard_version())", env)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        _code, cli_version = _cli.run(["--version"])
        self.assertEqual("metal-guard " + proc.stdout.decode().strip(), cli_version.strip())

    def test_mlx_safe_python_guards_the_interpreter(self):
        # Also the regression test for the launcher's handshake watcher holding
        # stderr open: subprocess.run with pipes reads to EOF before reaping.
        launcher = os.path.join(os.path.dirname(_cli.executable()), "mlx-safe-python")
        self.assertTrue(os.access(launcher, os.X_OK), "%s is not executable" % launcher)
        env = dict(os.environ)
        env.pop(PRELOAD_VAR, None)
        env["MLX_SAFE_PYTHON_BIN"] = os.path.realpath(sys.executable)
        env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(metal_guard.__file__)))
        proc = subprocess.run(
            [launcher, "-c", "import metal_guard; print(metal_guard.is_guarded())"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            timeout=60,
        )
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout.decode().strip(), "True", proc.stderr)


if __name__ == "__main__":
    unittest.main()
