"""Checks one GPU-suite case from its output and breadcrumbs (tests/gpu/run.sh).

Usage: check.py CASE BREADCRUMB_LOG OUTPUT_FILE EXIT_CODE [--request BYTES]
Prints one PASS/FAIL line per check and exits 1 if any failed.
"""

import argparse
import re
import sys

LINE = re.compile(r"^\[(?P<time>[^\]]+)\] (?P<tag>[^:]+): (?P<payload>[^|]*?)(?: \| (?P<fields>.*))?$")


def read_crumbs(path):
    crumbs = []
    try:
        with open(path, encoding="utf-8") as f:
            for raw in f:
                m = LINE.match(raw.rstrip("\n"))
                if not m:
                    continue
                fields = dict(kv.split("=", 1) for kv in (m["fields"] or "").split() if "=" in kv)
                crumbs.append((m["tag"], m["payload"], fields))
    except FileNotFoundError:
        pass
    return crumbs


class Checker:
    def __init__(self, case):
        self.case = case
        self.failed = 0

    def check(self, ok, what):
        print(f"  {'PASS' if ok else 'FAIL'} {self.case}: {what}")
        if not ok:
            self.failed += 1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("case")
    p.add_argument("log")
    p.add_argument("output")
    p.add_argument("exit_code", type=int)
    p.add_argument("--request", type=int, default=0)
    a = p.parse_args()
    out = open(a.output, encoding="utf-8", errors="replace").read()
    crumbs = read_crumbs(a.log)

    def first(tag, payload=None):
        return next((f for t, p, f in crumbs if t == tag and (payload is None or p == payload)), {})

    def count(tag, payload=None):
        return sum(1 for t, p, _ in crumbs if t == tag and (payload is None or p == payload))

    summary = first("GUARD_SUMMARY")
    cuda = first("CUDA_SUMMARY")
    n = lambda k: int(summary.get(k, "-1"))  # noqa: E731
    c = Checker(a.case)

    c.check(a.exit_code == 0, f"exit code {a.exit_code}")
    hooked = [p for t, p, _ in crumbs if t == "GUARD_HOOKED"]
    c.check(
        "the driver's own cuGetProcAddress wrapped" in hooked,
        f"GUARD_HOOKED: the cuGetProcAddress chain activated inside MLX ({'; '.join(hooked)})",
    )
    c.check(bool(summary) and bool(cuda), "GUARD_SUMMARY and CUDA_SUMMARY written at exit")
    c.check(n("hook_faults") == 0, f"no fault inside the hooks (hook_faults={summary.get('hook_faults')})")
    ceiling = first("GUARD_CEILING")
    c.check(int(ceiling.get("working_set", "0")) > 0, f"ceiling from the device's memory: {ceiling}")
    if summary:
        keys = ("allocations", "refusals", "loads", "unloads", "cadence_stalls", "commits", "completions",
                "peak_bytes", "largest", "live_bytes")
        print("  info: GUARD_SUMMARY " + " ".join(f"{k}={summary.get(k)}" for k in keys))
    if cuda:
        keys = ("graph_launches", "host_fns", "stream_syncs", "host_allocations", "in_flight_at_exit", "drain")
        print("  info: CUDA_SUMMARY " + " ".join(f"{k}={cuda.get(k)}" for k in keys))

    if a.case == "load_cycles":
        m = re.search(r"weights (\d+) bytes", out)
        weights = int(m.group(1)) if m else 1 << 62
        cycles = len(re.findall(r"^cycle \d+: loaded", out, re.M))
        stall = first("GUARD_CADENCE", "too_soon")
        c.check("load_cycles: ok" in out, f"{cycles} load/run/unload cycles finished")
        c.check(n("allocations") >= cycles * 8, f"allocations seen: {n('allocations')}")
        c.check(n("peak_bytes") >= weights, f"peak {n('peak_bytes')} >= weights {weights}")
        c.check(n("loads") >= cycles and count("SUBPROC_PRE", "model_load") >= cycles,
                f"every load recognised (loads={n('loads')}, model_load PRE lines={count('SUBPROC_PRE', 'model_load')})")
        # A burst of frees is logged as a `release_burst` section at once and
        # counted as an unload when the next load confirms it, so the last
        # cycle's unload (no load after it) is logged but not counted.
        c.check(n("unloads") >= cycles - 1 and count("SUBPROC_PRE", "release_burst") >= cycles - 1,
                f"unloads recognised (unloads={n('unloads')}, release_burst PRE lines={count('SUBPROC_PRE', 'release_burst')})")
        c.check(stall.get("action") == "stalled" and n("cadence_stalls") >= cycles - 1,
                f"loads too soon after an unload were stalled (cadence_stalls={n('cadence_stalls')}, {stall})")
        c.check(n("refusals") == 0, "nothing refused")
    elif a.case == "kv_growth":
        m = re.search(r"cache (\d+) bytes", out)
        cache = int(m.group(1)) if m else 1 << 62
        c.check("kv_growth: ok" in out, "growth loop finished")
        c.check(n("largest") >= cache // 2, f"largest allocation {n('largest')} >= one cache {cache // 2}")
        c.check(n("commits") > 0 and n("commits") == n("completions"), "every commit signalled completion")
        c.check(n("refusals") == 0, "nothing refused")
    elif a.case in ("oversize", "oversize_default"):
        pre = first("SUBPROC_PRE", "allocation_refusal")
        post = first("SUBPROC_POST", "allocation_refusal")
        c.check("caught RuntimeError" in out and "out of memory" in out,
                "MLX raised RuntimeError ...out of memory, caught in Python")
        c.check("process goes on, later GPU work ran" in out, "later GPU work ran in the same process")
        c.check(int(pre.get("bytes", "0")) >= a.request and post.get("action") == "returned_nil",
                f"refusal breadcrumbs for >= {a.request} bytes: {pre}")
        c.check(n("refusals") >= 1, f"refusals={n('refusals')}")
    elif a.case == "oversize_observer":
        c.check("allocated (not refused)" in out, "observer mode let the allocation through")
        c.check(first("SUBPROC_POST", "allocation_refusal").get("action") == "observed_only",
                "breadcrumb: would have refused (observed_only)")
    elif a.case in ("inflight_exit", "inflight_exit_libc"):
        c.check("exiting without waiting" in out, "work queued, script returned at once")
        pending = int(cuda.get("in_flight_at_exit", "0"))
        if pending > 0:
            post = first("SUBPROC_POST", "exit_drain")
            c.check(bool(first("SUBPROC_PRE", "exit_drain")), f"exit drain PRE breadcrumb ({pending} in flight)")
            c.check(post.get("outcome") == "drained", f"exit drain POST: completed before teardown ({post})")
        else:
            print("  info: nothing was in flight when the guard's exit handler ran (MLX had finished or synchronized)")
    print(f"{'PASS' if c.failed == 0 else 'FAIL'}: {a.case}")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
