"""What the engine's effects tell people, as notifications (pure: state and effect in, Message
out). Each gets a send-once key derived from the event, the same whenever it is derived:

- escalation: ``escalation:ID:REASON:T`` (T: when the engine decided to notify, from the log);
- gate: ``gate:ID:run:N``; weekly report: ``weekly_report:week:N:T`` (T: when it was due, so a
  ``pixelsctl report --now`` later in the week is a new one); completion: ``completion``.
"""

from __future__ import annotations

from pixels_daemon.core import engine
from pixels_daemon.core.state import State
from pixels_daemon.notify.outbox import Message

#: Report kinds are not alarms; "medium" lets a route with min_severity "high" leave them out.
REPORT_SEVERITY = "medium"


def _ms(t: float | None) -> str:
    return f"{t or 0.0:.3f}"


def escalation_message(state: State, effect: engine.Notify) -> Message | None:
    esc = state.escalations.get(effect.escalation)
    if esc is None:
        return None
    at = esc.resolved_at if effect.reason == "resolved" else esc.last_notified
    verb = {
        "raised": "raised",
        "escalated": "now " + esc.severity,
        "renotify": "still open",
        "snooze_ended": "snooze ended",
        "released": "no longer inhibited",
        "resolved": "resolved",
    }[effect.reason]
    lines = [f"**{esc.issue}**", ""]
    lines.append(f"- severity: {esc.severity}; from: {esc.orchestrator}; state: {esc.state}")
    if esc.affected_workstreams:
        lines.append(f"- affects: {', '.join(esc.affected_workstreams)}")
    if esc.help_needed:
        lines.append(f"- needed: {esc.help_needed}")
    if esc.count > 1:
        lines.append(f"- raised {esc.count} times")
    if effect.reason != "resolved":
        lines.append(f"- `pixelsctl ack {esc.id}` / `pixelsctl resolve {esc.id}`")
    return Message(
        key=f"escalation:{esc.id}:{effect.reason}:{_ms(at)}",
        kind="escalation",
        severity=esc.severity,
        reason=effect.reason,
        title=f"[{esc.severity}] {esc.id} {verb}: {esc.issue}",
        body="\n".join(lines),
    )


def gate_message(effect: engine.GateDecided) -> Message:
    verdict = "passed" if effect.passed else "FAILED"
    lines = [f"Gate **{effect.gate}** {verdict} (evaluation {effect.run})."]
    lines += [f"- {f}" for f in effect.failures]
    return Message(
        key=f"gate:{effect.gate}:run:{effect.run}",
        kind="gate",
        # A failed gate halts work: as loud as a high escalation.
        severity="medium" if effect.passed else "high",
        title=f"Gate {effect.gate} {verdict}",
        body="\n".join(lines),
    )


def report_message(state: State, week: int, filename: str, text: str) -> Message:
    return Message(
        key=f"weekly_report:week:{week}:{_ms(state.reports.get(week))}",
        kind="weekly_report",
        severity=REPORT_SEVERITY,
        title=f"Weekly report, week {week}",
        body=text,
        attachment_name=filename,
        attachment=text,
    )


def completion_message(text: str) -> Message:
    return Message(
        key="completion",
        kind="completion",
        severity=REPORT_SEVERITY,
        title="The plan is complete",
        body=text,
        attachment_name="completion_report.md",
        attachment=text,
    )


def test_message(sink: str, now: float) -> Message:
    return Message(
        key=f"test:{sink}:{_ms(now)}",
        kind="test",
        severity="low",
        title=f"pixelsd test notification to {sink}",
        body="If you read this, pixelsd's notifications reach you here.",
    )
