"""evaluate_panic_cooldown() against `metal-guard panic-gate --json` on the shared fixtures."""

import datetime
import os
import re
import unittest

import metal_guard
from metal_guard.cooldown import verdict_from_json

from support import PANICS, IsolatedStateTest

RECENT_IPS_SOURCE = "64-ips-reconstructed-iogpu-completememory-550-mlx3186-ronm92130.ips"


def write_recent_panic(reports_dir, minutes_ago):
    """A copy of a real IOGPU .ips fixture whose header says it happened `minutes_ago`,
    named the way macOS names panic reports (discovery goes by name). Use a
    half minute: verdict reasons say "30 min ago", stable for 30 s either way."""
    with open(os.path.join(PANICS, RECENT_IPS_SOURCE), encoding="utf-8") as fh:
        text = fh.read()
    when = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=minutes_ago)
    stamp = when.strftime("%Y-%m-%d %H:%M:%S.00 +0000")
    text, count = re.subn(r'"timestamp":"[^"]*"', '"timestamp":"%s"' % stamp, text, count=1)
    assert count == 1, "the .ips fixture has no header timestamp"
    name = when.strftime("panic-full-%Y-%m-%d-%H%M%S.000.ips")
    with open(os.path.join(reports_dir, name), "w", encoding="utf-8") as fh:
        fh.write(text)
    return when


class EvaluatePanicCooldownTest(IsolatedStateTest):
    def assert_matches_cli(self, verdict):
        code, data = self.cli_json("panic-gate", "--json")
        self.assertEqual(code, verdict.exit_code)
        self.assertEqual(verdict, verdict_from_json(data))

    def test_no_reports_proceeds(self):
        verdict = metal_guard.evaluate_panic_cooldown()
        self.assertEqual(verdict.exit_code, 0, verdict.reason)
        self.assertEqual((verdict.recent_panics_24h, verdict.recent_panics_72h), (0, 0))
        self.assertIsNone(verdict.cooldown_until)
        self.assertFalse(verdict.blocked)
        self.assert_matches_cli(verdict)

    def test_old_fixture_reports_do_not_block(self):
        # The corpus is months old: it must be read, and must not block today.
        os.environ["METALGUARD_PANIC_REPORT_DIRS"] = PANICS
        verdict = metal_guard.evaluate_panic_cooldown()
        self.assertEqual(verdict.exit_code, 0, verdict.reason)
        self.assert_matches_cli(verdict)

    def test_one_recent_panic_gives_a_cooldown_until_a_utc_time(self):
        when = write_recent_panic(self.reports, minutes_ago=30.5)
        verdict = metal_guard.evaluate_panic_cooldown()
        self.assertEqual(verdict.exit_code, 2, verdict.reason)
        self.assertTrue(verdict.blocked)
        self.assertEqual(verdict.recent_panics_24h, 1)
        self.assertEqual(verdict.recent_panics_72h, 1)
        self.assertIsNotNone(verdict.cooldown_until)
        self.assertEqual(verdict.cooldown_until.utcoffset(), datetime.timedelta(0))
        expected = when.replace(microsecond=0) + datetime.timedelta(hours=2)
        self.assertLess(abs((verdict.cooldown_until - expected).total_seconds()), 1.0)
        self.assert_matches_cli(verdict)

    def test_kill_switch_proceeds(self):
        write_recent_panic(self.reports, minutes_ago=30.5)
        os.environ["METALGUARD_PANIC_GATE_DISABLED"] = "1"
        verdict = metal_guard.evaluate_panic_cooldown()
        self.assertEqual(verdict.exit_code, 0, verdict.reason)
        self.assertEqual(verdict.kind, "disabled")
        self.assert_matches_cli(verdict)

    def test_gate_failure_is_exit_code_3_not_an_exception(self):
        os.environ["METALGUARD_BIN"] = os.path.join(self.tmp, "missing", "metal-guard")
        verdict = metal_guard.evaluate_panic_cooldown()
        self.assertEqual(verdict.exit_code, 3)
        self.assertEqual(verdict.kind, "gate_failed")
        self.assertIn("METALGUARD_BIN", verdict.reason)


if __name__ == "__main__":
    unittest.main()
