#!/usr/bin/env bash
# Build the metal-guard wheel: both executables as scripts, the injected library
# as data under <prefix>/lib/metal_guard/, and the pure-Python metal_guard package.
#
#   packaging/build-wheel.sh [--target aarch64-apple-darwin] [--out DIR]
#
# Without --target: a wheel for this Linux machine (development and CI).
# With --target aarch64-apple-darwin: the macOS arm64 wheel, cross-built with
# zig (`pip install maturin ziglang`, `cargo install cargo-zigbuild`).
#
# maturin builds only the root package's [[bin]]s; the injected library is a
# separate crate (inject/), so this script builds it first with the same cargo
# profile and target, then stages it where pyproject.toml's `data` points.
# The Linux wheel reuses target/release (after `cargo build --release
# --workspace` it costs no compilation); the macOS wheel's executables are
# built in target/maturin-zig (see below), the library in target/ as ring 3 does.
set -euo pipefail
cd "$(dirname "$0")/.."

target=""
out="target/wheels"
while [ $# -gt 0 ]; do
  case "$1" in
    --target) target="${2:?--target needs a value}"; shift 2 ;;
    --out) out="${2:?--out needs a value}"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "error: unknown argument '$1'; run packaging/build-wheel.sh --help" >&2; exit 64 ;;
  esac
done

command -v maturin >/dev/null || {
  echo "error: maturin is not installed; run: python3 -m pip install maturin ziglang" >&2
  exit 127
}

stage="target/wheel-data/metal_guard.data/data/lib/metal_guard"
rm -rf target/wheel-data
mkdir -p "$stage"

case "$target" in
  "")
    cargo build --release -p metal-guard-inject
    lib="target/release/libmetal_guard_inject.so"
    maturin_args=()
    ;;
  *-apple-darwin)
    command -v cargo-zigbuild >/dev/null || {
      echo "error: cargo-zigbuild is not installed; run: cargo install --locked cargo-zigbuild" >&2
      exit 127
    }
    # macOS 11 is the first release on Apple Silicon; maturin tags the wheel with it.
    export MACOSX_DEPLOYMENT_TARGET="${MACOSX_DEPLOYMENT_TARGET:-11.0}"
    cargo zigbuild --release --target "$target" -p metal-guard-inject
    lib="target/$target/release/libmetal_guard_inject.dylib"
    # maturin's zig linker set-up and cargo-zigbuild's fingerprint the same
    # dependency files differently: sharing target/ makes each rebuild all of
    # them after the other. Its own folder builds once per machine, then reuses.
    maturin_args=(--zig --target "$target" --target-dir target/maturin-zig)
    ;;
  *)
    echo "error: unsupported target '$target' (supported: this Linux host, aarch64-apple-darwin)" >&2
    exit 64
    ;;
esac

[ -f "$lib" ] || { echo "error: $lib was not built; run cargo build -p metal-guard-inject to see why" >&2; exit 1; }
cp "$lib" "$stage/"

maturin build --release "${maturin_args[@]}" --out "$out"
