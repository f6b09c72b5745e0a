#!/usr/bin/env bash
# Guard overhead inside real MLX on an NVIDIA GPU: the same workload
# unguarded and guarded (LD_PRELOAD of the inject library), alternating
# rounds in one run; prints the throughput ratios and names the GPU.
# Target: guarded >= 0.98 of unguarded.
#
#   bench/gpu-overhead/run.sh [ROUNDS]   (after: cargo build --release -p metal-guard-inject)
#
# Env: PYTHON (default python3), METALGUARD_INJECT_LIB (default
# target/release/libmetal_guard_inject.so).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PYTHON=${PYTHON:-python3}
LIB=${METALGUARD_INJECT_LIB:-$ROOT/target/release/libmetal_guard_inject.so}
ROUNDS=${1:-3}
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "SKIP: gpu-overhead: no NVIDIA GPU on this machine"
  exit 0
fi
[ -f "$LIB" ] || { echo "error: $LIB not found; run: cargo build --release -p metal-guard-inject"; exit 1; }
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
WORK=$(mktemp -d)
: >"$WORK/unguarded" && : >"$WORK/guarded"
# Warm-up (not counted): MLX compiles and caches its CUDA kernels on first use.
"$PYTHON" "$HERE/workload.py" --matmul-iters 20 --tokens 16 --churn-iters 100 >/dev/null
unguarded() {
  "$PYTHON" "$HERE/workload.py" | tail -n 1 | tee -a "$WORK/unguarded" | sed "s/^/round $1 unguarded: /"
}
guarded() {
  METALGUARD_BREADCRUMB_PATH="$WORK/breadcrumbs.log" LD_PRELOAD="$LIB" \
    "$PYTHON" "$HERE/workload.py" | tail -n 1 | tee -a "$WORK/guarded" | sed "s/^/round $1 guarded:   /"
}
# Alternate which goes first (ABBA), so drift (clocks, temperature) cancels.
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then unguarded "$round"; guarded "$round"; else guarded "$round"; unguarded "$round"; fi
done
grep -q "GUARD_HOOKED.*cuGetProcAddress" "$WORK/breadcrumbs.log" || { echo "error: the guarded runs never activated the CUDA hooks"; exit 1; }
"$PYTHON" - "$WORK/unguarded" "$WORK/guarded" "$GPU" <<'PY'
import json, statistics, sys
load = lambda p: [json.loads(l) for l in open(p) if l.strip()]
u, g, gpu = load(sys.argv[1]), load(sys.argv[2]), sys.argv[3]
parts, worst = [], None
for key, label, unit in (("matmul_per_s", "matmul loop", "matmul/s"),
                         ("tokens_per_s", "generation loop", "tok/s"),
                         ("churn_per_s", "alloc churn, cache off", "alloc/s")):
    ratio = statistics.median(gr[key] / ur[key] for ur, gr in zip(u, g))
    mu = statistics.median(r[key] for r in u)
    mg = statistics.median(r[key] for r in g)
    parts.append(f"{label}: unguarded={mu:.1f} guarded={mg:.1f} {unit} ratio={ratio:.3f}")
    if key != "churn_per_s":
        worst = ratio if worst is None else min(worst, ratio)
print(f"gpu-overhead on {gpu} ({len(u)} alternating rounds, median of per-round guarded/unguarded ratios): " + " | ".join(parts))
print(f"gpu-overhead: workload ratio (matmul + generation, worst of the two) = {worst:.3f} (target >= 0.98): {'met' if worst >= 0.98 else 'NOT met'}")
PY
