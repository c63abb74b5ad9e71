"""The workstream state machine: one table, and everything that decides a workstream's state.

Rules (everything that affects a workstream's transitions lives here):

- A workstream is in exactly one of seven states: ``not_started`` (waiting: a dependency is not
  complete, or its orchestrator is not active yet), ``ready`` (may start: every dependency is
  complete and its orchestrator is active), ``in_progress``, ``blocked`` (started, and its
  orchestrator says it cannot go on), ``halted`` (stopped by a failed gate or an operator),
  ``complete`` and ``deferred`` (taken out of the plan by an operator).
- Readiness comes from the dependency graph: a dependency is met only when it is ``complete``.
  ``ready`` and ``unready`` are the engine's events; orchestrators never send them.
- Orchestrators report ``not_started`` / ``in_progress`` / ``blocked`` / ``complete``. ``REPORTS``
  turns a report into an event (or into nothing, where the report changes no state). A report the
  table does not list is illegal: the whole message is refused and its sender is told why.
- Reports about halted or deferred work that change nothing are accepted: the orchestrator may not
  have heard the halt yet, and a status it already sent cannot be taken back. Claims that would
  move such work on (``complete``) are refused.
- ``complete`` and ``deferred`` are final.
- ``resume`` leads back to ``not_started``: the engine then works out readiness afresh, so resumed
  work waits again for anything that changed while it was halted.
- ``transition`` raises ``IllegalTransition`` for any pair not in ``TRANSITIONS``; it changes
  nothing (it returns the new state; the caller stores it).

Pure: no clock, no I/O, no imports from the rest of the daemon.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Literal

from protocol.messages import ErrorCode, WorkstreamStatus

WsState = Literal[
    "not_started", "ready", "in_progress", "blocked", "halted", "complete", "deferred"
]
WsEvent = Literal["ready", "unready", "start", "block", "complete", "halt", "resume", "defer"]

WS_STATES: tuple[WsState, ...] = typing.get_args(WsState)
WS_EVENTS: tuple[WsEvent, ...] = typing.get_args(WsEvent)

#: The table: (state, event) -> new state. A pair that is not here is an illegal transition.
TRANSITIONS: Mapping[tuple[WsState, WsEvent], WsState] = {
    ("not_started", "ready"): "ready",
    ("not_started", "halt"): "halted",
    ("not_started", "defer"): "deferred",
    ("ready", "unready"): "not_started",
    ("ready", "start"): "in_progress",
    ("ready", "block"): "blocked",
    ("ready", "complete"): "complete",
    ("ready", "halt"): "halted",
    ("ready", "defer"): "deferred",
    ("in_progress", "block"): "blocked",
    ("in_progress", "complete"): "complete",
    ("in_progress", "halt"): "halted",
    ("in_progress", "defer"): "deferred",
    ("blocked", "start"): "in_progress",
    ("blocked", "complete"): "complete",
    ("blocked", "halt"): "halted",
    ("blocked", "defer"): "deferred",
    ("halted", "resume"): "not_started",
    ("halted", "defer"): "deferred",
}

#: Where each event leads when it is legal; names the target in an illegal transition's message.
EVENT_TARGET: Mapping[WsEvent, WsState] = {
    "ready": "ready",
    "unready": "not_started",
    "start": "in_progress",
    "block": "blocked",
    "complete": "complete",
    "halt": "halted",
    "resume": "not_started",
    "defer": "deferred",
}

#: An orchestrator's report, by current state: the event it causes, or None (accepted, no change:
#: progress within in_progress, a repeat, or news about halted/deferred work). Absent: illegal.
REPORTS: Mapping[tuple[WsState, WorkstreamStatus], WsEvent | None] = {
    ("not_started", "not_started"): None,
    ("not_started", "blocked"): None,  # waiting, and saying on what: the blocker text is kept
    ("ready", "not_started"): None,
    ("ready", "in_progress"): "start",
    ("ready", "blocked"): "block",
    ("ready", "complete"): "complete",  # finished between two reports
    ("in_progress", "in_progress"): None,
    ("in_progress", "blocked"): "block",
    ("in_progress", "complete"): "complete",
    ("blocked", "in_progress"): "start",
    ("blocked", "blocked"): None,
    ("blocked", "complete"): "complete",
    ("halted", "not_started"): None,
    ("halted", "in_progress"): None,
    ("halted", "blocked"): None,
    ("complete", "complete"): None,
    ("deferred", "not_started"): None,
    ("deferred", "in_progress"): None,
    ("deferred", "blocked"): None,
}

#: Why a state refuses what is not in the table (the engine adds specifics where it knows them).
WHY_NOT: Mapping[WsState, str] = {
    "not_started": "it is not ready (a dependency is incomplete or its orchestrator inactive)",
    "ready": "it has not started",
    "in_progress": "started work cannot go back to not_started",
    "blocked": "started work cannot go back to not_started",
    "halted": "it is halted; it resumes when its gate passes or an operator resumes it",
    "complete": "it is complete, and complete is final",
    "deferred": "it is deferred (taken out of the plan)",
}

#: States in which a workstream has started and is not finished: its time counts against the
#: estimate, and its orchestrator is expected to make progress.
STARTED: frozenset[WsState] = frozenset({"in_progress", "blocked"})

#: States that end a workstream's part in the plan.
FINAL: frozenset[WsState] = frozenset({"complete", "deferred"})


class EngineError(Exception):
    """A request the core refuses; nothing changed. ``code`` is the wire error code to reply with,
    ``message`` one line saying what was wrong and what to do."""

    code: ErrorCode = "bad_args"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class IllegalTransition(EngineError):
    """Raised when the table has no entry for (state, event), or a report the state forbids.

    ``current``: the state it was in (and still is). ``target``: where the event or report would
    have taken it. ``why``: the reason, fit to send to whoever asked.
    """

    code: ErrorCode = "illegal_transition"

    def __init__(self, current: WsState, target: str, why: str, subject: str = "") -> None:
        prefix = f"{subject}: " if subject else ""
        super().__init__(f"{prefix}{current} -> {target} is not allowed: {why}")
        self.current = current
        self.target = target
        self.why = why


def transition(
    current: WsState, event: WsEvent, why: str | None = None, subject: str = ""
) -> WsState:
    """The state ``event`` leads to from ``current``; IllegalTransition if the table forbids it.

    ``why`` replaces the table's generic reason in the error (the engine knows the specifics);
    ``subject`` (a workstream id) prefixes the message.
    """
    new = TRANSITIONS.get((current, event))
    if new is None:
        raise IllegalTransition(current, EVENT_TARGET[event], why or WHY_NOT[current], subject)
    return new


def on_report(
    current: WsState,
    reported: WorkstreamStatus,
    why: Callable[[], str] | None = None,
    subject: str = "",
) -> WsEvent | None:
    """The event an orchestrator's report causes in ``current`` (None: accepted, no change).

    Raises IllegalTransition when the report is not allowed in ``current``; ``why`` (called only
    then) gives the specific reason; ``subject`` (the workstream id) prefixes the message.
    """
    key = (current, reported)
    if key not in REPORTS:
        raise IllegalTransition(current, reported, why() if why else WHY_NOT[current], subject)
    return REPORTS[key]


def unmet(depends_on: Iterable[str], state_of: Mapping[str, WsState]) -> list[str]:
    """The dependencies that are not complete, in the given order (readiness needs none)."""
    return [dep for dep in depends_on if state_of[dep] != "complete"]
