#!/usr/bin/env bash
# The CUDA backend inside real MLX on a real NVIDIA GPU.
#
#   tests/gpu/run.sh            (after: cargo build --release -p metal-guard-inject)
#
# Needs: an NVIDIA GPU, python3 with `mlx[cuda13]` (or cuda12) importable.
# Skips with a message (exit 0) where there is none, as in CI.
# Env: PYTHON (default python3), METALGUARD_INJECT_LIB (default: the built
# target/{release,debug}/libmetal_guard_inject.so), METALGUARD_GPU_WORKDIR
# (default: a temporary directory; logs and breadcrumbs stay there).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PYTHON=${PYTHON:-python3}
LIB=${METALGUARD_INJECT_LIB:-}
if [ -z "$LIB" ]; then
  for c in "$ROOT/target/release/libmetal_guard_inject.so" "$ROOT/target/debug/libmetal_guard_inject.so"; do
    if [ -f "$c" ]; then LIB=$c; break; fi
  done
fi
WORK=${METALGUARD_GPU_WORKDIR:-$(mktemp -d)}
mkdir -p "$WORK"

skip() { echo "SKIP: CUDA GPU suite: $*"; exit 0; }
command -v nvidia-smi >/dev/null 2>&1 || skip "no nvidia-smi, so no NVIDIA GPU on this machine"
nvidia-smi -L >/dev/null 2>&1 || skip "nvidia-smi sees no GPU"
"$PYTHON" -c "import mlx.core" >/dev/null 2>&1 || skip "$PYTHON cannot import mlx; install it with: pip install 'mlx[cuda13]'"
"$PYTHON" "$HERE/workloads.py" probe || skip "MLX found no usable CUDA GPU"
if [ -z "$LIB" ] || [ ! -f "$LIB" ]; then
  echo "FAIL: the inject library was not found; run: cargo build --release -p metal-guard-inject (or set METALGUARD_INJECT_LIB)"
  exit 1
fi

GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
GPU_MIB=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -1 | tr -dc 0-9)
echo "GPU: $GPU_NAME, ${GPU_MIB} MiB; library: $LIB; logs: $WORK"

failed=0
# run_case NAME REQUEST_BYTES ENV... -- WORKLOAD ARGS...
run_case() {
  local name=$1 request=$2; shift 2
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  local log="$WORK/$name.breadcrumbs.log" out="$WORK/$name.out"
  rm -f "$log"
  echo "== $name: $*"
  local start=$SECONDS
  env METALGUARD_BREADCRUMB_PATH="$log" "${envs[@]}" LD_PRELOAD="$LIB" \
    timeout 300 "$PYTHON" "$HERE/workloads.py" "$@" >"$out" 2>&1
  local rc=$?
  sed 's/^/  | /' "$out" | tail -n 12
  echo "  ($((SECONDS - start)) s, exit $rc)"
  "$PYTHON" "$HERE/check.py" "$name" "$log" "$out" "$rc" --request "$request" || failed=$((failed + 1))
}

# Cadence with test-sized intervals: a load less than 1 s after an unload waits.
run_case load_cycles 0 METALGUARD_BURST_QUIET_MS=300 METALGUARD_CADENCE_UNLOAD_INTERVAL_S=1 \
  METALGUARD_CADENCE_INTERVAL_S=0.5 -- load_cycles --cycles 5 --gap 0.8
run_case kv_growth 0 -- kv_growth
run_case oversize $((3 << 30)) METALGUARD_MAX_SINGLE_ALLOC_GB=2 -- oversize --bytes $((3 << 30))
# Default ceiling: half the device's memory; ask for 60% of it.
REQUEST=$((GPU_MIB * 60 / 100 / 4 * 4 * 1048576))
run_case oversize_default "$REQUEST" -- oversize --bytes "$REQUEST"
run_case oversize_observer 0 METALGUARD_MAX_SINGLE_ALLOC_GB=2 METALGUARD_MODE=observer -- oversize --bytes $((3 << 30))
run_case inflight_exit 0 -- inflight_exit
run_case inflight_exit_libc 0 -- inflight_exit --libc-exit

if [ "$failed" -eq 0 ]; then
  echo "GPU suite: all cases passed on $GPU_NAME"
else
  echo "GPU suite: $failed case(s) failed on $GPU_NAME"
  exit 1
fi
