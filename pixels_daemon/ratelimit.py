"""A log that says a thing at most once per interval per key, and how often it was silenced.

A peer sending garbage at line rate must not turn the journal into the bottleneck.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class RateLimitedLog:
    """Wraps a structlog logger; ``warning(key, event, **kw)`` logs at most once per interval."""

    def __init__(
        self, logger: Any, interval_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._logger = logger
        self._interval = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, event: str, **kw: Any) -> bool:
        """Log unless ``key`` was logged within the interval; return whether it was logged."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            kw["suppressed"] = suppressed
        self._logger.warning(event, **kw)
        return True
