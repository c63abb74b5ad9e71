"""Applying an orchestrator's durable message to the state.

Rules (everything that affects admission and application lives here):

- Each orchestrator numbers its durable messages 1, 2, 3, ... ``admit`` compares a message's seq
  with the orchestrator's acked seq: acked + 1 is next (apply it), at or below is a duplicate (ack
  again, apply nothing), above is a gap (an earlier message is missing: the sender must resend).
- ``apply`` validates first and mutates only if valid: a refused message changes nothing but the
  orchestrator's acked seq (it was consumed, and the sender is told why).
- An orchestrator may report status only for workstreams the plan gives it; an escalation may
  name any plan workstream (cross-domain problems are what escalations are for).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Set
from dataclasses import dataclass

from pixels_daemon.core.state import EscalationRecord, State
from protocol.messages import ErrorCode, Escalation, PollReply, Status

Durable = Status | PollReply | Escalation


class Admission(enum.Enum):
    NEXT = "next"
    DUPLICATE = "duplicate"
    GAP = "gap"


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a durable message was consumed without effect; goes back to the sender as an error."""

    code: ErrorCode
    message: str


@dataclass(frozen=True, slots=True)
class Ownership:
    """The plan facts ingest needs: who owns which workstream."""

    owner_of: Mapping[str, str]  # workstream id -> orchestrator id
    orchestrators: Set[str]


def admit(state: State, orchestrator: str, seq: int) -> Admission:
    """Classify a durable message by its seq against what was already applied."""
    acked = state.orchestrators[orchestrator].acked_seq
    if seq == acked + 1:
        return Admission.NEXT
    if seq <= acked:
        return Admission.DUPLICATE
    return Admission.GAP


def apply(state: State, plan: Ownership, message: Durable, now: float) -> Rejection | None:
    """Apply an admitted (NEXT) durable message at time ``now``; return why it was refused, if so.

    The orchestrator's acked seq advances either way: a refused message is consumed, not retried.
    """
    orch = state.orchestrators[message.orchestrator]
    orch.acked_seq = message.seq
    state.events += 1
    if isinstance(message, Escalation):
        return _apply_escalation(state, plan, message, now)
    return _apply_status(state, plan, message, now)


def check_workstreams(
    plan: Ownership, orchestrator: str | None, ids: list[str]
) -> Rejection | None:
    """Every id must be a plan workstream; with ``orchestrator``, one of its own."""
    for ws in ids:
        owner = plan.owner_of.get(ws)
        if owner is None:
            return Rejection("unknown_workstream", f"the plan has no workstream {ws!r}")
        if orchestrator is not None and owner != orchestrator:
            return Rejection(
                "not_owner", f"workstream {ws} belongs to {owner}, not to {orchestrator}"
            )
    return None


def _apply_status(state: State, plan: Ownership, message: Status, now: float) -> Rejection | None:
    rejection = check_workstreams(plan, message.orchestrator, list(message.workstreams))
    if rejection is not None:
        return rejection
    orch = state.orchestrators[message.orchestrator]
    orch.status = message.status
    orch.last_report = now
    orch.blockers = {text: orch.blockers.get(text, now) for text in message.blockers}
    orch.decisions_needed = list(message.decisions_needed)
    if message.performance_metrics:
        orch.performance_metrics.update(message.performance_metrics)
    for ws_id, report in message.workstreams.items():
        ws = state.workstreams[ws_id]
        if report.status == "in_progress" and ws.started_at is None:
            ws.started_at = now
        if report.blocker != ws.blocker:
            ws.blocker_since = now if report.blocker else None
        ws.status = report.status
        ws.progress = report.progress
        ws.eta = report.eta
        ws.completion_time = report.completion_time
        if report.status == "complete" and ws.completion_time is None:
            ws.completion_time = now
        ws.blocker = report.blocker
        ws.updated_at = now
    return None


def _apply_escalation(
    state: State, plan: Ownership, message: Escalation, now: float
) -> Rejection | None:
    # An escalation may name another domain's workstream (a broken dependency, a conflict).
    rejection = check_workstreams(plan, None, message.affected_workstreams)
    if rejection is not None:
        return rejection
    state.escalation_counter += 1
    esc_id = f"E-{state.escalation_counter}"
    state.escalations[esc_id] = EscalationRecord(
        id=esc_id,
        orchestrator=message.orchestrator,
        type=message.type,
        severity=message.severity,
        issue=message.issue,
        affected_workstreams=list(message.affected_workstreams),
        attempted_resolutions=list(message.attempted_resolutions),
        help_needed=message.help_needed,
        raised_at=now,
    )
    state.orchestrators[message.orchestrator].last_report = now
    return None
