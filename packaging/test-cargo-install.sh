#!/usr/bin/env bash
# The documented `cargo install` path (docs/install.md), checked end to end:
# install both executables into a scratch root, put the library where the
# launcher looks (<root>/lib/metal_guard/), and run `mlx-safe-python --check`.
# Reuses target/release, so after `cargo build --release --workspace` it links nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "cargo install test FAILED: $*" >&2; exit 1; }

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
home="$root/home" reports="$root/reports"
mkdir -p "$home" "$reports"

cargo install --locked --quiet --path . --root "$root" --target-dir target
for exe in metal-guard mlx-safe-python; do
  [ -x "$root/bin/$exe" ] || fail "cargo install did not install $exe"
done

cargo build --release --locked --quiet -p metal-guard-inject
install -d "$root/lib/metal_guard"
install -m 0644 target/release/libmetal_guard_inject.so "$root/lib/metal_guard/"

env -u METALGUARD_DYLIB -u LD_PRELOAD HOME="$home" METALGUARD_PANIC_REPORT_DIRS="$reports" \
  "$root/bin/mlx-safe-python" --check >/dev/null \
  || fail "mlx-safe-python --check after cargo install (run it by hand to see why)"

# Without the library step the launcher must refuse and name where it looked.
rm -rf "$root/lib/metal_guard"
if out="$(env -u METALGUARD_DYLIB HOME="$home" METALGUARD_PANIC_REPORT_DIRS="$reports" \
  "$root/bin/mlx-safe-python" -c pass 2>&1)"; then
  fail "mlx-safe-python ran without its library: $out"
fi
grep -q "lib/metal_guard" <<<"$out" || fail "the missing-library message does not name ../lib/metal_guard: $out"
echo "cargo install test passed"
