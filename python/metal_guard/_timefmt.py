"""Reading the timestamps the CLI prints (RFC 3339, UTC) into `datetime`s."""

import datetime
import re

_FRACTION = re.compile(r"\.(\d+)")


def parse_timestamp(value):
    """An aware `datetime` from an RFC 3339 string or Unix seconds; `None` stays `None`.

    Raises `ValueError` for anything else, so a changed CLI output is noticed.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("not a timestamp: %r" % (value,))
    if isinstance(value, (int, float)):
        return datetime.datetime.fromtimestamp(value, tz=datetime.timezone.utc)
    if not isinstance(value, str):
        raise ValueError("not a timestamp: %r" % (value,))
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Python before 3.11 accepts only 3 or 6 fraction digits; Rust prints up to 9.
    text = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], text, count=1)
    parsed = datetime.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError("timestamp without a zone: %r" % (value,))
    return parsed


def epoch_seconds(value):
    """Unix seconds (float) from what `parse_timestamp` accepts; `None` stays `None`."""
    parsed = parse_timestamp(value)
    return None if parsed is None else parsed.timestamp()
