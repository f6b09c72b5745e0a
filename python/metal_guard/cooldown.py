"""The panic cooldown verdict (`metal-guard panic-gate --json`)."""

from . import _cli
from ._timefmt import parse_timestamp

# Exit codes of `metal-guard panic-gate`, the same as the Python tool's.
PROCEED = 0
BLOCKED = 2
GATE_FAILED = 3


class CooldownVerdict(object):
    """Whether Metal work may start now, and why.

    `exit_code`: 0 proceed, 2 cooldown or lockout, 3 the gate itself failed
    (callers decide whether to fail open). `cooldown_until` is an aware UTC
    `datetime`, or `None` (no cooldown, or a lockout that only `metal-guard
    ack` clears). `kind` is `proceed`, `cooldown`, `lockout`, `disabled` or
    `gate_failed`; `how_to_clear` names the command that lifts a block.
    """

    __slots__ = (
        "exit_code",
        "reason",
        "recent_panics_24h",
        "recent_panics_72h",
        "cooldown_until",
        "kind",
        "how_to_clear",
    )

    def __init__(
        self,
        exit_code,
        reason,
        recent_panics_24h=0,
        recent_panics_72h=0,
        cooldown_until=None,
        kind=None,
        how_to_clear=None,
    ):
        self.exit_code = exit_code
        self.reason = reason
        self.recent_panics_24h = recent_panics_24h
        self.recent_panics_72h = recent_panics_72h
        self.cooldown_until = cooldown_until
        self.kind = kind
        self.how_to_clear = how_to_clear

    @property
    def blocked(self):
        """True when Metal work should wait (cooldown or lockout)."""
        return self.exit_code == BLOCKED

    def to_dict(self):
        return {name: getattr(self, name) for name in self.__slots__}

    def __eq__(self, other):
        if not isinstance(other, CooldownVerdict):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __repr__(self):
        return "CooldownVerdict(%s)" % ", ".join(
            "%s=%r" % (name, getattr(self, name)) for name in self.__slots__
        )


def verdict_from_json(data):
    """A `CooldownVerdict` from the object `panic-gate --json` prints."""
    if not isinstance(data, dict):
        raise ValueError("panic-gate --json printed %r, not an object" % (data,))
    return CooldownVerdict(
        exit_code=int(data["exit_code"]),
        reason=str(data["reason"]),
        recent_panics_24h=int(data.get("recent_panics_24h", 0)),
        recent_panics_72h=int(data.get("recent_panics_72h", 0)),
        cooldown_until=parse_timestamp(data.get("cooldown_until")),
        kind=data.get("kind"),
        how_to_clear=data.get("how_to_clear"),
    )


def evaluate_panic_cooldown():
    """The cooldown verdict, exactly as `metal-guard panic-gate` decides it.

    Never raises: when the gate cannot be evaluated (executable missing,
    unreadable output), the verdict has `exit_code` 3 and a reason saying why.
    """
    try:
        _code, data = _cli.run_json(["panic-gate", "--json"], accept_codes=(0, 2, 3))
        return verdict_from_json(data)
    except (_cli.MetalGuardError, KeyError, TypeError, ValueError) as exc:
        return CooldownVerdict(
            exit_code=GATE_FAILED,
            reason="gate failed: %s" % (exc,),
            kind="gate_failed",
        )
