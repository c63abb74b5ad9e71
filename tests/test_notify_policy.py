"""The pure notification policy: routing, quiet hours, backoff, Retry-After, giving up."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import msgspec

from pixels_daemon.notify.config import Notifications
from pixels_daemon.notify.policy import (
    Outcome,
    after_attempt,
    backoff_s,
    http_outcome,
    release_at,
    retry_after_s,
    route,
)

BERLIN = ZoneInfo("Europe/Berlin")


def notes(**extra: object) -> Notifications:
    raw: dict[str, object] = {
        "sinks": {
            "chat": {"type": "webhook", "url": "http://x"},
            "pager": {"type": "webhook", "url": "http://y"},
            "gh": {"type": "github", "repo": "o/r", "issue": 1, "token_env": "T"},
        },
        "routes": [
            {"kinds": ["escalation", "gate"], "sinks": ["chat"]},
            {"kinds": ["escalation"], "min_severity": "critical", "sinks": ["pager", "chat"]},
            {"kinds": ["weekly_report", "gate"], "sinks": ["gh"]},
        ],
        **extra,
    }
    return msgspec.convert(raw, Notifications)


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN).timestamp()


def test_routes_pick_sinks_by_kind() -> None:
    assert route(notes(), "weekly_report", "medium") == ["gh"]
    assert route(notes(), "gate", "high") == ["chat", "gh"]


def test_min_severity_keeps_lower_escalations_from_a_route() -> None:
    assert route(notes(), "escalation", "high") == ["chat"]


def test_a_sink_named_by_two_matching_routes_gets_it_once() -> None:
    assert route(notes(), "escalation", "critical") == ["chat", "pager"]


def test_an_unrouted_kind_goes_nowhere() -> None:
    assert route(notes(), "completion", "medium") == []


QUIET = {"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Europe/Berlin"}}


def test_quiet_hours_hold_a_notification_until_the_window_ends() -> None:
    quiet = notes(**QUIET).quiet_hours
    assert release_at(quiet, "high", at("2026-03-03T23:30")) == at("2026-03-04T07:00")
    assert release_at(quiet, "high", at("2026-03-04T03:00")) == at("2026-03-04T07:00")


def test_outside_quiet_hours_a_notification_goes_at_once() -> None:
    quiet = notes(**QUIET).quiet_hours
    now = at("2026-03-04T12:00")
    assert release_at(quiet, "medium", now) == now


def test_critical_is_never_held_by_quiet_hours() -> None:
    quiet = notes(**QUIET).quiet_hours
    now = at("2026-03-04T03:00")
    assert release_at(quiet, "critical", now) == now


def test_quiet_hours_end_at_local_time_across_a_dst_change() -> None:
    # Europe/Berlin goes to summer time at 02:00 on 2026-03-29: 07:00 is then UTC+2.
    quiet = notes(**QUIET).quiet_hours
    released = release_at(quiet, "low", at("2026-03-28T23:00"))
    assert datetime.fromtimestamp(released, BERLIN).isoformat() == "2026-03-29T07:00:00+02:00"


def test_backoff_doubles_up_to_its_cap_with_jitter_in_the_upper_half() -> None:
    assert [backoff_s(n, 10, 60, rand=lambda: 1.0) for n in (1, 2, 3, 4, 5)] == [
        10,
        20,
        40,
        60,
        60,
    ]
    assert backoff_s(3, 10, 60, rand=lambda: 0.0) == 20


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = 1_800_000_000.0
    assert retry_after_s("7", now) == 7.0
    assert retry_after_s("Fri, 15 Jan 2027 08:00:10 GMT", 1_800_000_000.0) == 1_800_000_010.0 - now
    assert retry_after_s("soon", now) is None
    assert retry_after_s(None, now) is None


def test_http_answers_sort_into_sent_retry_and_failed() -> None:
    assert http_outcome(204, None, "", 0).verdict == "sent"
    assert http_outcome(429, "3", "slow down", 0) == Outcome("retry", "HTTP 429: slow down", 3.0)
    assert http_outcome(503, None, "", 0).verdict == "retry"
    assert http_outcome(401, None, "bad credentials", 0).verdict == "failed"


def test_a_retry_after_is_honoured_over_the_backoff() -> None:
    nxt = after_attempt(Outcome("retry", "429", 5.0), 1, created_at=0, now=100, notes=notes())
    assert nxt.next_attempt == 105


def test_a_retry_after_of_zero_still_waits_a_moment() -> None:
    n = notes(backoff_initial_s=30)
    nxt = after_attempt(Outcome("retry", "429", 0.0), 1, created_at=0, now=100, notes=n)
    assert nxt.next_attempt == 101


def test_without_retry_after_the_backoff_sets_the_next_attempt() -> None:
    n = notes(backoff_initial_s=30, backoff_max_s=300)
    nxt = after_attempt(Outcome("retry", "500"), 2, created_at=0, now=100, notes=n, rand=lambda: 1)
    assert nxt.state == "pending"
    assert nxt.next_attempt == 160


def test_the_last_attempt_is_made_at_the_give_up_deadline() -> None:
    n = notes(give_up_after_s=120)
    nxt = after_attempt(Outcome("retry", "500", 60.0), 3, created_at=0, now=100, notes=n)
    assert nxt.next_attempt == 120


def test_past_the_give_up_deadline_it_fails() -> None:
    n = notes(give_up_after_s=120)
    nxt = after_attempt(Outcome("retry", "500"), 4, created_at=0, now=120, notes=n)
    assert nxt.state == "failed"


def test_a_refused_request_fails_at_once() -> None:
    nxt = after_attempt(Outcome("failed", "HTTP 404"), 1, created_at=0, now=1, notes=notes())
    assert nxt.state == "failed"
