"""`python -m metal_guard ARGS...` runs `metal-guard ARGS...`.

The fallback when the scripts folder is not on PATH (a `pip install --user`
whose bin folder the shell does not know about).
"""

import os
import sys

from ._cli import MetalGuardError, executable


def main():
    try:
        path = executable()
    except MetalGuardError as exc:
        sys.stderr.write("error: %s\n" % (exc,))
        return 127
    os.execv(path, [path] + sys.argv[1:])
    return 127  # not reached: execv replaces this process or raises


if __name__ == "__main__":
    sys.exit(main())
