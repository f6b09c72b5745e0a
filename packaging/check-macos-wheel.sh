#!/usr/bin/env bash
# Check the macOS arm64 wheel by reading its files (run by .ci/run; no Mac needed).
#
#   packaging/check-macos-wheel.sh WHEEL [MACHO_CHECK]
#
# MACHO_CHECK defaults to target/release/macho-check (the macOS helper's checker,
# `cargo build --release -p metal-guard-macho --bin macho-check`). Checks:
#   - the wheel's tag names the platform honestly: py3-none-macosx_11_0_arm64
#   - it carries exactly the two executables and the injected library, plus metal_guard/*.py
#   - every Mach-O file inside passes macho-check (arm64, system libraries only,
#     no flat-namespace binds, ad-hoc signature; the dylib's interpose tuples)
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "macOS wheel check FAILED: $*" >&2; exit 1; }

wheel="${1:?usage: packaging/check-macos-wheel.sh WHEEL [MACHO_CHECK]}"
checker="${2:-target/release/macho-check}"
[ -f "$wheel" ] || fail "no wheel at $wheel; build it with packaging/build-wheel.sh --target aarch64-apple-darwin"
[ -x "$checker" ] || fail "no checker at $checker; build it with cargo build --release -p metal-guard-macho --bin macho-check"

name="$(basename "$wheel")"
version="$(cut -d- -f2 <<<"$name")"
case "$name" in
  metal_guard-"$version"-py3-none-macosx_11_0_arm64.whl) ;;
  *) fail "$name: expected the tag py3-none-macosx_11_0_arm64 (macOS 11+, Apple Silicon)" ;;
esac

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
python3 -m zipfile -e "$wheel" "$scratch"

data="$scratch/metal_guard-$version.data"
scripts=("$data/scripts/metal-guard" "$data/scripts/mlx-safe-python")
dylib="$data/data/lib/metal_guard/libmetal_guard_inject.dylib"
for f in "${scripts[@]}" "$dylib" "$scratch/metal_guard/__init__.py"; do
  [ -f "$f" ] || fail "the wheel lacks ${f#"$scratch"/}"
done
extra="$(cd "$scratch" && find . -type f \
  ! -path "./metal_guard/*.py" ! -path "./metal_guard_cli/*.py" ! -path "./metal_guard-$version.dist-info/*" \
  ! -path "./metal_guard-$version.data/scripts/metal-guard" \
  ! -path "./metal_guard-$version.data/scripts/mlx-safe-python" \
  ! -path "./metal_guard-$version.data/data/lib/metal_guard/libmetal_guard_inject.dylib")"
[ -z "$extra" ] || fail "the wheel carries unexpected files: $extra"

"$checker" executable "${scripts[@]}"
"$checker" dylib "$dylib"
echo "macOS wheel check passed: $name"
