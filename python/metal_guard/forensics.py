"""Panic reports, found and classified by `metal-guard diagnose --json`."""

import os

from . import _cli
from ._timefmt import epoch_seconds


def parse_panic_reports(directory=None, *, since_ts=None):
    """Kernel panic reports, newest first, as dicts.

    `directory`: one folder to scan (default: `METALGUARD_PANIC_REPORT_DIRS`,
    else the macOS places, Retired/ included). `since_ts`: Unix seconds; older
    reports are left out. Unreadable folders give an empty list, as in the
    Python tool.

    Each dict has the Python tool's keys, `ts` (Unix seconds), `signature`
    (`prepare_count_underflow`, `pending_memory_set`, `remove_memory_object`,
    `non_pending_hash`, `iogpu_other`, or `unknown` for a panic Apple's GPU
    driver did not cause), `explanation` (plain words, `None` when unknown),
    `pid`, `source_file`, plus everything `diagnose --json` reports (`time`,
    `os_build`, `kernel_version`, `machine`, `iogpu_family`, `process`,
    `source_line`, `panic_line`, `upstream`, ...).
    """
    import time

    args = ["diagnose", "--json"]
    if directory is not None:
        args += ["--reports", os.fspath(directory)]
    if since_ts is not None:
        # --since is a window in hours; one extra second absorbs the time the CLI
        # takes to start, and the exact cut is made below on the report's own time.
        hours = (time.time() - float(since_ts) + 1.0) / 3600.0
        if hours <= 0:
            return []
        args += ["--since", repr(hours)]
    _code, data = _cli.run_json(args)
    try:
        reports = data["reports"]
        results = []
        for report in reports:
            ts = epoch_seconds(report.get("time"))
            if since_ts is not None and (ts is None or ts < since_ts):
                continue
            record = dict(report)
            record["ts"] = ts
            record["signature"] = report.get("signature") or "unknown"
            record["explanation"] = report.get("explanation")
            record["pid"] = report.get("pid")
            record["source_file"] = report["file"]
            results.append(record)
    except (KeyError, TypeError, ValueError) as exc:
        raise _cli.MetalGuardError(
            "`metal-guard diagnose --json` printed an unexpected answer (%s)" % (exc,)
        ) from None
    return results
