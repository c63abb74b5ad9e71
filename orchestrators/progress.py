"""What an agent says about its work, as the runner reads it: its STATUS.json, its progress lines,
and which of those (or plain liveness) speaks for the workstream.

STATUS.json, the source project's shape (written atomically: a temporary file renamed over it)::

    {"workstream": "WS-05", "status": "in_progress", "progress": 0.42,
     "started_at": "2026-01-05T09:00:00Z", "completion_date": null,
     "blockers": [], "metrics": {"inference_time_s": 2.6}}

Progress lines, for agents that would rather print than write a file: a line on the agent's stdout
(or stderr: both go to its agent.log) that starts with one of these keywords, in column 0::

    PIXELS-STATUS {"status": "in_progress", "progress": 0.4, ...}   the STATUS.json shape, one line
    PIXELS-PROGRESS 0.4          in progress at 40 % (also 40 or 40%); clears a blocker
    PIXELS-BLOCKED waiting for the GPU quota    blocked, with that blocker (progress kept)
    PIXELS-METRIC inference_time_s 2.6          one performance metric (kept until changed)
    PIXELS-COMPLETE              the work is done

Each line updates the workstream's state as the last line left it. Any other line is ignored; a
line that starts with ``PIXELS-`` but is not one of these is a mistake, reported once. A line is
read once it ends (newline): flush after each one (``print(..., flush=True)``, or
``PYTHONUNBUFFERED=1``), or it waits in the agent's buffer.

Which speaks (``[agent] progress``): ``auto`` prefers STATUS.json once one has been read, else the
lines, else liveness (running: in progress at 0; exit 0: complete); ``status_file``, ``stdout`` and
``liveness`` use only that source.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from protocol.messages import WorkstreamReport

#: protocol.messages.Text: the longest string a message field may carry.
TEXT_MAX = 4096
#: The longest progress line read (a PIXELS-STATUS line with its metrics fits many times over);
#: a longer line is skipped, so one runaway line cannot grow the runner's memory.
MAX_LINE_BYTES = 64 * 1024
#: The most of an agent's output read per look: a chatty agent costs bounded work per look and
#: the rest is read at the next.
READ_CHUNK_BYTES = 1024 * 1024

LINE_PREFIX = "PIXELS-"
KEYWORDS = (
    "PIXELS-STATUS",
    "PIXELS-PROGRESS",
    "PIXELS-BLOCKED",
    "PIXELS-METRIC",
    "PIXELS-COMPLETE",
)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")  # protocol.messages.Name
STATUSES = ("not_started", "in_progress", "blocked", "complete")


class BadStatusFile(ValueError):
    """A STATUS.json (or PIXELS-STATUS line) that cannot be used; the message says why."""


class BadProgressLine(ValueError):
    """A PIXELS- line that cannot be used; the message says why."""


@dataclass(frozen=True)
class Reported:
    """One workstream's state as the runner understood it from its agent."""

    report: WorkstreamReport
    metrics: dict[str, float] = field(default_factory=dict)

    def key(self) -> tuple[Any, ...]:
        """What a change is judged on."""
        r = self.report
        return (r.status, r.progress, r.blocker, r.completion_time, sorted(self.metrics.items()))


IN_PROGRESS = Reported(WorkstreamReport(status="in_progress", progress=0.0))
COMPLETE = Reported(WorkstreamReport(status="complete", progress=1.0))


# --- STATUS.json ----------------------------------------------------------------------------


def parse_status(text: str, workstream: str) -> Reported:
    """Read a STATUS.json document (the source project's shape). Raises ValueError saying what
    is wrong. progress is 0..1 (a value above 1, up to 100, is read as a percentage); blockers are
    joined into the report's one blocker text; metrics that are not numbers, or whose names are
    not wire names, are left out."""
    doc = json.loads(text)
    if not isinstance(doc, dict):
        raise BadStatusFile("not a JSON object")
    named = doc.get("workstream", workstream)
    if named != workstream:
        raise BadStatusFile(f"it is about {named!r}, not {workstream}")
    status = doc.get("status")
    if status == "completed":
        status = "complete"
    if status not in STATUSES:
        raise BadStatusFile(f"status {status!r} is not one of {', '.join(sorted(STATUSES))}")
    progress = _ratio(doc.get("progress", 0.0))
    if status == "complete":
        progress = 1.0
    blockers = doc.get("blockers") or []
    if not isinstance(blockers, list):
        raise BadStatusFile("blockers is not a list")
    blocker = "; ".join(str(b) for b in blockers if str(b).strip())[:TEXT_MAX] or None
    completion = doc.get("completion_date")
    completion_time = _timestamp(completion) if status == "complete" and completion else None
    metrics_doc = doc.get("metrics") or {}
    if not isinstance(metrics_doc, dict):
        raise BadStatusFile("metrics is not an object")
    metrics = {
        str(k): float(v)
        for k, v in metrics_doc.items()
        if NAME_RE.match(str(k))
        and isinstance(v, int | float)
        and not isinstance(v, bool)
        and math.isfinite(v)
    }
    report = WorkstreamReport(
        status=status,
        progress=progress,
        blocker=blocker,
        completion_time=completion_time,
    )
    return Reported(report=report, metrics=metrics)


