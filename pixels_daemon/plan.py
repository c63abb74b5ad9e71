"""The plan: milestones, phases, orchestrators, workstreams and gates, read from a TOML file.

The daemon knows one plan. ``load_plan(None)`` gives the embedded DGX-Pixels plan
(pixels_daemon/plans/dgx_pixels.toml); any other project passes its own file. The format is
specified in docs/configuration.md, "Plan file"; this module is its implementation.

Reading a plan happens in three steps, each with its own kind of error, all raised as ``PlanError``
with one line that names the file and the line or the id at fault:

1. TOML syntax (tomllib; its message carries line and column),
2. shape and types (msgspec against the private ``_*Table`` structs; unknown keys are refused so a
   misspelt key cannot be silently ignored),
3. meaning (references resolve, ids are unique and valid wire names, no dependency cycle, ...).

Pure apart from ``load_plan`` and ``default_plan``, which read a file or the package resource.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import heapq
import importlib.resources
import math
import os
import re
import tomllib
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import msgspec
from msgspec import Struct

from protocol.messages import Name

#: Version of the file format. A file may say ``[plan] format = N``; a larger N than this is refused
#: (it was written for a newer pixelsd), so new keys never meet an old reader silently.
PLAN_FORMAT = 1

#: ``Plan.source`` of the embedded default plan.
EMBEDDED_SOURCE = "<embedded dgx-pixels>"
_EMBEDDED_PACKAGE = "pixels_daemon.plans"
_EMBEDDED_FILE = "dgx_pixels.toml"

Priority = Literal["P0", "P1", "P2"]
MetricOp = Literal["<", "<=", ">", ">=", "=="]
PRIORITIES: tuple[str, ...] = typing.get_args(Priority)
METRIC_OPS: tuple[str, ...] = typing.get_args(MetricOp)

#: Ids travel on the wire (register.orchestrator, status.workstreams keys, ...), so they obey the
#: protocol's Name rule; taken from protocol.messages so the two cannot drift apart.
_NAME_META: msgspec.Meta = typing.get_args(Name)[1]
_NAME_RE = re.compile(str(_NAME_META.pattern))
_NAME_MAX = int(_NAME_META.max_length or 64)

#: A gate check that has not exited after this long counts as failed. Long enough for a hardware
#: verification or a short benchmark script; bounded so a hung script cannot hold a gate forever.
DEFAULT_CHECK_TIMEOUT_S = 300.0

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
}


class PlanError(Exception):
    """Raised by ``parse_plan`` / ``load_plan`` when a plan file cannot be read or is invalid.

    ``str(exc)`` is one line, ``<source>: <what>``, naming the line (TOML syntax) or the id at
    fault, fit to print after ``pixelsd: error:``. ``source`` and ``detail`` hold the two parts.
    """

    def __init__(self, source: str, detail: str) -> None:
        self.source = source
        self.detail = " ".join(detail.split())  # one line, whatever the underlying message held
        super().__init__(f"{source}: {self.detail}")


# --- the plan model (public, immutable) ---------------------------------------------------------


class Milestone(Struct, frozen=True, kw_only=True):
    """A milestone (M0...): a named group of workstreams."""

    id: str
    name: str


class Phase(Struct, frozen=True, kw_only=True):
    """A stretch of the timeline (weeks first_week..last_week, 1-based) and its milestones."""

    id: int
    name: str
    first_week: int
    last_week: int
    milestones: tuple[str, ...]


class Orchestrator(Struct, frozen=True, kw_only=True):
    """A domain orchestrator. ``id`` is its wire name (``register.orchestrator``).

    It activates once every gate in ``after_gates`` has passed and every workstream in
    ``after_workstreams`` is complete. ``agent_types``: the kinds of agent it may run.
    """

    id: str
    name: str
    agent_types: tuple[str, ...] = ()
    after_gates: tuple[str, ...] = ()
    after_workstreams: tuple[str, ...] = ()


class Workstream(Struct, frozen=True, kw_only=True):
    """A unit of work owned by one orchestrator, estimated at min_days..max_days.

    spec: path or text describing the work (free form). command: an agent command template for the
    orchestrator runner (not interpreted by the daemon). gpu_bound: its work runs on the GPU
    (training, inference), so a GPU idle for the stall window while it is in progress is a likely
    hidden stall.
    """

    id: str
    name: str
    orchestrator: str
    milestone: str
    min_days: int
    max_days: int
    depends_on: tuple[str, ...] = ()
    priority: Priority = "P1"
    agent_type: str = ""
    critical_path: bool = False
    spec: str = ""
    command: str | None = None
    gpu_bound: bool = False


class GateCheck(Struct, frozen=True, kw_only=True):
    """A command whose exit status decides part of a gate: 0 passes, anything else fails.

    Run with ``/bin/sh -c`` in the directory of the plan file; past ``timeout_s`` it fails.
    """

    name: str
    command: str
    timeout_s: float = DEFAULT_CHECK_TIMEOUT_S


class MetricCriterion(Struct, frozen=True, kw_only=True):
    """A threshold on a reported performance metric: ``<metric> <op> <value>`` must hold."""

    metric: str
    op: MetricOp
    value: float

    def holds(self, observed: float) -> bool:
        """Whether ``observed`` meets the threshold."""
        return _OPS[self.op](observed, self.value)


class Gate(Struct, frozen=True, kw_only=True):
    """A checkpoint: passes when its workstreams are complete and its checks and metrics pass.

    week: planned end of that week (1-based), or None. criteria: human descriptions for reports.
    """

    id: str
    name: str
    week: int | None = None
    workstreams: tuple[str, ...] = ()
    criteria: tuple[str, ...] = ()
    checks: tuple[GateCheck, ...] = ()
    metrics: tuple[MetricCriterion, ...] = ()


class Plan(Struct, frozen=True, kw_only=True):
    """A validated plan. The dicts are keyed by id in file order; treat them as read-only.

    phases: ordered by id; every milestone belongs to exactly one phase.
    source: the file path as given, or EMBEDDED_SOURCE.
    fingerprint: hex sha256 of a canonical encoding of everything but ``source``: the same plan
    gives the same fingerprint whatever its file's layout, comments or location.
    """

    name: str
    weeks: int
    phases: tuple[Phase, ...]
    milestones: dict[str, Milestone]
    orchestrators: dict[str, Orchestrator]
    workstreams: dict[str, Workstream]
    gates: dict[str, Gate]
    source: str
    fingerprint: str

    def workstreams_of(self, orchestrator_id: str) -> tuple[Workstream, ...]:
        """The orchestrator's workstreams in file order. KeyError if there is no such one."""
        if orchestrator_id not in self.orchestrators:
            raise KeyError(orchestrator_id)
        return _by_orchestrator(self).get(orchestrator_id, ())

    def dependents(self, ws_id: str) -> set[str]:
        """Every workstream depending on ``ws_id``, directly or transitively. KeyError if none."""
        if ws_id not in self.workstreams:
            raise KeyError(ws_id)
        direct: dict[str, list[str]] = {wid: [] for wid in self.workstreams}
        for ws in self.workstreams.values():
            for dep in ws.depends_on:
                direct[dep].append(ws.id)
        found: set[str] = set()
        todo = [ws_id]
        while todo:
            for child in direct[todo.pop()]:
                if child not in found:
                    found.add(child)
                    todo.append(child)
        return found

    def topological_order(self) -> tuple[str, ...]:
        """All workstream ids, each after its dependencies; among those ready, file order first."""
        return _topological_order(self.workstreams)

    def critical_path(self) -> tuple[str, ...]:
        """The workstreams marked ``critical_path``, in topological order."""
        return tuple(w for w in self.topological_order() if self.workstreams[w].critical_path)

    def phase_of_milestone(self, milestone_id: str) -> Phase:
        """The phase that holds the milestone. KeyError if there is no such milestone."""
        for phase in self.phases:
            if milestone_id in phase.milestones:
                return phase
        raise KeyError(milestone_id)


