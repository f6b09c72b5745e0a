"""The package itself: lazy import, finding the executable, failing clearly."""

import os
import stat
import sys
import unittest

import metal_guard
from metal_guard import _cli
from metal_guard._timefmt import epoch_seconds, parse_timestamp

from support import IsolatedStateTest, python_subprocess


class ImportTest(unittest.TestCase):
    def test_import_loads_only_the_package(self):
        # Whatever the interpreter had loaded before, importing metal_guard adds
        # only metal_guard itself: no subprocess, json, datetime or submodules.
        proc = python_subprocess(
            "import sys\n"
            "before = set(sys.modules)\n"
            "import metal_guard\n"
            "print(sorted(set(sys.modules) - before))\n"
        )
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout.decode().strip(), "['metal_guard']")

    def test_public_names_resolve(self):
        for name in metal_guard.__all__:
            self.assertIsNotNone(getattr(metal_guard, name), name)
        self.assertIn("evaluate_panic_cooldown", dir(metal_guard))

    def test_unknown_attribute_is_an_attribute_error(self):
        with self.assertRaises(AttributeError):
            metal_guard.no_such_thing  # noqa: B018

    def test_version_is_the_installed_distribution(self):
        if not os.environ.get("METALGUARD_TEST_EXPECT_INSTALLED"):
            self.skipTest("only an installed wheel has distribution metadata")
        proc = python_subprocess("import metal_guard; print(metal_guard.__version__)")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        version = proc.stdout.decode().strip()
        code, out = _cli.run(["--version"])
        self.assertEqual(out.strip(), "metal-guard " + version)


class ExecutableSearchTest(IsolatedStateTest):
    def test_metalguard_bin_is_the_only_candidate_when_set(self):
        os.environ["METALGUARD_BIN"] = "/nonexistent/metal-guard"
        self.assertEqual(_cli.candidate_paths(), ["/nonexistent/metal-guard"])
        with self.assertRaises(_cli.MetalGuardError) as caught:
            _cli.executable()
        self.assertIn("METALGUARD_BIN", str(caught.exception))

    def test_found_on_path_when_nothing_else_has_it(self):
        real = _cli.executable()
        os.environ.pop("METALGUARD_BIN", None)
        bindir = os.path.join(self.tmp, "bin")
        os.makedirs(bindir)
        os.symlink(real, os.path.join(bindir, "metal-guard"))
        os.environ["PATH"] = bindir
        _cli._found = None
        self.assertIn(os.path.join(bindir, "metal-guard"), _cli.candidate_paths())
        self.assertTrue(_cli.executable())

    def test_non_executable_files_are_skipped(self):
        os.environ.pop("METALGUARD_BIN", None)
        bindir = os.path.join(self.tmp, "bin")
        os.makedirs(bindir)
        fake = os.path.join(bindir, "metal-guard")
        with open(fake, "w") as fh:
            fh.write("not a program\n")
        os.chmod(fake, stat.S_IRUSR)
        os.environ["PATH"] = bindir
        _cli._found = None
        try:
            found = _cli.executable()
        except _cli.MetalGuardError:
            return  # nothing else installed: the unusable file was not taken
        self.assertNotEqual(found, fake)

    def test_not_json_output_is_reported(self):
        script = os.path.join(self.tmp, "metal-guard")
        with open(script, "w") as fh:
            fh.write("#!/bin/sh\necho 'Traceback: not json'\n")
        os.chmod(script, 0o755)
        os.environ["METALGUARD_BIN"] = script
        with self.assertRaises(_cli.MetalGuardError) as caught:
            _cli.run_json(["panic-gate", "--json"])
        self.assertIn("not JSON", str(caught.exception))

    def test_unexpected_exit_code_carries_stderr(self):
        script = os.path.join(self.tmp, "metal-guard")
        with open(script, "w") as fh:
            fh.write("#!/bin/sh\necho 'error: something specific broke' >&2\nexit 64\n")
        os.chmod(script, 0o755)
        os.environ["METALGUARD_BIN"] = script
        with self.assertRaises(_cli.MetalGuardError) as caught:
            _cli.run_json(["panic-gate", "--json"])
        self.assertIn("exit code 64", str(caught.exception))
        self.assertIn("something specific broke", str(caught.exception))


class MainModuleTest(IsolatedStateTest):
    def test_python_dash_m_runs_the_cli(self):
        # metal_guard_cli is the Python tool's documented fallback name.
        for module in ("metal_guard", "metal_guard_cli"):
            proc = python_subprocess(
                "import runpy, sys; sys.argv = ['x', '--version']; "
                "runpy.run_module(%r, run_name='__main__', alter_sys=True)" % module
            )
            self.assertEqual(proc.returncode, 0, proc.stderr)
            self.assertTrue(proc.stdout.decode().startswith("metal-guard "), module)

    def test_missing_executable_is_exit_127_with_a_message(self):
        env = dict(os.environ)
        env["METALGUARD_BIN"] = os.path.join(self.tmp, "missing", "metal-guard")
        proc = python_subprocess(
            "import runpy; runpy.run_module('metal_guard', run_name='__main__')", env
        )
        self.assertEqual(proc.returncode, 127)
        self.assertIn("METALGUARD_BIN", proc.stderr.decode())


class TimestampTest(unittest.TestCase):
    def test_rfc3339_with_nanoseconds(self):
        parsed = parse_timestamp("2026-11-25T23:51:46.123456789Z")
        self.assertEqual(parsed.utcoffset().total_seconds(), 0)
        self.assertEqual(parsed.microsecond, 123456)

    def test_offsets_and_epoch(self):
        self.assertEqual(
            epoch_seconds("2026-01-01T01:00:00+01:00"), epoch_seconds("2026-01-01T00:00:00Z")
        )
        self.assertEqual(epoch_seconds(0), 0.0)
        self.assertIsNone(parse_timestamp(None))

    def test_rejects_what_is_not_a_timestamp(self):
        for bad in ("yesterday", "2026-01-01T00:00:00", True, [1]):
            with self.assertRaises(ValueError):
                parse_timestamp(bad)


if __name__ == "__main__":
    unittest.main()
