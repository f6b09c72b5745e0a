#!/usr/bin/env bash
# The wheel test (run by .ci/run): build the Linux wheel, install it into a fresh
# virtual environment with no network, and use it the way a user does.
#
#   packaging/test-wheel.sh [WHEEL]
#
# Without WHEEL it builds one with packaging/build-wheel.sh (reusing target/release).
# Checks, each failing with a message naming what broke:
#   - the wheel's files: both executables, the injected library, metal_guard/*.py
#   - pip install --no-index into a fresh venv (no network)
#   - metal-guard --version prints the wheel's version
#   - the injected library lands at <venv>/lib/metal_guard/, where mlx-safe-python looks
#   - mlx-safe-python --check (the handshake reaches the venv's interpreter)
#   - python -c "import metal_guard; print(metal_guard.evaluate_panic_cooldown().exit_code)"
#   - the Python tests (python/tests) against the installed package and the shared fixtures
#   - pip uninstall removes every file the wheel installed
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

fail() { echo "wheel test FAILED: $*" >&2; exit 1; }
step() { printf -- '-- %s\n' "$*"; }

python="${PYTHON:-python3}"

if [ $# -ge 1 ]; then
  wheel="$1"
else
  out="target/wheels/linux"
  rm -rf "$out"
  packaging/build-wheel.sh --out "$out"
  wheel="$(ls "$out"/metal_guard-*.whl)"
fi
[ -f "$wheel" ] || fail "no wheel at $wheel"
version="$(basename "$wheel" | cut -d- -f2)"
step "wheel $wheel (version $version)"

step "wheel contents"
contents="$("$python" -m zipfile -l "$wheel")"
for member in \
  "metal_guard-$version.data/scripts/metal-guard" \
  "metal_guard-$version.data/scripts/mlx-safe-python" \
  "metal_guard-$version.data/data/lib/metal_guard/libmetal_guard_inject.so" \
  "metal_guard/__init__.py" \
  "metal_guard/_cli.py" \
  "metal_guard_cli/__main__.py"; do
  grep -qF "$member" <<<"$contents" || fail "the wheel lacks $member"
done
unexpected="$("$python" - "$wheel" "$version" <<'PY'
import re, sys, zipfile
wheel, version = sys.argv[1], re.escape(sys.argv[2])
allowed = [
    r"metal_guard/[a-z_]+\.py",
    r"metal_guard_cli/[a-z_]+\.py",
    r"metal_guard-%s\.dist-info/.+" % version,
    r"metal_guard-%s\.data/scripts/(metal-guard|mlx-safe-python)" % version,
    r"metal_guard-%s\.data/data/lib/metal_guard/libmetal_guard_inject\.so" % version,
]
for name in zipfile.ZipFile(wheel).namelist():
    if not any(re.fullmatch(p, name) for p in allowed):
        print(name)
PY
)"
[ -z "$unexpected" ] || fail "the wheel carries unexpected files: $unexpected"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
# No space in the path: on Linux LD_PRELOAD splits on spaces, so a library
# under such a path cannot be preloaded (mlx-safe-python --check says so).
# macOS's DYLD_INSERT_LIBRARIES splits on colons only.
venv="$scratch/venv"
home="$scratch/home"
reports="$scratch/reports"
mkdir -p "$home" "$reports"

step "fresh venv, pip install --no-index"
"$python" -m venv "$venv"
PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
  "$venv/bin/python" -m pip install --quiet --no-index --no-deps "$wheel" \
  || fail "pip install --no-index $wheel"

# A clean user: empty HOME, no panic reports, nothing inherited from the caller.
run_env=(env -u METALGUARD_BIN -u METALGUARD_DYLIB -u LD_PRELOAD -u MLX_SAFE_PYTHON_BIN
  -u VIRTUAL_ENV HOME="$home" METALGUARD_PANIC_REPORT_DIRS="$reports"
  PATH="$venv/bin:/usr/bin:/bin")

step "metal-guard --version"
got="$("${run_env[@]}" "$venv/bin/metal-guard" --version)" || fail "metal-guard --version exited non-zero"
[ "$got" = "metal-guard $version" ] || fail "metal-guard --version printed '$got', expected 'metal-guard $version'"

step "injected library in the installed layout"
[ -f "$venv/lib/metal_guard/libmetal_guard_inject.so" ] \
  || fail "$venv/lib/metal_guard/libmetal_guard_inject.so is missing"

step "mlx-safe-python --check"
"${run_env[@]}" "$venv/bin/mlx-safe-python" --check \
  || fail "mlx-safe-python --check exited $? (the guard did not reach the venv's python)"

step "import metal_guard; evaluate_panic_cooldown().exit_code"
got="$(cd "$scratch" && "${run_env[@]}" "$venv/bin/python" -c \
  "import metal_guard; print(metal_guard.evaluate_panic_cooldown().exit_code)")" \
  || fail "python -c 'import metal_guard ...' exited non-zero"
[ "$got" = "0" ] || fail "evaluate_panic_cooldown().exit_code printed '$got' with no panic reports, expected 0"

step "python -m metal_guard_cli --version (the Python tool's fallback name)"
got="$(cd "$scratch" && "${run_env[@]}" "$venv/bin/python" -m metal_guard_cli --version)" \
  || fail "python -m metal_guard_cli --version exited non-zero"
[ "$got" = "metal-guard $version" ] || fail "python -m metal_guard_cli --version printed '$got'"

step "python tests against the installed package"
(cd "$scratch" && "${run_env[@]}" METALGUARD_TEST_FIXTURES="$repo/../shared/fixtures" \
  METALGUARD_TEST_EXPECT_INSTALLED="$venv" \
  "$venv/bin/python" -m unittest discover -s "$repo/python/tests" -t "$repo/python/tests") \
  || fail "python -m unittest (python/tests) against the installed wheel"

step "pip uninstall leaves nothing behind"
"$venv/bin/python" -m pip uninstall --quiet --yes metal-guard || fail "pip uninstall metal-guard"
for leftover in "$venv/bin/metal-guard" "$venv/bin/mlx-safe-python" "$venv/lib/metal_guard"; do
  [ ! -e "$leftover" ] || fail "pip uninstall left $leftover"
done
if compgen -G "$venv/lib/python*/site-packages/metal_guard*" >/dev/null; then
  fail "pip uninstall left $(compgen -G "$venv/lib/python*/site-packages/metal_guard*" | head -1)"
fi

echo "wheel test passed: $wheel"
