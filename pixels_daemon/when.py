"""Parsing the WHEN of ``pixelsctl snooze ID --until WHEN``, on the daemon (its clock decides).

Accepted: a duration from now ("90m", "4h", "2d", "1h30m", "45s"), an ISO-8601 date-time
("2026-12-01T09:00", local time of the daemon without an offset), or unix seconds ("1798000000").
"""

from __future__ import annotations

import datetime
import re

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)([smhdw]))+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


class WhenError(ValueError):
    """Raised when WHEN is none of the accepted forms; the message says which forms are."""


def parse_when(text: str, now: float) -> float:
    """WHEN as unix seconds, given the daemon's ``now``."""
    value = text.strip().lower()
    if _DURATION.match(value):
        return now + sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(value))
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise WhenError(
            f"cannot read {text!r} as a time: give a duration (90m, 4h, 2d, 1h30m), an ISO "
            "date-time (2026-12-01T09:00) or unix seconds"
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()  # local time of the daemon
    return when.timestamp()