# --- the file's shape (private; msgspec checks types and refuses unknown keys) ------------------

_NonEmpty = typing.Annotated[str, msgspec.Meta(min_length=1)]


class _PlanTable(Struct, kw_only=True, forbid_unknown_fields=True):
    name: _NonEmpty
    weeks: int
    format: int = PLAN_FORMAT


class _PhaseTable(Struct, kw_only=True, forbid_unknown_fields=True):
    id: int
    name: _NonEmpty | None = None
    weeks: tuple[int, int]
    milestones: list[str] = []


class _MilestoneTable(Struct, kw_only=True, forbid_unknown_fields=True):
    id: str
    name: _NonEmpty | None = None


class _OrchestratorTable(Struct, kw_only=True, forbid_unknown_fields=True):
    id: str
    name: _NonEmpty | None = None
    agent_types: list[_NonEmpty] = []
    after_gates: list[str] = []
    after_workstreams: list[str] = []


class _WorkstreamTable(Struct, kw_only=True, forbid_unknown_fields=True):
    id: str
    name: _NonEmpty | None = None
    orchestrator: str
    milestone: str
    days: int | tuple[int, int]
    depends_on: list[str] = []
    priority: str = "P1"
    agent_type: _NonEmpty | None = None
    critical_path: bool = False
    spec: str = ""
    command: str | None = None
    gpu_bound: bool = False


