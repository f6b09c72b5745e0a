"""The circuit breaker (`metal-guard breaker --json`): 2 panics within an hour trip a 1 h cooldown."""

from . import _cli
from ._timefmt import epoch_seconds

DEFAULT_WINDOW_SEC = 3600
DEFAULT_PANIC_THRESHOLD = 2
DEFAULT_COOLDOWN_SEC = 3600


class MLXCooldownActive(RuntimeError):
    """New MLX work is refused: the circuit breaker tripped after a panic cluster.

    `cooldown_until` is Unix seconds; `remaining_sec` how long is left;
    `metal-guard breaker clear` resets the breaker.
    """

    def __init__(self, panic_count, window_sec, cooldown_until):
        import time

        self.panic_count = panic_count
        self.window_sec = window_sec
        self.cooldown_until = cooldown_until
        self.remaining_sec = max(0.0, cooldown_until - time.time())
        super().__init__(
            "metal-guard circuit breaker: %d kernel panics within %.0f min; MLX work is refused "
            "for %.0f s more (`metal-guard breaker clear` resets it)"
            % (panic_count, window_sec / 60.0, self.remaining_sec)
        )


class CircuitBreaker(object):
    """Refuse new MLX workers after a cluster of kernel panics.

    The policy is the CLI's (2 panics within 3600 s trip a 3600 s cooldown),
    so every process on the machine applies the same one; other values are
    refused with `ValueError` rather than silently ignored.
    """

    def __init__(
        self,
        *,
        window_sec=DEFAULT_WINDOW_SEC,
        panic_threshold=DEFAULT_PANIC_THRESHOLD,
        cooldown_sec=DEFAULT_COOLDOWN_SEC,
        jsonl_path=None,
        state_path=None,
    ):
        asked = (float(window_sec), int(panic_threshold), float(cooldown_sec))
        if asked != (DEFAULT_WINDOW_SEC, DEFAULT_PANIC_THRESHOLD, DEFAULT_COOLDOWN_SEC):
            raise ValueError(
                "metal-guard's circuit breaker has one machine-wide policy (%d panics within "
                "%d s trip %d s); CircuitBreaker(window_sec=%r, panic_threshold=%r, "
                "cooldown_sec=%r) cannot be honoured: drop the arguments"
                % (
                    DEFAULT_PANIC_THRESHOLD,
                    DEFAULT_WINDOW_SEC,
                    DEFAULT_COOLDOWN_SEC,
                    window_sec,
                    panic_threshold,
                    cooldown_sec,
                )
            )
        if jsonl_path is not None or state_path is not None:
            raise ValueError(
                "metal-guard keeps the breaker state in ~/.cache/metal-guard/ (breaker.json, "
                "panics.jsonl); jsonl_path and state_path are not supported"
            )

    def status(self):
        """The breaker state as the CLI prints it (a dict; times are RFC 3339 strings)."""
        _code, data = _cli.run_json(["breaker", "status", "--json"], accept_codes=(0, 2))
        if not isinstance(data, dict) or "tripped" not in data:
            raise _cli.MetalGuardError("`metal-guard breaker --json` printed %r" % (data,))
        return data

    def check(self):
        """Raise `MLXCooldownActive` while the breaker is tripped; `MetalGuardError`
        when its state cannot be read."""
        data = self.status()
        if not data["tripped"]:
            return None
        try:
            until = epoch_seconds(data.get("cooldown_until"))
            raise MLXCooldownActive(
                int(data.get("panic_count", DEFAULT_PANIC_THRESHOLD)),
                float(data.get("window_sec", DEFAULT_WINDOW_SEC)),
                until if until is not None else 0.0,
            )
        except (TypeError, ValueError) as exc:
            raise _cli.MetalGuardError(
                "`metal-guard breaker --json` printed an unexpected answer (%s): %r" % (exc, data)
            ) from None
