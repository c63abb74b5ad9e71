"""Notification policy, pure: which sinks hear of what, when quiet hours let it out, how long to
wait before the next attempt, and what an answer from a receiver means. Time is an argument."""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Literal

from pixels_daemon.notify.config import SEVERITIES, Notifications, QuietHours, quiet_window


def route(notes: Notifications, kind: str, severity: str) -> list[str]:
    """The sinks an event of ``kind`` at ``severity`` goes to (each once, in config order)."""
    rank = SEVERITIES.index(severity) if severity in SEVERITIES else 0
    out: list[str] = []
    for rule in notes.routes:
        if kind in rule.kinds and rank >= SEVERITIES.index(rule.min_severity):
            out.extend(s for s in rule.sinks if s not in out)
    return out


def release_at(quiet: QuietHours | None, severity: str, now: float) -> float:
    """When a notification made at ``now`` may be sent: now, or the end of the quiet window it
    falls in. Critical ones are never held: a critical blocker at 3 am is what people want to be
    woken for."""
    if quiet is None or severity == "critical":
        return now
    start, end, zone = quiet_window(quiet)
    if start == end:
        return now  # an empty window
    local = datetime.datetime.fromtimestamp(now, zone)
    t = local.time().replace(tzinfo=None)
    inside = start <= t < end if start < end else (t >= start or t < end)
    if not inside:
        return now
    day = local.date() if t < end else local.date() + datetime.timedelta(days=1)
    # Combined in the zone, so a DST change inside the window lands on the right wall time.
    return datetime.datetime.combine(day, end, tzinfo=zone).timestamp()


def backoff_s(
    attempts: int,
    initial_s: float,
    max_s: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """Delay before attempt ``attempts + 1``: exponential from ``initial_s``, capped at ``max_s``,
    with "full jitter" over its upper half (so many queued notifications do not retry in step, and
    the wait still grows)."""
    ceiling = min(max_s, initial_s * 2.0 ** max(0, attempts - 1))
    return ceiling / 2 + rand() * ceiling / 2


def retry_after_s(value: str | None, now: float) -> float | None:
    """A Retry-After header: delta seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


Verdict = Literal["sent", "retry", "failed"]

#: The shortest wait a Retry-After can ask for (when the backoff is not shorter still).
MIN_RETRY_S = 1.0


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to: ``sent``; ``retry`` (after ``wait_s`` when the receiver said);
    ``failed`` (retrying cannot help: a rejected request, a bad token)."""

    verdict: Verdict
    error: str = ""
    wait_s: float | None = None


def http_outcome(status: int, retry_after: str | None, body: str, now: float) -> Outcome:
    """A receiver's HTTP answer. 2xx: accepted. 408/429/5xx: try again (honouring Retry-After).
    Another 4xx: the request itself is wrong (bad token, no such issue): give up now."""
    if 200 <= status < 300:
        return Outcome("sent")
    error = f"HTTP {status}: {body[:200]}".strip()
    if status in (408, 429) or status >= 500:
        return Outcome("retry", error, retry_after_s(retry_after, now))
    return Outcome("failed", error)


@dataclass(frozen=True)
class Next:
    """The row after a failed attempt: still ``pending`` until ``next_attempt``, or ``failed``."""

    state: Literal["pending", "failed"]
    next_attempt: float | None


def after_attempt(
    outcome: Outcome,
    attempts: int,
    *,
    created_at: float,
    now: float,
    notes: Notifications,
    rand: Callable[[], float] = random.random,
) -> Next:
    """Schedule the next attempt, or give up: a permanent failure, or past ``give_up_after_s``
    from when it was made (a retry that would land past that point is not made)."""
    if outcome.verdict == "failed":
        return Next("failed", None)
    wait = outcome.wait_s
    if wait is None:
        wait = backoff_s(attempts, notes.backoff_initial_s, notes.backoff_max_s, rand)
    else:
        # Not before the receiver said; and a "Retry-After: 0" must not make a hot loop.
        wait = max(wait, min(notes.backoff_initial_s, MIN_RETRY_S))
    deadline = created_at + notes.give_up_after_s
    if now >= deadline:
        return Next("failed", None)
    # The last try is made at the deadline rather than skipped: a service back just before it
    # still gets the notification.
    return Next("pending", min(now + wait, deadline))