class _CheckTable(Struct, kw_only=True, forbid_unknown_fields=True):
    name: _NonEmpty | None = None
    command: str
    timeout_s: float = DEFAULT_CHECK_TIMEOUT_S


class _MetricTable(Struct, kw_only=True, forbid_unknown_fields=True):
    metric: str
    op: str
    value: float


class _GateTable(Struct, kw_only=True, forbid_unknown_fields=True):
    id: str
    name: _NonEmpty | None = None
    week: int | None = None
    workstreams: list[str] = []
    criteria: list[str] = []
    checks: list[_CheckTable] = []
    metrics: list[_MetricTable] = []


class _PlanFile(Struct, kw_only=True, forbid_unknown_fields=True):
    plan: _PlanTable
    phases: list[_PhaseTable] = []
    milestones: list[_MilestoneTable] = []
    orchestrators: list[_OrchestratorTable] = []
    workstreams: list[_WorkstreamTable] = []
    gates: list[_GateTable] = []


_ARRAYS = {
    "phases": "phase",
    "milestones": "milestone",
    "orchestrators": "orchestrator",
    "workstreams": "workstream",
    "gates": "gate",
}


# --- entry points -------------------------------------------------------------------------------


def parse_plan(text: str, source: str) -> Plan:
    """Parse and validate a plan from TOML text; ``source`` names it in errors and ``Plan.source``.

    Raises PlanError.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PlanError(source, _toml_message(str(exc))) from None
    try:
        table = msgspec.convert(raw, _PlanFile)
    except msgspec.ValidationError as exc:
        raise PlanError(source, _shape_message(str(exc), raw)) from None
    return _Builder(table, source).build()


def load_plan(path: str | os.PathLike[str] | None) -> Plan:
    """Read and validate the plan file at ``path``; None gives the embedded default plan.

    Raises PlanError (unreadable file, bad TOML, invalid plan).
    """
    if path is None:
        return default_plan()
    source = os.fspath(path)
    try:
        with open(source, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise PlanError(source, f"cannot read plan file: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlanError(
            source, f"not UTF-8 text (bad byte at offset {exc.start}): save the file as UTF-8"
        ) from None
    return parse_plan(text, source)


@functools.cache
def default_plan() -> Plan:
    """The embedded DGX-Pixels plan (read once from the package, so it works from a wheel)."""
    resource = importlib.resources.files(_EMBEDDED_PACKAGE).joinpath(_EMBEDDED_FILE)
    return parse_plan(resource.read_text(encoding="utf-8"), EMBEDDED_SOURCE)


# --- error messages -----------------------------------------------------------------------------

_TOML_POS = re.compile(
    r"^(?P<what>.*?)\s*\((?:at line (?P<line>\d+), column (?P<col>\d+)|at end of document)\)$"
)


def _toml_message(message: str) -> str:
    """tomllib's "Expected '=' ... (at line 7, column 5)" -> "line 7, column 5: Expected '='..."."""
    m = _TOML_POS.match(message)
    if m is None:
        return f"invalid TOML: {message}"
    if m["line"] is None:
        return f"end of file: {m['what']}"
    return f"line {m['line']}, column {m['col']}: {m['what']}"


