"""`python3 -m metal_guard_cli ARGS...`: the same as `python3 -m metal_guard ARGS...`."""

import sys

from metal_guard.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
