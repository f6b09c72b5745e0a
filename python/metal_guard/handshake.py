"""Is this process guarded? The injected library exports `metal_guard_inject_version`."""

import sys

# The symbol the injected library exports (inject/src/lib.rs).
VERSION_SYMBOL = "metal_guard_inject_version"


def _global_scope():
    """A ctypes handle that searches every image loaded into this process."""
    import ctypes

    if sys.platform == "darwin":
        # RTLD_DEFAULT on Apple platforms is ((void *) -2).
        return ctypes.CDLL(None, handle=ctypes.c_void_p(-2).value)
    # Linux: dlopen(NULL) is the global scope, which holds LD_PRELOAD libraries.
    return ctypes.CDLL(None)


def guard_version():
    """The injected library's version when it is loaded into this process, else `None`."""
    import ctypes

    try:
        function = getattr(_global_scope(), VERSION_SYMBOL)
    except (AttributeError, OSError):
        return None
    function.restype = ctypes.c_char_p
    function.argtypes = []
    value = function()
    return None if value is None else value.decode("utf-8", "replace")


def is_guarded():
    """True when metal-guard's library is loaded into this process (by
    `mlx-safe-python`, `metal-guard run`, or DYLD_INSERT_LIBRARIES/LD_PRELOAD).

    It looks the library's exported symbol up in the process itself, so an
    environment variable inherited by a child the library never reached (a
    SIP-protected program in between strips DYLD_* variables) cannot fool it.
    """
    return guard_version() is not None
