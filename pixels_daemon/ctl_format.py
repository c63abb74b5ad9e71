"""Human-readable tables for pixelsctl results. Pure: values and ``now`` in, text out.

Every renderer takes ``(result, now)`` where ``now`` is unix seconds (injected, so tests need no
clock) and returns the text to print, without a trailing newline. Times in the past read as
relative ("3m ago"); planned times (eta, completion) read as local ISO date and time.

Imports stay lean: ``datetime`` is already loaded by pyzmq, nothing here adds to start-up time.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from msgspec import Struct

from protocol.views import (
    BlockerView,
    CheckResultView,
    DecisionView,
    EscalationView,
    GateView,
    HoldView,
    OrchestratorView,
    PlanChangeView,
    ProcessView,
    StatusView,
    WorkstreamView,
)

if TYPE_CHECKING:
    from pixels_daemon.events import WatchEvent

#: What an empty cell or a missing time shows.
DASH = "-"
#: Lines of a gate check's output shown by `gate check`: a script's summary and last error fit;
#: --json carries all the daemon kept.
OUTPUT_TAIL_LINES = 10

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


def joined(items: Sequence[str], sep: str = ", ") -> str:
    """Items joined by ``sep``, or a dash when there are none."""
    return sep.join(items) or DASH


def fields(pairs: Sequence[tuple[str, str]]) -> str:
    """ "label: value" lines, values aligned; pairs with an empty value are left out."""
    shown = [(label, value) for label, value in pairs if value]
    width = max((len(label) for label, _ in shown), default=0) + 2
    return "\n".join(f"{label + ':':<{width}}{value}".rstrip() for label, value in shown)


def bullets(items: Sequence[str], indent: str = "  ", mark: str = "- ") -> str:
    """One indented line per item (multi-line items keep their lines, indented alike)."""
    lines = []
    for item in items:
        first, *rest = item.splitlines() or [""]
        lines.append(f"{indent}{mark}{first}")
        lines.extend(f"{indent}{' ' * len(mark)}{line}" for line in rest)
    return "\n".join(lines)


def orchestrators_table(items: Sequence[OrchestratorView], now: float) -> str:
    """One line per orchestrator: connection, last seen, reported status, acked seq, its process
    (as the spawner sees it), workstreams."""
    rows = [
        [
            o.name,
            o.connection,
            ago(o.last_seen, now),
            o.status,
            str(o.acked_seq),
            process_cell(o.process, now),
            ", ".join(o.workstreams) or DASH,
        ]
        for o in items
    ]
    return table(
        ["ORCHESTRATOR", "CONNECTION", "LAST SEEN", "STATUS", "ACKED", "PROCESS", "WORKSTREAMS"],
        rows,
    )


def process_cell(p: ProcessView | None, now: float) -> str:
    """An orchestrator's process in a few words: "running pid 4242, 2 restarts", "restart in 4s
    (exit 1)", "flapping (exit 2)", "stopped by operator", "-" when the daemon starts nothing."""
    if p is None:
        return DASH
    if p.launcher == "none":
        return "stopped by operator" if p.operator_stopped else DASH
    text = {
        "idle": "not activated",
        "starting": "starting",
        "connected": "running (not started by pixelsd)",
        "stopping": "stopping",
        "stopped": "stopped by operator",
    }.get(p.state, p.state)
    if p.state == "running":
        text = f"running pid {p.pid}" if p.pid is not None else "running"
        if p.adopted:
            text += " (adopted)"
    elif p.state == "waiting":
        text = "starting" if p.next_start_at is None else f"start {ago(p.next_start_at, now)}"
        if p.last_exit:
            text = f"{text.replace('start', 'restart', 1)} ({p.last_exit})"
    elif p.state in ("flapping", "exited") and p.last_exit:
        text = f"{p.state} ({p.last_exit})"
    if p.restarts:
        text += f", {p.restarts} restart{'' if p.restarts == 1 else 's'}"
    return text


