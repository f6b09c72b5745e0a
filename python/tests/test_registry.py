"""check_known_panic_model() against `metal-guard models MODEL --json`."""

import unittest

import metal_guard

from support import IsolatedStateTest

PANIC_MODEL = "mlx-community/gemma-4-31b-it-8bit"


class KnownPanicModelTest(IsolatedStateTest):
    def test_the_panic_tier_model_is_known(self):
        entry = metal_guard.check_known_panic_model(PANIC_MODEL)
        self.assertIsNotNone(entry)
        self.assertEqual(entry["tier"], "panic")
        self.assertEqual(entry["model_id"], PANIC_MODEL)
        self.assertTrue(entry["recommendation"])
        self.assertEqual(entry["recommendation"], entry["advice"])
        self.assertIn("mlx-community/gemma-4-26b-a4b-it-4bit", entry["alternatives"])

    def test_unreported_models_are_none(self):
        self.assertIsNone(metal_guard.check_known_panic_model("mlx-community/gemma-4-26b-a4b-it-4bit"))
        self.assertIsNone(metal_guard.check_known_panic_model("someone/never-reported"))

    def test_lookup_agrees_with_the_cli(self):
        # Whatever matching rule the registry uses (it ignores case), Python applies the same one.
        for model in (PANIC_MODEL, PANIC_MODEL.upper(), PANIC_MODEL + "-mlx", "x"):
            code, data = self.cli_json("models", model, "--json")
            entry = metal_guard.check_known_panic_model(model)
            self.assertEqual(entry is not None, data["model"]["known"] is not None, model)
            self.assertEqual(code, 2 if entry is not None else 0, model)

    def test_warn_once_per_model(self):
        with self.assertLogs("metal_guard", level="WARNING") as logs:
            self.assertTrue(metal_guard.warn_if_known_panic_model(PANIC_MODEL))
            self.assertTrue(metal_guard.warn_if_known_panic_model(PANIC_MODEL))
        self.assertEqual(len(logs.records), 1)
        self.assertIn(PANIC_MODEL, logs.output[0])
        self.assertFalse(metal_guard.warn_if_known_panic_model("someone/never-reported"))


if __name__ == "__main__":
    unittest.main()
