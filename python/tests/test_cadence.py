"""require_cadence_clear() against `metal-guard cadence`: one load per interval, across processes."""

import os
import subprocess
import sys
import time
import unittest

import metal_guard

from support import IsolatedStateTest

MODEL = "mlx-community/gemma-4-26b-a4b-it-4bit"
OTHER = "mlx-community/Qwen3-8B-4bit"


class RequireCadenceClearTest(IsolatedStateTest):
    def test_second_load_within_the_interval_is_refused(self):
        self.assertIsNone(metal_guard.require_cadence_clear(MODEL))
        before = time.time()
        with self.assertRaises(metal_guard.CadenceViolation) as caught:
            metal_guard.require_cadence_clear(MODEL)
        violation = caught.exception
        self.assertIsInstance(violation, RuntimeError)
        self.assertEqual(violation.model_id, MODEL)
        self.assertEqual(violation.min_interval, 180.0)
        self.assertLessEqual(violation.last_ts, before + 1.0)
        self.assertGreater(violation.last_ts, before - 60.0)
        self.assertGreater(violation.wait_sec, 120.0)
        self.assertLessEqual(violation.wait_sec, 180.0)
        self.assertIn(MODEL, str(violation))

    def test_other_models_and_zero_interval_pass(self):
        metal_guard.require_cadence_clear(MODEL)
        self.assertIsNone(metal_guard.require_cadence_clear(OTHER))
        self.assertIsNone(metal_guard.require_cadence_clear(MODEL, min_interval_sec=0))

    def test_custom_interval_is_reported(self):
        metal_guard.require_cadence_clear(MODEL, min_interval_sec=600)
        with self.assertRaises(metal_guard.CadenceViolation) as caught:
            metal_guard.require_cadence_clear(MODEL, min_interval_sec=600)
        self.assertEqual(caught.exception.min_interval, 600.0)
        self.assertGreater(caught.exception.wait_sec, 500.0)

    def test_cross_model_interval(self):
        metal_guard.require_cadence_clear(MODEL, cross_model_interval_sec=600)
        with self.assertRaises(metal_guard.CrossModelCadenceViolation) as caught:
            metal_guard.require_cadence_clear(OTHER, cross_model_interval_sec=600)
        violation = caught.exception
        self.assertIsInstance(violation, metal_guard.CadenceViolation)
        self.assertEqual(violation.model_id, OTHER)
        self.assertEqual(violation.last_model, MODEL)
        self.assertAlmostEqual(violation.cross_model_interval, 600.0, delta=2.0)

    def test_racing_processes_admit_exactly_one(self):
        # The Python tool let 7-8 of 8 racing processes through (compat.md, defect 2).
        code = (
            "import sys, metal_guard\n"
            "sys.stdin.read()\n"  # start together: released when the parent closes stdin
            "try:\n"
            "    metal_guard.require_cadence_clear(%r)\n"
            "    print('clear')\n"
            "except metal_guard.CadenceViolation:\n"
            "    print('refused')\n" % MODEL
        )
        child_env = dict(os.environ)
        child_env["PYTHONPATH"] = os.path.dirname(os.path.dirname(metal_guard.__file__))
        children = [
            subprocess.Popen(
                [sys.executable, "-c", code],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=child_env,
            )
            for _ in range(8)
        ]
        for child in children:
            child.stdin.close()
            child.stdin = None  # communicate() below only reads
        answers = []
        for child in children:
            out, err = child.communicate(timeout=60)
            self.assertEqual(child.returncode, 0, err.decode())
            answers.append(out.decode().strip())
        self.assertEqual(sorted(answers), ["clear"] + ["refused"] * 7)


if __name__ == "__main__":
    unittest.main()