_SHAPE_PATH = re.compile(r"^(?P<what>.*) - at `\$(?P<path>.*)`$")
_ITEM_PATH = re.compile(r"^\.(?P<array>\w+)\[(?P<index>\d+)\](?:\.?(?P<rest>.*))$")


def _shape_message(message: str, raw: Mapping[str, Any]) -> str:
    """A msgspec error ("... - at `$.workstreams[3].days`") with the index turned into the id."""
    m = _SHAPE_PATH.match(message)
    what, path = (m["what"], m["path"]) if m else (message, "")
    what = (
        what.replace("Object contains unknown field", "unknown key")
        .replace("Object missing required field", "missing key")
        .replace("`object`", "`table`")
    )
    if not path and what == "missing key `plan`":
        return "missing [plan] table: start the file with [plan], name = ... and weeks = ..."
    if not path and what.startswith("unknown key"):
        return f"{what} at top level: a plan has [plan] and [[{']], [['.join(_ARRAYS)}]] tables"
    array = path.removeprefix(".")
    if array in _ARRAYS and what.startswith("Expected `array`"):
        return f"{array} must be an array of tables: write [[{array}]], not [{array}]"
    where = path.removeprefix(".")
    item = _ITEM_PATH.match(path)
    if item and item["array"] in _ARRAYS:
        label = _item_label(raw, item["array"], int(item["index"]))
        where = f"{label}, {item['rest']}" if item["rest"] else label
    return f"{where}: {what}" if where else what


