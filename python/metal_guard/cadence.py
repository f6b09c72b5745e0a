"""Spacing model loads (`metal-guard cadence MODEL --json`): check and mark in one step."""

from . import _cli
from ._timefmt import epoch_seconds

DEFAULT_MIN_INTERVAL_SEC = 180.0


class CadenceViolation(RuntimeError):
    """A load of `model_id` came too soon after the last one.

    `last_ts` (Unix seconds) is when the blocking load happened, `min_interval`
    the interval that applies, `delta` how long ago the last load was and
    `wait_sec` how long to wait before trying again.
    """

    def __init__(self, model_id, last_ts, min_interval, wait_sec=None, blocking_model=None):
        import time

        self.model_id = model_id
        self.last_ts = last_ts
        self.min_interval = min_interval
        self.delta = max(0.0, time.time() - last_ts)
        self.wait_sec = max(0.0, min_interval - self.delta) if wait_sec is None else wait_sec
        self.blocking_model = model_id if blocking_model is None else blocking_model
        super().__init__(
            "metal-guard cadence: load of %r refused, the last load of %r was %.1f s ago "
            "(minimum %.0f s); wait %.0f s and try again"
            % (model_id, self.blocking_model, self.delta, min_interval, self.wait_sec)
        )


class CrossModelCadenceViolation(CadenceViolation):
    """A load came too soon after a load of a *different* model
    (`METALGUARD_CROSS_MODEL_INTERVAL` or `cross_model_interval_sec`)."""

    def __init__(self, model_id, last_model, last_ts, cross_model_interval, wait_sec=None):
        self.last_model = last_model
        self.cross_model_interval = cross_model_interval
        super().__init__(model_id, last_ts, cross_model_interval, wait_sec, last_model)


def require_cadence_clear(
    model_id, min_interval_sec=DEFAULT_MIN_INTERVAL_SEC, *, cross_model_interval_sec=0.0
):
    """Refuse a load of `model_id` that comes too soon; otherwise record it.

    Raises `CadenceViolation` (`CrossModelCadenceViolation` when the blocking
    load was of another model: `cross_model_interval_sec`, or
    `METALGUARD_CROSS_MODEL_INTERVAL` when that is 0) and `MetalGuardError`
    when the check itself cannot run. Check and mark are one step under a file
    lock (`metal-guard cadence`), so of several processes racing to load the
    same model exactly one gets through.
    """
    import time

    args = ["cadence", str(model_id), "--min-interval", repr(float(min_interval_sec))]
    if cross_model_interval_sec:
        args += ["--cross-model-interval", repr(float(cross_model_interval_sec))]
    args.append("--json")
    _code, data = _cli.run_json(args, accept_codes=(0, 2))
    try:
        decision = data["decision"]
        if decision == "clear":
            return None
        if decision != "too_soon":
            raise ValueError("unknown decision %r" % (decision,))
        last_ts = epoch_seconds(data["last_load"])
        wait_sec = float(data["wait_sec"])
        blocking_model = str(data["blocking_model"])
        rule = data["rule"]
    except (KeyError, TypeError, ValueError) as exc:
        raise _cli.MetalGuardError(
            "`metal-guard cadence --json` printed an unexpected answer (%s): %r" % (exc, data)
        ) from None
    if rule == "cross_model":
        # The interval that applied: elapsed since the blocking load plus the wait left.
        interval = max(0.0, time.time() - last_ts) + wait_sec
        raise CrossModelCadenceViolation(model_id, blocking_model, last_ts, interval, wait_sec)
    raise CadenceViolation(model_id, last_ts, float(min_interval_sec), wait_sec)
