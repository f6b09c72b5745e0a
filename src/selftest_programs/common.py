# metal-guard selftest: shared part of the program (prepended to the
# platform part). Prints one line, METALGUARD_SELFTEST_RESULT {json}, last.
import ctypes
import json
import os
import sys

RESULT = {
    "pid": os.getpid(),
    "executable": sys.executable,
    "python_version": sys.version.split()[0],
    "handshake_path": os.environ.get("METALGUARD_HANDSHAKE_PATH"),
    "handshake_text": None,
    "library_version": None,
    "mlx_version": None,
    "steps": [],
    "error": None,
    "oversize": None,
}

# The library's constructor wrote the handshake before Python started.
if RESULT["handshake_path"]:
    try:
        with open(RESULT["handshake_path"], encoding="utf-8") as f:
            RESULT["handshake_text"] = f.read()
    except OSError:
        pass

try:
    _version = ctypes.CDLL(None).metal_guard_inject_version
    _version.restype = ctypes.c_char_p
    RESULT["library_version"] = _version().decode()
except (AttributeError, OSError):
    pass

OVERSIZE_BYTES = int(os.environ["METALGUARD_SELFTEST_OVERSIZE_BYTES"])


def emit():
    print("METALGUARD_SELFTEST_RESULT " + json.dumps(RESULT), flush=True)


def describe(error):
    return "%s: %s" % (type(error).__name__, error)


def oversize(allocate):
    """Ask for more than the guard's ceiling; MLX raises RuntimeError."""
    try:
        allocate(OVERSIZE_BYTES)
        RESULT["oversize"] = {"requested_bytes": OVERSIZE_BYTES, "outcome": "allocated"}
    except RuntimeError as e:
        RESULT["oversize"] = {
            "requested_bytes": OVERSIZE_BYTES,
            "outcome": "runtime_error",
            "error_type": type(e).__name__,
            "message": str(e),
        }
    except Exception as e:  # noqa: BLE001 - reported, not hidden
        RESULT["oversize"] = {
            "requested_bytes": OVERSIZE_BYTES,
            "outcome": "other_error",
            "error_type": type(e).__name__,
            "message": str(e),
        }