def _item_label(raw: Mapping[str, Any], array: str, index: int) -> str:
    """Name an array item: by its id ("workstream WS-04") if usable, else by position ("#4")."""
    word = _ARRAYS[array]
    items = raw.get(array)
    item = items[index] if isinstance(items, list) and index < len(items) else None
    ident = item.get("id") if isinstance(item, dict) else None
    if isinstance(ident, str) or (isinstance(ident, int) and not isinstance(ident, bool)):
        return f"{word} {ident}"
    return f"{word} #{index + 1}"


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    """A hint for a likely typo; strict (cutoff 0.75) so short ids like WS-9 vs WS-3 get none."""
    candidates = list(known)
    same_case = [k for k in candidates if k.lower() == name.lower()]
    close = same_case or difflib.get_close_matches(name, candidates, n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


# --- validation ---------------------------------------------------------------------------------


class _Builder:
    """Checks the meaning of a well-shaped file and builds the Plan; the first fault raises."""

    def __init__(self, table: _PlanFile, source: str) -> None:
        self.t = table
        self.source = source

    def fail(self, detail: str) -> typing.NoReturn:
        raise PlanError(self.source, detail)

    def build(self) -> Plan:
        t = self.t
        if t.plan.format > PLAN_FORMAT or t.plan.format < 1:
            self.fail(
                f"plan format {t.plan.format} is not supported (this pixelsd reads format "
                f"{PLAN_FORMAT}): upgrade pixelsd or write the file for format {PLAN_FORMAT}"
            )
        if t.plan.weeks < 1:
            self.fail(f"plan.weeks must be a positive number of weeks, not {t.plan.weeks}")
        for array, items in (
            ("milestones", t.milestones),
            ("orchestrators", t.orchestrators),
            ("workstreams", t.workstreams),
            ("gates", t.gates),
        ):
            self.check_ids(_ARRAYS[array], [item.id for item in items])
        if not t.orchestrators:
            self.fail("the plan has no orchestrators: add at least one [[orchestrators]] table")
        if not t.workstreams:
            self.fail("the plan has no workstreams: add at least one [[workstreams]] table")
        if not t.milestones:
            self.fail("the plan has no milestones: add at least one [[milestones]] table")

        milestones = {m.id: Milestone(id=m.id, name=m.name or m.id) for m in t.milestones}
        phases = self.phases(milestones)
        orchestrators = {
            o.id: Orchestrator(
                id=o.id,
                name=o.name or o.id,
                agent_types=tuple(o.agent_types),
                after_gates=tuple(o.after_gates),
                after_workstreams=tuple(o.after_workstreams),
            )
            for o in t.orchestrators
        }
        workstreams = {w.id: self.workstream(w, orchestrators, milestones) for w in t.workstreams}
        cycle = _find_cycle(list(workstreams), {w.id: w.depends_on for w in workstreams.values()})
        if cycle:
            self.fail(f"dependency cycle: {' -> '.join(cycle)}")
        gates = {g.id: self.gate(g, workstreams) for g in t.gates}
        self.activation(orchestrators, workstreams, gates)

        parts: dict[str, Any] = {
            "format": PLAN_FORMAT,
            "name": t.plan.name,
            "weeks": t.plan.weeks,
            "phases": phases,
            # Lists of values, not dicts: file order is part of the plan (display, tie-breaks).
            "milestones": list(milestones.values()),
            "orchestrators": list(orchestrators.values()),
            "workstreams": list(workstreams.values()),
            "gates": list(gates.values()),
        }
        fingerprint = hashlib.sha256(msgspec.json.encode(parts, order="sorted")).hexdigest()
        return Plan(
            name=t.plan.name,
            weeks=t.plan.weeks,
            phases=phases,
            milestones=milestones,
            orchestrators=orchestrators,
            workstreams=workstreams,
            gates=gates,
            source=self.source,
            fingerprint=fingerprint,
        )

    def check_ids(self, kind: str, ids: Sequence[str]) -> None:
        seen: set[str] = set()
        for ident in ids:
            if len(ident) > _NAME_MAX or not _NAME_RE.match(ident):
                self.fail(
                    f"{kind} id {ident!r} is not a valid name: use 1-{_NAME_MAX} letters, digits, "
                    "'_', '.' or '-', starting with a letter or digit"
                )
            if ident in seen:
                self.fail(f"duplicate {kind} id {ident}")
            seen.add(ident)

    def check_refs(
        self, owner: str, relation: str, kind: str, refs: Sequence[str], known: Mapping[str, Any]
    ) -> None:
        """Every ref exists and none is listed twice."""
        seen: set[str] = set()
        for ref in refs:
            if ref not in known:
                self.fail(f"{owner} {relation} unknown {kind} {ref}{_did_you_mean(ref, known)}")
            if ref in seen:
                self.fail(f"{owner} {relation} {kind} {ref} twice")
            seen.add(ref)

    def phases(self, milestones: Mapping[str, Milestone]) -> tuple[Phase, ...]:
        weeks = self.t.plan.weeks
        if not self.t.phases:
            # A plan without phases is one phase: every consumer can rely on phase_of_milestone.
            return (
                Phase(
                    id=1,
                    name=self.t.plan.name,
                    first_week=1,
                    last_week=weeks,
                    milestones=tuple(milestones),
                ),
            )
        seen: set[int] = set()
        phase_of: dict[str, int] = {}
        phases = []
        for p in self.t.phases:
            if p.id < 1:
                self.fail(f"phase id must be a positive integer, not {p.id}")
            if p.id in seen:
                self.fail(f"duplicate phase id {p.id}")
            seen.add(p.id)
            first, last = p.weeks
            if not 1 <= first <= last <= weeks:
                self.fail(
                    f"phase {p.id} has weeks [{first}, {last}]: need 1 <= first <= last <= "
                    f"plan.weeks ({weeks})"
                )
            self.check_refs(f"phase {p.id}", "lists", "milestone", p.milestones, milestones)
            for mid in p.milestones:
                if mid in phase_of:
                    self.fail(f"milestone {mid} is in both phase {phase_of[mid]} and phase {p.id}")
                phase_of[mid] = p.id
            phases.append(
                Phase(
                    id=p.id,
                    name=p.name or f"Phase {p.id}",
                    first_week=first,
                    last_week=last,
                    milestones=tuple(p.milestones),
                )
            )
        for mid in milestones:
            if mid not in phase_of:
                self.fail(f"milestone {mid} is in no phase: list it in one phase's milestones")
        return tuple(sorted(phases, key=lambda phase: phase.id))

    def workstream(
        self,
        w: _WorkstreamTable,
        orchestrators: Mapping[str, Orchestrator],
        milestones: Mapping[str, Milestone],
    ) -> Workstream:
        label = f"workstream {w.id}"
        orch = orchestrators.get(w.orchestrator)
        if orch is None:
            self.fail(
                f"{label} belongs to unknown orchestrator {w.orchestrator}"
                f"{_did_you_mean(w.orchestrator, orchestrators)}"
            )
        if w.milestone not in milestones:
            self.fail(
                f"{label} is in unknown milestone {w.milestone}"
                f"{_did_you_mean(w.milestone, milestones)}"
            )
        low, high = (w.days, w.days) if isinstance(w.days, int) else w.days
        if low < 1 or high < 1:
            self.fail(
                f"{label} has days {list(w.days) if isinstance(w.days, tuple) else w.days}: "
                "estimates must be positive whole days"
            )
        if low > high:
            self.fail(f"{label} has days [{low}, {high}]: the minimum exceeds the maximum")
        if w.priority not in PRIORITIES:
            self.fail(f"{label} has priority {w.priority!r}: use one of {', '.join(PRIORITIES)}")
        self.check_refs(label, "depends on", "workstream", w.depends_on, self.ws_ids)
        agent_type = w.agent_type or (orch.agent_types[0] if orch.agent_types else "")
        if orch.agent_types and agent_type not in orch.agent_types:
            self.fail(
                f"{label} has agent_type {agent_type!r}, which orchestrator {orch.id} does not "
                f"list in agent_types ({', '.join(orch.agent_types)})"
            )
        return Workstream(
            id=w.id,
            name=w.name or w.id,
            orchestrator=w.orchestrator,
            milestone=w.milestone,
            min_days=low,
            max_days=high,
            depends_on=tuple(w.depends_on),
            priority=typing.cast(Priority, w.priority),
            agent_type=agent_type,
            critical_path=w.critical_path,
            spec=w.spec,
            command=w.command,
            gpu_bound=w.gpu_bound,
        )

    @functools.cached_property
    def ws_ids(self) -> dict[str, None]:
        return dict.fromkeys(w.id for w in self.t.workstreams)

    def gate(self, g: _GateTable, workstreams: Mapping[str, Workstream]) -> Gate:
        label = f"gate {g.id}"
        weeks = self.t.plan.weeks
        if g.week is not None and not 1 <= g.week <= weeks:
            self.fail(f"{label} has week {g.week}: need 1 <= week <= plan.weeks ({weeks})")
        self.check_refs(label, "needs", "workstream", g.workstreams, workstreams)
        if not (g.workstreams or g.checks or g.metrics):
            self.fail(f"{label} has nothing to decide it: give it workstreams, checks or metrics")
        checks: list[GateCheck] = []
        for n, c in enumerate(g.checks, start=1):
            name = c.name or f"check-{n}"
            if any(other.name == name for other in checks):
                self.fail(f"{label} has two checks named {name}")
            if not c.command.strip():
                self.fail(f"{label}, check {name}: command is empty: give the command to run")
            if not (c.timeout_s > 0 and math.isfinite(c.timeout_s)):
                self.fail(f"{label}, check {name}: timeout_s must be a positive number of seconds")
            checks.append(GateCheck(name=name, command=c.command, timeout_s=c.timeout_s))
        metrics: list[MetricCriterion] = []
        for m in g.metrics:
            if len(m.metric) > _NAME_MAX or not _NAME_RE.match(m.metric):
                self.fail(
                    f"{label}: metric name {m.metric!r} is not a valid name (the key an "
                    "orchestrator reports in performance_metrics)"
                )
            if m.op not in METRIC_OPS:
                self.fail(
                    f"{label}, metric {m.metric}: op {m.op!r}: use one of {' '.join(METRIC_OPS)}"
                )
            if not math.isfinite(m.value):
                self.fail(f"{label}, metric {m.metric}: value must be a finite number")
            metrics.append(
                MetricCriterion(metric=m.metric, op=typing.cast(MetricOp, m.op), value=m.value)
            )
        return Gate(
            id=g.id,
            name=g.name or g.id,
            week=g.week,
            workstreams=tuple(g.workstreams),
            criteria=tuple(g.criteria),
            checks=tuple(checks),
            metrics=tuple(metrics),
        )

    def activation(
        self,
        orchestrators: Mapping[str, Orchestrator],
        workstreams: Mapping[str, Workstream],
        gates: Mapping[str, Gate],
    ) -> None:
        """after_* references exist, and no orchestrator waits (even indirectly) on its own work."""
        waits_on: dict[str, list[str]] = {}
        for o in orchestrators.values():
            label = f"orchestrator {o.id}"
            self.check_refs(label, "waits for", "gate", o.after_gates, gates)
            self.check_refs(label, "waits for", "workstream", o.after_workstreams, workstreams)
            needed = list(o.after_workstreams)
            for gid in o.after_gates:
                needed.extend(gates[gid].workstreams)
            owners = dict.fromkeys(workstreams[w].orchestrator for w in needed)
            waits_on[o.id] = list(owners)
        cycle = _find_cycle(list(orchestrators), waits_on)
        if cycle and len(cycle) == 2:
            self.fail(
                f"orchestrator {cycle[0]} waits for gates or workstreams of its own: it could "
                "never start"
            )
        if cycle:
            self.fail(
                f"activation cycle: {' -> '.join(cycle)} (each waits for gates or workstreams of "
                "the next): none of them could ever start"
            )


# --- graph helpers ------------------------------------------------------------------------------


def _find_cycle(nodes: Sequence[str], edges: Mapping[str, Sequence[str]]) -> list[str] | None:
    """The first cycle found by depth-first search in node order, as [a, b, ..., a], or None.

    Iterative, so a long dependency chain cannot exhaust the recursion limit.
    """
    done: set[str] = set()
    for start in nodes:
        if start in done:
            continue
        path: list[str] = [start]
        on_path = {start}
        stack = [iter(edges.get(start, ()))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
                continue
            if nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in done:
                path.append(nxt)
                on_path.add(nxt)
                stack.append(iter(edges.get(nxt, ())))
    return None


def _topological_order(workstreams: Mapping[str, Workstream]) -> tuple[str, ...]:
    position = {wid: n for n, wid in enumerate(workstreams)}
    waiting = {wid: len(set(ws.depends_on)) for wid, ws in workstreams.items()}
    children: dict[str, list[str]] = {wid: [] for wid in workstreams}
    for ws in workstreams.values():
        for dep in set(ws.depends_on):
            children[dep].append(ws.id)
    ready = [position[w] for w, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    ids = list(workstreams)
    order: list[str] = []
    while ready:
        wid = ids[heapq.heappop(ready)]
        order.append(wid)
        for child in children[wid]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, position[child])
    return tuple(order)


class _Index:
    """Workstreams by orchestrator for the last plan asked about (by identity). Views and reports
    ask for every orchestrator's workstreams; scanning the plan each time made that O(n^2) (a
    2,000-orchestrator plan: 4 million comparisons per ``status``). Replaced whole, so a reader
    in a worker thread sees an old or a new entry, never half of one."""

    entry: tuple[Plan, dict[str, tuple[Workstream, ...]]] | None = None


_INDEX = _Index()


def _by_orchestrator(plan: Plan) -> dict[str, tuple[Workstream, ...]]:
    entry = _INDEX.entry
    if entry is not None and entry[0] is plan:
        return entry[1]
    index: dict[str, list[Workstream]] = {}
    for ws in plan.workstreams.values():
        index.setdefault(ws.orchestrator, []).append(ws)
    built = {o: tuple(wss) for o, wss in index.items()}
    _INDEX.entry = (plan, built)
    return built
