"""Human-readable tables for pixelsctl results. Pure: values and ``now`` in, text out.

Every renderer takes ``(result, now)`` where ``now`` is unix seconds (injected, so tests need no
clock) and returns the text to print, without a trailing newline. Times in the past read as
relative ("3m ago"); planned times (eta, completion) read as local ISO date and time.

Imports stay lean: ``datetime`` is already loaded by pyzmq, nothing here adds to start-up time.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from protocol.views import (
    BlockerView,
    EscalationView,
    OrchestratorView,
    StatusView,
    WorkstreamView,
)

#: What an empty cell or a missing time shows.
DASH = "-"

_UNITS = (("d", 86400), ("h", 3600), ("m", 60))


def duration(seconds: float) -> str:
    """A short, coarse duration: "45s", "3m", "2h", "4d" (the largest unit that fits)."""
    seconds = abs(seconds)
    for unit, size in _UNITS:
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def ago(ts: float | None, now: float) -> str:
    """Relative time of a past event ("3m ago"); a future one reads "in 3m"; None reads "never"."""
    if ts is None:
        return "never"
    delta = now - ts
    if delta < 0:
        return f"in {duration(delta)}"
    return f"{duration(delta)} ago"


def local_time(ts: float | None) -> str:
    """Unix seconds as local ISO date and time to the minute ("2025-03-14 17:00"), or a dash."""
    if ts is None:
        return DASH
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def percent(ratio: float) -> str:
    """A 0..1 ratio as a whole percentage ("45%")."""
    return f"{ratio * 100:.0f}%"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces, headed by ``headers``; "(none)" if empty."""
    if not rows:
        return "(none)"
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in (headers, *rows)
    ]
    return "\n".join(lines)


def orchestrators_table(items: Sequence[OrchestratorView], now: float) -> str:
    """One line per orchestrator: connection, last seen, reported status, acked seq, workstreams."""
    rows = [
        [
            o.name,
            o.connection,
            ago(o.last_seen, now),
            o.status,
            str(o.acked_seq),
            ", ".join(o.workstreams) or DASH,
        ]
        for o in items
    ]
    return table(
        ["ORCHESTRATOR", "CONNECTION", "LAST SEEN", "STATUS", "ACKED", "WORKSTREAMS"], rows
    )


def workstreams_table(items: Sequence[WorkstreamView], now: float) -> str:
    """One line per workstream: owner, milestone, status, progress, eta, last update."""
    rows = [
        [
            w.id,
            w.name,
            w.orchestrator,
            w.milestone,
            w.status,
            percent(w.progress),
            local_time(w.completion_time if w.status == "complete" else w.eta),
            ago(w.updated_at, now) if w.updated_at is not None else DASH,
        ]
        for w in items
    ]
    return table(
        ["ID", "NAME", "ORCHESTRATOR", "MILESTONE", "STATUS", "PROGRESS", "ETA/DONE", "UPDATED"],
        rows,
    )


def blockers_table(items: Sequence[BlockerView], now: float) -> str:
    """One line per open blocker: who reported it, on what, since when, what it says."""
    rows = [[b.orchestrator, b.workstream or DASH, ago(b.since, now), b.text] for b in items]
    return table(["ORCHESTRATOR", "WORKSTREAM", "SINCE", "BLOCKER"], rows)


def escalations_table(items: Sequence[EscalationView], now: float) -> str:
    """One line per escalation: id, state, severity, type, who raised it and when, the issue."""
    rows = [
        [e.id, e.state, e.severity, e.type, e.orchestrator, ago(e.raised_at, now), e.issue]
        for e in items
    ]
    return table(["ID", "STATE", "SEVERITY", "TYPE", "ORCHESTRATOR", "RAISED", "ISSUE"], rows)


def render_status(view: StatusView, now: float) -> str:
    """The whole picture. Relative times use the daemon's clock (``view.now``), not ``now``:
    under a time scale the daemon's plan time runs ahead of the wall clock."""
    done = sum(1 for w in view.workstreams if w.status == "complete")
    head = (
        f"plan: {view.plan}   phase: {view.phase}   "
        f"complete: {done}/{len(view.workstreams)} workstreams   "
        f"events: {view.events}   daemon time: {local_time(view.now)}"
    )
    sections = [
        head,
        "ORCHESTRATORS\n" + orchestrators_table(view.orchestrators, view.now),
        "WORKSTREAMS\n" + workstreams_table(view.workstreams, view.now),
        f"OPEN BLOCKERS ({len(view.blockers)})\n" + blockers_table(view.blockers, view.now),
    ]
    if view.escalations:
        sections.append(
            f"ESCALATIONS ({len(view.escalations)})\n"
            + escalations_table(view.escalations, view.now)
        )
    return "\n\n".join(sections)


def render_workstreams(items: list[WorkstreamView], now: float) -> str:
    """The workstreams table alone."""
    return workstreams_table(items, now)


def render_orchestrators(items: list[OrchestratorView], now: float) -> str:
    """The orchestrators table alone."""
    return orchestrators_table(items, now)


def render_escalations(items: list[EscalationView], now: float) -> str:
    """The escalations table alone."""
    return escalations_table(items, now)


def render_ping(result: dict[str, Any], now: float) -> str:
    """One line: who answered."""
    daemon = result.get("daemon", "?")
    pid = result.get("pid", "?")
    plan = result.get("plan", "?")
    return f"pixelsd {daemon} (pid {pid}) is answering; plan {plan}"
