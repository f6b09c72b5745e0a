"""parse_panic_reports() on the shared fixtures: the classification labels.tsv gives."""

import os
import shutil
import time
import unittest

import metal_guard

from support import PANICS, IsolatedStateTest, labels

REPO_EXAMPLES = os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "panic-reports")
)


class ParsePanicReportsTest(IsolatedStateTest):
    def stage_fixtures(self):
        """The corpus under the names macOS gives reports (`.txt` fixtures become `.panic`)."""
        staged = {}
        for name in labels():
            base, ext = os.path.splitext(name)
            target = "panic-full-%s%s" % (base, ".ips" if ext == ".ips" else ".panic")
            shutil.copy2(os.path.join(PANICS, name), os.path.join(self.reports, target))
            staged[target] = name
        return staged

    def test_every_fixture_classifies_as_labelled(self):
        staged = self.stage_fixtures()
        expected = labels()
        records = metal_guard.parse_panic_reports(self.reports)
        seen = {}
        for record in records:
            name = staged[os.path.basename(record["source_file"])]
            seen[name] = record["signature"]
            self.assertIsInstance(record["ts"], float)
            if record["signature"] == "unknown":
                self.assertIsNone(record["explanation"])
            else:
                self.assertTrue(record["explanation"], name)
        self.assertEqual(sorted(seen), sorted(expected))
        for name, signature in expected.items():
            self.assertEqual(seen[name], signature or "unknown", name)

    def test_facts_match_the_report_text(self):
        records = metal_guard.parse_panic_reports(REPO_EXAMPLES)
        self.assertTrue(records, "examples/panic-reports has reports")
        times = [r["ts"] for r in records]
        self.assertEqual(times, sorted(times, reverse=True), "newest first")
        by_file = {os.path.basename(r["source_file"]): r for r in records}
        ips = by_file["panic-full-2026-04-24-000000.000.ips"]
        self.assertEqual(ips["signature"], "prepare_count_underflow")
        self.assertEqual(ips["pid"], 50218)
        self.assertEqual(ips["process"], "Python")
        self.assertEqual(ips["source_line"], "IOGPUMemory.cpp:550")

    def test_since_ts_leaves_out_older_reports(self):
        records = metal_guard.parse_panic_reports(REPO_EXAMPLES)
        cut = sorted(r["ts"] for r in records)[len(records) // 2]
        newer = metal_guard.parse_panic_reports(REPO_EXAMPLES, since_ts=cut)
        self.assertEqual(
            sorted(r["source_file"] for r in newer),
            sorted(r["source_file"] for r in records if r["ts"] >= cut),
        )
        self.assertEqual(metal_guard.parse_panic_reports(REPO_EXAMPLES, since_ts=time.time() + 3600), [])

    def test_unreadable_folder_is_an_empty_list(self):
        self.assertEqual(metal_guard.parse_panic_reports(os.path.join(self.tmp, "missing")), [])

    def test_default_folders_come_from_the_environment(self):
        self.stage_fixtures()
        self.assertEqual(len(metal_guard.parse_panic_reports()), len(labels()))


if __name__ == "__main__":
    unittest.main()