def _ratio(value: object) -> float:
    """0..1; a number above 1 (up to 100) is a percentage. Raises BadStatusFile."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadStatusFile(f"progress {value!r} is not a number")
    if 1.0 < value <= 100.0:
        value = value / 100.0
    if not 0.0 <= value <= 1.0:
        raise BadStatusFile(f"progress {value!r} is not between 0 and 1")
    return float(value)


def _timestamp(value: object) -> float | None:
    """An ISO 8601 time (or unix seconds) as unix seconds; None if it cannot be read."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) if value >= 0 else None
    if not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    ts = dt.timestamp()
    return ts if ts >= 0 else None


# --- progress lines -------------------------------------------------------------------------


def parse_line(line: str, workstream: str, last: Reported | None) -> Reported | None:
    """The state after one line of agent output, given the state ``last`` left; None if the line
    is not a progress line. Raises BadProgressLine (a PIXELS- line that cannot be used)."""
    if not line.startswith(LINE_PREFIX):
        return None
    keyword, _, rest = line.rstrip("\r\n").partition(" ")
    rest = rest.strip()
    before = last or IN_PROGRESS
    if keyword == "PIXELS-STATUS":
        try:
            return parse_status(rest, workstream)
        except ValueError as exc:
            raise BadProgressLine(f"PIXELS-STATUS: {exc}") from None
    if keyword == "PIXELS-PROGRESS":
        text = rest.removesuffix("%")
        try:
            value = float(text)
            progress = _ratio(value / 100.0 if rest.endswith("%") else value)
        except (ValueError, BadStatusFile):
            raise BadProgressLine(
                f"PIXELS-PROGRESS {rest!r}: give a number from 0 to 1 (or a percentage: 40%)"
            ) from None
        report = WorkstreamReport(status="in_progress", progress=progress)
        return replace(before, report=report)
    if keyword == "PIXELS-BLOCKED":
        if not rest:
            raise BadProgressLine("PIXELS-BLOCKED needs a text: what blocks the work")
        report = WorkstreamReport(
            status="blocked", progress=before.report.progress, blocker=rest[:TEXT_MAX]
        )
        return replace(before, report=report)
    if keyword == "PIXELS-METRIC":
        name, _, value_text = rest.partition(" ")
        try:
            value = float(value_text)
        except ValueError:
            value = math.nan
        if not NAME_RE.match(name) or not math.isfinite(value):
            raise BadProgressLine(
                f"PIXELS-METRIC {rest!r}: give a name (letters, digits, '_', '.', '-') and a "
                "number, e.g. PIXELS-METRIC inference_time_s 2.6"
            )
        return replace(before, metrics={**before.metrics, name: value})
    if keyword == "PIXELS-COMPLETE":
        return replace(before, report=COMPLETE.report)
    raise BadProgressLine(f"unknown keyword {keyword!r}; known: {', '.join(KEYWORDS)}")


@dataclass
class LineReader:
    """Reads the lines appended to a log from ``offset`` on, a look at a time; a line is given
    once it ends (``final``: the agent has exited, so an unended last line counts too)."""

    path: Path
    offset: int
    _partial: bytes = b""
    _skipping: bool = False  # inside a line longer than MAX_LINE_BYTES

    def read(self, final: bool = False) -> list[str]:
        """The lines ended since the last read (at most READ_CHUNK_BYTES of output; ``final``:
        all of it, the unended last line included)."""
        lines: list[str] = []
        while True:
            try:
                with self.path.open("rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    if size < self.offset:  # truncated by someone: start over
                        self.offset, self._partial, self._skipping = 0, b"", False
                    f.seek(self.offset)
                    data = f.read(READ_CHUNK_BYTES)
            except OSError:
                return lines
            self.offset += len(data)
            lines.extend(self._split(data))
            if not final or not data:
                break
        if final and self._partial:
            if not self._skipping:
                lines.append(self._partial.decode("utf-8", errors="replace"))
            self._partial, self._skipping = b"", False
        return lines

    def _split(self, data: bytes) -> list[str]:
        chunks = (self._partial + data).split(b"\n")
        self._partial = chunks.pop()
        lines = []
        for chunk in chunks:
            if self._skipping:
                self._skipping = False
            elif len(chunk) <= MAX_LINE_BYTES:
                lines.append(chunk.decode("utf-8", errors="replace"))
        if len(self._partial) > MAX_LINE_BYTES:
            self._partial, self._skipping = b"", True
        return lines


# --- which source speaks --------------------------------------------------------------------


def choose(
    mode: str, file: Reported | None, lines: Reported | None, liveness: Reported | None
) -> Reported | None:
    """The state to report: in ``auto``, STATUS.json once read, else the lines, else liveness;
    otherwise only the source ``mode`` names."""
    if mode == "status_file":
        return file
    if mode == "stdout":
        return lines
    if mode == "liveness":
        return liveness
    return file or lines or liveness


def uses_file(mode: str) -> bool:
    return mode in ("auto", "status_file")


def uses_lines(mode: str) -> bool:
    return mode in ("auto", "stdout")


def uses_liveness(mode: str) -> bool:
    return mode in ("auto", "liveness")