def workstreams_table(items: Sequence[WorkstreamView], now: float) -> str:
    """One line per workstream: owner, milestone, status (with its holds), progress, eta, last
    update."""
    rows = [
        [
            w.id,
            w.name,
            w.orchestrator,
            w.milestone,
            f"{w.status} ({', '.join(w.holds)})" if w.holds else w.status,
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


def escalation_state(e: EscalationView, now: float) -> str:
    """The lifecycle state, with the snooze while it lasts ("open, snoozed 4h")."""
    if e.state != "resolved" and e.snoozed_until is not None and e.snoozed_until > now:
        return f"{e.state}, snoozed {duration(e.snoozed_until - now)}"
    return e.state


def escalations_table(items: Sequence[EscalationView], now: float) -> str:
    """One line per escalation: id, severity, state, kind, count, age, inhibition, affected
    workstreams and the issue (last: the only free text)."""
    rows = [
        [
            e.id,
            e.severity,
            escalation_state(e, now),
            e.kind or e.type,
            str(e.count),
            duration(now - e.raised_at),
            joined(e.inhibited_by),
            joined(e.affected_workstreams),
            e.issue,
        ]
        for e in items
    ]
    headers = ["ID", "SEVERITY", "STATE", "KIND", "COUNT", "AGE", "INHIBITED BY", "AFFECTED"]
    return table([*headers, "ISSUE"], rows)


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


def render_escalation(e: EscalationView, now: float) -> str:
    """One escalation in full: after ack, resolve or snooze."""
    head = f"{e.id}  {escalation_state(e, now)}  {e.severity}  {e.kind or e.type}"
    raised = ago(e.raised_at, now)
    if e.count > 1:
        raised += f", raised {e.count} times"
    if e.updated_at is not None:
        raised += f", last change {ago(e.updated_at, now)}"
    snoozed = ""
    if e.snoozed_until is not None:
        snoozed = f"until {local_time(e.snoozed_until)} ({ago(e.snoozed_until, now)})"
    inhibited = ""
    if e.inhibited_by:
        inhibited = f"{', '.join(e.inhibited_by)} (not notified until it passes)"
    details = ", ".join(f"{key}={value}" for key, value in sorted(e.details.items()))
    body = fields(
        [
            ("from", e.orchestrator),
            ("issue", e.issue),
            ("affected", ", ".join(e.affected_workstreams)),
            ("help needed", e.help_needed),
            ("raised", raised),
            ("acknowledged", ago(e.acknowledged_at, now) if e.acknowledged_at else ""),
            ("resolved", ago(e.resolved_at, now) if e.resolved_at else ""),
            ("snoozed", snoozed),
            ("inhibited by", inhibited),
            ("note", e.note),
            ("options", "; ".join(e.options)),
            ("details", details),
        ]
    )
    return f"{head}\n{body}"


def gates_table(items: Sequence[GateView], now: float) -> str:
    """One line per gate: state, evaluation run, when decided, what failed (last: free text)."""
    rows = [
        [
            g.id,
            g.name,
            str(g.week) if g.week is not None else DASH,
            g.state,
            str(g.run),
            ago(g.decided_at, now) if g.decided_at is not None else DASH,
            joined(g.failures, "; "),
        ]
        for g in items
    ]
    return table(["ID", "NAME", "WEEK", "STATE", "RUN", "DECIDED", "FAILURES"], rows)


def render_gates(items: list[GateView], now: float) -> str:
    """The gates table alone."""
    return gates_table(items, now)


def check_result(name: str, r: CheckResultView) -> str:
    """One check's outcome, then the tail of its output, indented."""
    if r.exit_status is None:
        verdict = "did not finish (timed out or could not start)"
    else:
        verdict = f"{'passed' if r.exit_status == 0 else 'failed'} (exit {r.exit_status})"
    lines = [f"  {name}: {verdict} in {r.duration_s:.1f}s"]
    output = r.output.rstrip("\n").splitlines()
    if len(output) > OUTPUT_TAIL_LINES:
        lines.append(f"    | [... {len(output) - OUTPUT_TAIL_LINES} earlier lines: see --json ...]")
    lines.extend(f"    | {line}".rstrip() for line in output[-OUTPUT_TAIL_LINES:])
    return "\n".join(lines)


def render_gate(g: GateView, now: float) -> str:
    """One gate in full: after `gate check` (criteria, metrics, failures, check results)."""
    week = f"  (week {g.week})" if g.week is not None else ""
    state = f"{g.state} (run {g.run})"
    if g.state == "checking":
        state += ": checks running; `pixelsctl gates` shows the verdict"
    body = fields(
        [
            ("state", state),
            ("started", ago(g.started_at, now) if g.started_at is not None else ""),
            ("decided", ago(g.decided_at, now) if g.decided_at is not None else ""),
            ("passed", ago(g.passed_at, now) if g.passed_at is not None else ""),
            ("workstreams", ", ".join(g.workstreams)),
            ("metrics", ", ".join(f"{k} = {v:g}" for k, v in sorted(g.metrics.items()))),
        ]
    )
    sections = [f"{g.id}  {g.name}{week}\n{body}"]
    if g.criteria:
        sections.append("criteria:\n" + bullets(g.criteria))
    if g.failures:
        sections.append("failures:\n" + bullets(g.failures))
    if g.checks:
        results = [
            check_result(name, g.results[name]) if name in g.results else f"  {name}: not run"
            for name in g.checks
        ]
        sections.append("checks:\n" + "\n".join(results))
    return "\n".join(sections)


def render_spawn(o: OrchestratorView, now: float) -> str:
    """What `spawn` did: cleared the stop and flapping; starting it, or why not."""
    p = o.process
    if p is None or p.launcher == "none":
        return (
            f"{o.name}: operator stop and flapping cleared; this pixelsd starts no orchestrators "
            "(--launcher none): start it yourself"
        )
    if p.state in ("running", "connected", "starting", "stopping"):
        where = f" (pid {p.pid})" if p.pid is not None else ""
        return f"{o.name} is already {p.state}{where}; operator stop and flapping cleared"
    return f"spawning {o.name} ({p.launcher}); `pixelsctl orchestrators` shows it once it is up"


def render_stop(o: OrchestratorView, now: float) -> str:
    """What `stop` did: told it to stop; stopping it or already stopped; kept stopped."""
    p = o.process
    if p is None or p.launcher == "none":
        return (
            f"told {o.name} to stop (this pixelsd does not run it: --launcher none); it is told "
            f"again whenever it connects, until `pixelsctl spawn {o.name}`"
        )
    state = "stopping" if p.state == "stopping" else "stopped"
    return f"{state} {o.name}; it stays stopped until `pixelsctl spawn {o.name}`"


def render_halt(h: HoldView, now: float) -> str:
    """One line: what is halted now, and by what ("halted model: gate:gate-1, operator")."""
    return f"halted {h.target}: {joined(h.holds)}"


def render_resume(h: HoldView, now: float) -> str:
    """One line: resumed, or which holds (failed gates) still keep it halted."""
    if not h.holds:
        return f"resumed {h.target}"
    return f"lifted the operator's hold on {h.target}; still halted by {', '.join(h.holds)}"


def decisions_table(items: Sequence[DecisionView], now: float) -> str:
    """One line per decision: state, kind, source, age, workstreams, ADR number, title."""
    rows = [
        [
            d.id,
            d.state,
            d.kind,
            d.source,
            duration(now - d.created_at),
            joined(d.workstreams),
            str(d.adr) if d.adr else DASH,
            d.title,
        ]
        for d in items
    ]
    return table(["ID", "STATE", "KIND", "SOURCE", "AGE", "WORKSTREAMS", "ADR", "TITLE"], rows)


def render_decisions(items: list[DecisionView], now: float) -> str:
    """The decisions table alone."""
    return decisions_table(items, now)


def render_decision(d: DecisionView, now: float) -> str:
    """One decision in full: after approve or reject."""
    adr = ""
    if d.adr:
        adr = f"{d.adr} ({d.adr_file})" if d.adr_file else str(d.adr)
    body = fields(
        [
            ("title", d.title),
            ("from", d.source),
            ("parties", ", ".join(d.parties)),
            ("workstreams", ", ".join(d.workstreams)),
            ("created", ago(d.created_at, now)),
            ("decided", ago(d.decided_at, now) if d.decided_at is not None else ""),
            ("decision", d.decision),
            ("consequences", d.consequences),
            ("adr", adr),
        ]
    )
    sections = [f"{d.id}  {d.state}  {d.kind}\n{body}"]
    if d.context:
        sections.append("context:\n" + bullets([d.context], mark=""))
    if d.options:
        sections.append(
            "options:\n"
            + "\n".join(bullets([o], mark=f"{i}. ") for i, o in enumerate(d.options, 1))
        )
    return "\n".join(sections)


def render_plan_change(c: PlanChangeView, now: float) -> str:
    """One line: the change made ("plan change 3: WS-05 now depends on WS-02 (operator: why)")."""
    why = f"{c.source}: {c.reason}" if c.reason else c.source
    return f"plan change {c.n}: {c.detail} ({why})"


def plan_changes_table(items: Sequence[PlanChangeView], now: float) -> str:
    """One line per runtime plan change, in order: when, kind, workstream, by whom, what, why."""
    rows = [
        [str(c.n), local_time(c.at), c.kind, c.workstream, c.source, c.detail, c.reason or DASH]
        for c in items
    ]
    return table(["N", "AT", "KIND", "WORKSTREAM", "SOURCE", "CHANGE", "REASON"], rows)


def render_plan_changes(items: list[PlanChangeView], now: float) -> str:
    """The plan changes table alone."""
    return plan_changes_table(items, now)


def render_ping(result: dict[str, Any], now: float) -> str:
    """One line: who answered."""
    daemon = result.get("daemon", "?")
    pid = result.get("pid", "?")
    plan = result.get("plan", "?")
    line = f"pixelsd {daemon} (pid {pid}) is answering; plan {plan}"
    security = result.get("security") or {}
    bad = security.get("bad_frames_by_peer") or {}
    if security.get("denied") or security.get("throttled") or bad:
        # Only when something happened: a quiet daemon's ping stays one line.
        worst = ", ".join(f"{peer} {n}" for peer, n in sorted(bad.items(), key=lambda i: -i[1])[:5])
        line += (
            f"\nsecurity: {security.get('denied', 0)} denied, "
            f"{security.get('throttled', 0)} throttled; bad frames by peer: {worst or 'none'}"
        )
    return line


# --- poll, watch, verify-completion ---------------------------------------------------------


class PollResult(Struct, kw_only=True):
    """The ``poll`` request's result (a plain map on the wire: docs/protocol.md, section 6)."""

    polled: list[str]
    deadline_s: float


class ReportNowResult(Struct, kw_only=True):
    """The ``report_now`` request's result: the week written and its path (relative to the state
    dir)."""

    week: int
    path: str


def render_poll(result: PollResult, now: float) -> str:
    """One line: who was polled and when their answers are due, or that nobody was."""
    if not result.polled:
        return "no orchestrator is connected; nothing polled"
    return f"polled {', '.join(result.polled)} (answers due within {result.deadline_s:.0f} s)"


def _gib(n: float | None) -> str:
    return "-" if n is None else f"{n / (1 << 30):.1f} GiB"


def _num(value: float | None, unit: str, scale: float = 1.0, digits: int = 0) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}{unit}"


def render_telemetry(result: dict[str, Any], now: float) -> str:
    """The latest sample: one row per GPU, host (or unified) memory and pressure, then what is
    not supported here and why telemetry is off if it is."""
    lines: list[str] = []
    if not result.get("enabled"):
        lines.append(f"GPU telemetry: off ({result.get('reason') or 'no reason given'})")
    sample = result.get("sample")
    info = result.get("info") or {}
    if sample is None:
        lines.append("no sample yet" if "sample" in result else "")
        return "\n".join(line for line in lines if line)
    names = {g["index"]: g["name"] for g in info.get("gpus", [])}
    gpus = sample.get("gpus") or []
    if gpus:
        rows = [
            [
                f"{g['index']} {names.get(g['index'], '')}".strip(),
                g.get("health", "ok"),
                _num(g.get("utilization_ratio"), "%", 100),
                _num(g.get("temperature_celsius"), " C"),
                _num(g.get("power_watts"), " W"),
                f"{_gib(g.get('memory_used_bytes'))} / {_gib(g.get('memory_total_bytes'))}",
                _num(g.get("sm_clock_hertz"), " MHz", 1e-6),
                "-" if g.get("performance_state") is None else f"P{g['performance_state']}",
            ]
            for g in gpus
        ]
        lines.append(
            table(["GPU", "HEALTH", "UTIL", "TEMP", "POWER", "MEMORY", "SM", "PSTATE"], rows)
        )
    host = sample.get("host")
    if host is not None:
        used = host["total_bytes"] - host["available_bytes"]
        what = "unified memory" if sample.get("unified") else "host memory"
        lines.append(
            f"{what}: {_gib(used)} used of {_gib(host['total_bytes'])} "
            f"({used / host['total_bytes'] * 100:.0f} %)"
        )
    pressure = sample.get("pressure")
    if pressure is not None:
        some = pressure["some"]
        lines.append(f"memory pressure (some, avg10): {some.get('avg10', 0) * 100:.1f} %")
    for g in info.get("gpus", []):
        if g.get("unsupported"):
            why = "; ".join(f"{k}: {v}" for k, v in sorted(g["unsupported"].items()))
            lines.append(f"GPU {g['index']} unsupported: {why}")
    lines.append(f"sampled {ago(sample.get('ts'), now)} ({result.get('samples', 0)} samples)")
    return "\n".join(lines)


#: Width of the kind column of `pixelsctl watch` ("orchestrator", the longest kind).
WATCH_KIND_WIDTH = 12
#: Width of the subject column: ids ("WS-04", "E-12", "gate-1", "week 3") and most orchestrators.
WATCH_SUBJECT_WIDTH = 11


def render_notifications(items: list[dict[str, Any]], now: float) -> str:
    if not items:
        return "no notifications"
    rows = [
        [
            str(n["id"]),
            n["sink"],
            n["kind"],
            n["key"],
            n["state"],
            str(n["attempts"]),
            ago(n["next_attempt"], now) if n["next_attempt"] is not None else "-",
            (n["last_error"] or "-")[:60],
        ]
        for n in items
    ]
    return table(["ID", "SINK", "KIND", "KEY", "STATE", "TRIES", "NEXT", "ERROR"], rows)


def render_notify_retry(n: dict[str, Any], now: float) -> str:
    if n["state"] == "sent":
        return f"notification {n['id']} to {n['sink']} was sent {ago(n['sent_at'], now)}"
    return f"notification {n['id']} to {n['sink']} will be sent again now ({n['key']})"


def render_notify_test(result: dict[str, Any], now: float) -> str:
    return (
        f"test notification {result['id']} queued for {result['sink']}; "
        "`pixelsctl notifications` shows how it went"
    )


def watch_line(event: WatchEvent) -> str:
    """``HH:MM:SS  kind  subject  text`` in columns, the time local. The subject is not repeated
    where the text starts with it ("WS-04 in_progress -> complete")."""
    text = event.text
    if text.startswith(event.subject + " "):
        text = text[len(event.subject) + 1 :]
    clock = datetime.fromtimestamp(event.at).strftime("%H:%M:%S")
    return (
        f"{clock}  {event.kind:<{WATCH_KIND_WIDTH}}  {event.subject:<{WATCH_SUBJECT_WIDTH}}  {text}"
    )


def completion(
    workstreams: Sequence[WorkstreamView], gates: Sequence[GateView]
) -> tuple[str, list[str]]:
    """(summary, missing): the count line, and one line per workstream not complete and gate not
    passed ("WS-14 in_progress 60%", "gate-3 failed: ..."). Complete when ``missing`` is empty.

    Deferred workstreams are listed as missing: `verify-completion` answers "is every workstream
    done", and deferred work was not done (the daemon's own completion mark counts it as out of
    the plan instead)."""
    missing: list[str] = []
    done = 0
    for w in workstreams:
        if w.status == "complete":
            done += 1
            continue
        line = f"{w.id} {w.status} {percent(w.progress)}"
        if w.holds:
            line += f" (held by {', '.join(w.holds)})"
        elif w.blocker:
            line += f" (blocker: {w.blocker})"
        missing.append(line)
    passed = 0
    for g in gates:
        if g.state == "passed":
            passed += 1
        elif g.state == "failed" and g.failures:
            missing.append(f"{g.id} failed: {'; '.join(g.failures)}")
        else:
            missing.append(f"{g.id} {g.state}")
    verdict = "complete" if not missing else "incomplete"
    summary = (
        f"{verdict}: {done}/{len(workstreams)} workstreams complete, "
        f"{passed}/{len(gates)} gates passed"
    )
    return summary, missing
