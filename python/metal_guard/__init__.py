"""metal-guard for Python: the gates and forensics of the `metal-guard` CLI.

    import metal_guard as mg
    verdict = mg.evaluate_panic_cooldown()
    print(verdict.exit_code, verdict.reason)

Every answer is computed by the Rust `metal-guard` executable installed with
this package (`metal-guard ... --json`), so this module and the CLI always
agree. Importing it loads nothing else: each name below is resolved on first
use, so `import metal_guard` costs well under a millisecond.
"""

# name -> submodule that defines it (PEP 562 lazy attributes).
_EXPORTS = {
    "CooldownVerdict": "cooldown",
    "evaluate_panic_cooldown": "cooldown",
    "MetalGuardError": "_cli",
    "CadenceViolation": "cadence",
    "CrossModelCadenceViolation": "cadence",
    "require_cadence_clear": "cadence",
    "CircuitBreaker": "breaker",
    "MLXCooldownActive": "breaker",
    "parse_panic_reports": "forensics",
    "check_known_panic_model": "registry",
    "warn_if_known_panic_model": "registry",
    "is_guarded": "handshake",
    "guard_version": "handshake",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    module_name = _EXPORTS.get(name)
    if module_name is not None:
        import importlib

        value = getattr(importlib.import_module("." + module_name, __name__), name)
        globals()[name] = value
        return value
    if name == "__version__":
        value = _installed_version()
        globals()[name] = value
        return value
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


def __dir__():
    return sorted(set(globals()) | set(__all__))


def _installed_version():
    """The version of the installed distribution (the Cargo workspace version)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("metal-guard")
    except PackageNotFoundError:
        return "unknown"
