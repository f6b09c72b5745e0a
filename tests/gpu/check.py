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
    tags = [t for t, _, _ in crumbs]
    summary = next((f for t, _, f in crumbs if t == "CUDA_SUMMARY"), {})
    n = lambda k: int(summary.get(k, "-1"))  # noqa: E731
    c = Checker(a.case)

    c.check(a.exit_code == 0, f"exit code {a.exit_code}")
    c.check("CUDA_HOOKS" in tags, "breadcrumb CUDA_HOOKS: the dlsym/cuGetProcAddress chain activated in MLX")
    c.check(bool(summary), "breadcrumb CUDA_SUMMARY written at exit")
    c.check(n("hook_panics") == 0, f"no panic inside the hooks (hook_panics={summary.get('hook_panics')})")
    ceiling = next((f for t, _, f in crumbs if t == "CUDA_CEILING"), {})
    c.check("device_bytes" in ceiling, f"ceiling set from the device's memory: {ceiling}")
    if summary:
        print(
            "  info: allocations={allocations} frees={frees} peak_device_bytes={peak_device_bytes} "
            "largest_bytes={largest_bytes} refusals={refusals} graph_launches={graph_launches} "
            "host_fns={host_fns} stream_syncs={stream_syncs} in_flight_at_exit={in_flight_at_exit} "
            "drain={drain}".format_map(summary)
        )

    if a.case == "load_cycles":
        m = re.search(r"weights (\d+) bytes", out)
        weights = int(m.group(1)) if m else 1 << 62
        c.check("load_cycles: ok" in out, "six load/run/unload cycles finished")
        c.check(n("allocations") >= 6 * 8, f"allocations seen: {n('allocations')}")
        c.check(n("frees") > 0, f"frees seen: {n('frees')}")
        c.check(n("peak_device_bytes") >= weights, f"peak {n('peak_device_bytes')} >= weights {weights}")
        c.check(n("refusals") == 0, "nothing refused")
    elif a.case == "kv_growth":
        m = re.search(r"cache (\d+) bytes", out)
        cache = int(m.group(1)) if m else 1 << 62
        c.check("kv_growth: ok" in out, "growth loop finished")
        c.check(n("largest_bytes") >= cache // 2, f"largest allocation {n('largest_bytes')} >= one cache {cache // 2}")
        c.check(n("refusals") == 0, "nothing refused")
    elif a.case in ("oversize", "oversize_default"):
        refuse = [f for t, _, f in crumbs if t == "CUDA_REFUSE"]
        c.check("caught RuntimeError" in out and "out of memory" in out, "MLX raised RuntimeError ...out of memory, caught in Python")
        c.check("process goes on, later GPU work ran" in out, "later GPU work ran in the same process")
        c.check(any(int(f.get("bytes", 0)) >= a.request for f in refuse), f"breadcrumb CUDA_REFUSE for >= {a.request} bytes")
        c.check(n("refusals") >= 1, f"refusals={n('refusals')}")
    elif a.case == "oversize_observer":
        c.check("allocated (not refused)" in out, "observer mode let the allocation through")
        c.check("CUDA_WOULD_REFUSE" in tags, "breadcrumb CUDA_WOULD_REFUSE")
        c.check(n("refusals") == 0, "nothing refused")
    elif a.case == "inflight_exit":
        c.check("exiting without waiting" in out, "work queued, script returned at once")
        pending = n("in_flight_at_exit")
        if pending > 0:
            post = next((f for t, _, f in crumbs if t == "SUBPROC_POST"), {})
            c.check("SUBPROC_PRE" in tags, f"exit drain PRE breadcrumb ({pending} in flight)")
            c.check(post.get("left") == "0", f"exit drain POST: everything completed before teardown ({post})")
        else:
            print("  info: MLX had already completed its work when the exit handler ran (in_flight_at_exit=0)")
    print(f"{'PASS' if c.failed == 0 else 'FAIL'}: {a.case}")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
