"""Shared set-up for the metal_guard tests.

The package under test is whatever `import metal_guard` finds: the installed
wheel in `packaging/test-wheel.sh` (which sets METALGUARD_TEST_EXPECT_INSTALLED
to the venv, checked below), or the source tree with
`PYTHONPATH=python METALGUARD_BIN=target/debug/metal-guard`.

Fixtures are the ones the Rust tests read: `<repo>/../shared/fixtures`, or
METALGUARD_TEST_FIXTURES.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import metal_guard
from metal_guard import _cli

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.environ.get("METALGUARD_TEST_FIXTURES") or os.path.normpath(
    os.path.join(HERE, "..", "..", "..", "shared", "fixtures")
)
PANICS = os.path.join(FIXTURES, "panics")


def expected_install_check():
    """Fail loudly when the tests would exercise the wrong copy of the package."""
    venv = os.environ.get("METALGUARD_TEST_EXPECT_INSTALLED")
    if not venv:
        return
    package = os.path.realpath(os.path.dirname(metal_guard.__file__))
    if not package.startswith(os.path.realpath(venv) + os.sep):
        raise RuntimeError(
            "metal_guard was imported from %s, not from the venv %s under test" % (package, venv)
        )


expected_install_check()


def labels():
    """`{file name: expected signature or None}` from the fixtures' labels.tsv."""
    result = {}
    with open(os.path.join(PANICS, "labels.tsv"), encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            name, signature = line.rstrip("\n").split("\t")[:2]
            result[name] = None if signature == "none" else signature
    return result


class IsolatedStateTest(unittest.TestCase):
    """Each test gets its own HOME (state dir) and an empty panic-report folder."""

    def setUp(self):
        self._saved_env = dict(os.environ)
        self.tmp = tempfile.mkdtemp(prefix="metal-guard-test-")
        self.home = os.path.join(self.tmp, "home")
        self.reports = os.path.join(self.tmp, "reports")
        os.makedirs(self.home)
        os.makedirs(self.reports)
        os.environ["HOME"] = self.home
        os.environ["METALGUARD_PANIC_REPORT_DIRS"] = self.reports
        for name in list(os.environ):
            if name.startswith("METALGUARD_") and name not in (
                "METALGUARD_PANIC_REPORT_DIRS",
                "METALGUARD_BIN",
            ):
                del os.environ[name]
        os.environ["METALGUARD_BREADCRUMB_PATH"] = os.path.join(self.tmp, "breadcrumbs.log")

    def tearDown(self):
        os.environ.clear()
        os.environ.update(self._saved_env)
        _cli._found = None
        shutil.rmtree(self.tmp, ignore_errors=True)

    def cli_json(self, *args):
        """`metal-guard ARGS` run directly: (exit code, parsed stdout)."""
        proc = subprocess.run(
            [_cli.executable()] + list(args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=60,
        )
        return proc.returncode, json.loads(proc.stdout.decode("utf-8"))


def python_subprocess(code, env=None):
    """Run `code` in a fresh interpreter that imports the same metal_guard."""
    child_env = dict(os.environ if env is None else env)
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(metal_guard.__file__)))
    child_env["PYTHONPATH"] = package_parent
    return subprocess.run(
        [sys.executable, "-c", code],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env,
        timeout=60,
    )
