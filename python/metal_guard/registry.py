"""Models known to panic Apple Silicon Macs (`metal-guard models MODEL --json`)."""

import sys

from . import _cli

_warned = set()


def check_known_panic_model(model_id):
    """The registry entry for `model_id`, or `None` when nobody reported it.

    The dict has `id`, `tier` (`panic`, `abort`, `degradation`), `summary`,
    `advice`, `alternatives`, and `recommendation` (the Python tool's name for
    `advice`). A model's absence is not a safety certificate.
    """
    _code, data = _cli.run_json(
        ["models", str(model_id), "--python", sys.executable, "--json"], accept_codes=(0, 1, 2)
    )
    try:
        known = data["model"]["known"]
    except (KeyError, TypeError):
        raise _cli.MetalGuardError(
            "`metal-guard models --json` printed an unexpected answer: %r" % (data,)
        ) from None
    if known is None:
        return None
    entry = dict(known)
    entry.setdefault("recommendation", entry.get("advice"))
    entry.setdefault("model_id", entry.get("id", model_id))
    return entry


def warn_if_known_panic_model(model_id):
    """Log one warning per process per model when `model_id` is in the registry.

    Returns True when the model is known (whether the warning was logged now
    or earlier in this process).
    """
    entry = check_known_panic_model(model_id)
    if entry is None:
        return False
    if model_id not in _warned:
        _warned.add(model_id)
        import logging

        logging.getLogger("metal_guard").warning(
            "known panic model %s (%s tier): %s", model_id, entry.get("tier"), entry.get("recommendation")
        )
    return True
