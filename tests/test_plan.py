"""The plan file: the embedded DGX-Pixels plan, the Plan API, and every validation error.

Invalid plans are real files in a temp dir, loaded with load_plan, so each error is checked the way
a user meets it: one line, naming the file and the id or line at fault.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
from pathlib import Path

import pytest

from pixels_daemon.plan import (
    EMBEDDED_SOURCE,
    MetricCriterion,
    PlanError,
    default_plan,
    load_plan,
    parse_plan,
)

EMBEDDED_FILE = Path(__file__).parents[1] / "pixels_daemon" / "plans" / "dgx_pixels.toml"
DOCS = Path(__file__).parents[1] / "docs" / "configuration.md"

# The reference table (shared/reference/dgx-pixels-plan.md), row by row:
# id: (name, orchestrator, milestone, min, max, depends_on, priority, agent_type)
DGX_TABLE = {
    "WS-01": ("Hardware Baselines", "foundation", "M0", 3, 4, (), "P0", "devops-automator"),
    "WS-02": ("Reproducibility Framework", "foundation", "M0", 4, 5, ("WS-01",), "P0",
              "devops-automator"),
    "WS-03": ("Benchmark Suite", "foundation", "M0", 3, 4, ("WS-01",), "P1", "devops-automator"),
    "WS-04": ("ComfyUI Setup", "model", "M1", 4, 5, ("WS-01",), "P0", "ai-engineer"),
    "WS-05": ("SDXL Inference Optimization", "model", "M1", 5, 7, ("WS-04",), "P0",
              "ai-engineer"),
    "WS-06": ("LoRA Training Pipeline", "model", "M3", 7, 10, ("WS-05",), "P1", "ai-engineer"),
    "WS-07": ("Dataset Tools & Validation", "model", "M3", 5, 6, ("WS-05",), "P1",
              "ai-engineer"),
    "WS-08": ("Rust TUI Core", "interface", "M2", 6, 8, ("WS-01",), "P0", "rust-pro"),
    "WS-09": ("ZeroMQ IPC Layer", "interface", "M2", 4, 5, ("WS-08",), "P0", "rust-pro"),
    "WS-10": ("Python Backend Worker", "interface", "M2", 5, 6, ("WS-04", "WS-09"), "P0",
              "python-pro"),
    "WS-11": ("Sixel Image Preview", "interface", "M2", 3, 4, ("WS-08", "WS-10"), "P1",
              "rust-pro"),
    "WS-12": ("Side-by-Side Model Comparison", "interface", "M2", 4, 5, ("WS-10", "WS-11"), "P1",
              "rust-pro"),
    "WS-13": ("FastMCP Server", "integration", "M4", 5, 6, ("WS-10",), "P0",
              "backend-architect"),
    "WS-14": ("Bevy Plugin Integration", "integration", "M4", 6, 7, ("WS-13",), "P0",
              "frontend-developer"),
    "WS-15": ("Asset Deployment Pipeline", "integration", "M4", 4, 5, ("WS-13", "WS-14"), "P1",
              "devops-automator"),
    "WS-16": ("DCGM Metrics & Observability", "integration", "M5", 5, 6, ("WS-05",), "P1",
              "devops-automator"),
    "WS-17": ("Docker Compose Deployment", "integration", "M5", 4, 5, ("WS-10", "WS-16"), "P1",
              "devops-automator"),
    "WS-18": ("CI/CD Pipeline", "integration", "M5", 6, 8, ("WS-17",), "P2", "devops-automator"),
}  # fmt: skip

CRITICAL_PATH = ("WS-01", "WS-04", "WS-05", "WS-10", "WS-13", "WS-14")

# A small valid plan; each error test breaks one thing in it.
TINY = """\
[plan]
name = "Tiny"
weeks = 4

[[milestones]]
id = "M1"

[[orchestrators]]
id = "core"
agent_types = ["coder", "tester"]

[[workstreams]]
id = "WS-1"
orchestrator = "core"
milestone = "M1"
days = [1, 2]

[[workstreams]]
id = "WS-2"
orchestrator = "core"
milestone = "M1"
days = [2, 3]
depends_on = ["WS-1"]

[[workstreams]]
id = "WS-3"
orchestrator = "core"
milestone = "M1"
days = 1
depends_on = ["WS-2"]
agent_type = "tester"

[[gates]]
id = "done"
workstreams = ["WS-3"]
"""


def write(tmp_path: Path, text: str, name: str = "plan.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def broken(tmp_path: Path, old: str, new: str, base: str = TINY) -> Path:
    """TINY with one edit, written to a file (the edit must apply)."""
    assert old in base, old
    return write(tmp_path, base.replace(old, new, 1))


def error_of(path: Path) -> str:
    """load_plan's error for ``path``: checked to be one line naming the file."""
    with pytest.raises(PlanError) as info:
        load_plan(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message.removeprefix(f"{path}: ")


# --- the embedded DGX-Pixels plan ---------------------------------------------------------------


def test_embedded_plan_counts() -> None:
    """The embedded plan has 18 workstreams, 4 orchestrators, 6 milestones and 3 phases."""
    plan = load_plan(None)
    assert plan.name == "DGX-Pixels"
    assert plan.weeks == 12
    assert len(plan.workstreams) == 18
    assert list(plan.orchestrators) == ["foundation", "model", "interface", "integration"]
    assert list(plan.milestones) == ["M0", "M1", "M2", "M3", "M4", "M5"]
    assert [p.id for p in plan.phases] == [1, 2, 3]


def test_embedded_plan_source_is_marked() -> None:
    """load_plan(None) is the cached default plan, with the embedded source name."""
    assert load_plan(None) is default_plan()
    assert default_plan().source == EMBEDDED_SOURCE


def test_embedded_workstreams_match_reference_table() -> None:
    """Every workstream's plan facts are exactly the reference table's row."""
    plan = default_plan()
    assert list(plan.workstreams) == list(DGX_TABLE)
    for ws in plan.workstreams.values():
        row = (ws.name, ws.orchestrator, ws.milestone, ws.min_days, ws.max_days, ws.depends_on)
        assert (*row, ws.priority, ws.agent_type) == DGX_TABLE[ws.id], ws.id


def test_embedded_agent_types_are_the_orchestrators() -> None:
    """Each workstream's agent type is one its orchestrator lists."""
    plan = default_plan()
    assert plan.orchestrators["foundation"].agent_types == ("devops-automator",)
    assert plan.orchestrators["model"].agent_types == ("ai-engineer", "python-pro")
    assert plan.orchestrators["interface"].agent_types == ("rust-pro", "python-pro")
    for ws in plan.workstreams.values():
        assert ws.agent_type in plan.orchestrators[ws.orchestrator].agent_types


def test_embedded_orchestrator_activation() -> None:
    """Model waits for gate-1, Interface for gate-1 and WS-04, Integration for gate-2."""
    orchs = default_plan().orchestrators
    assert (orchs["foundation"].after_gates, orchs["foundation"].after_workstreams) == ((), ())
    assert (orchs["model"].after_gates, orchs["model"].after_workstreams) == (("gate-1",), ())
    assert orchs["interface"].after_gates == ("gate-1",)
    assert orchs["interface"].after_workstreams == ("WS-04",)
    assert (orchs["integration"].after_gates, orchs["integration"].after_workstreams) == (
        ("gate-2",),
        (),
    )


def test_embedded_gates() -> None:
    """The phase gates cover WS-01..03, WS-04..12 and WS-13..15 with the reference criteria."""
    gates = default_plan().gates
    ws = [f"WS-{n:02d}" for n in range(1, 19)]
    assert gates["gate-1"].workstreams == tuple(ws[0:3])
    assert gates["gate-2"].workstreams == tuple(ws[3:12])
    assert gates["gate-3"].workstreams == tuple(ws[12:15])
    assert [gates[g].week for g in ("gate-1", "gate-2", "gate-3")] == [2, 6, 11]
    assert gates["gate-1"].criteria[0] == "Hardware verification complete"
    assert len(gates["gate-2"].criteria) == 4
    assert "Example game using generated sprites (M4)" in gates["gate-3"].criteria
    assert all(not g.checks for g in gates.values())  # check commands are site specific


def test_embedded_m1_inference_metrics() -> None:
    """The M1 gate carries the inference thresholds over WS-04 and WS-05."""
    gate = default_plan().gates["m1-inference"]
    assert gate.workstreams == ("WS-04", "WS-05")
    assert gate.metrics == (
        MetricCriterion(metric="inference_time_s", op="<=", value=3.0),
        MetricCriterion(metric="batch_images_per_min", op=">=", value=15.0),
        MetricCriterion(metric="memory_gb", op="<=", value=100.0),
    )


def test_embedded_phases() -> None:
    """Phase 1 is weeks 1-2 (M0), phase 2 weeks 3-6 (M1-M3), phase 3 weeks 7-12 (M4, M5)."""
    phases = default_plan().phases
    assert [(p.first_week, p.last_week, p.milestones) for p in phases] == [
        (1, 2, ("M0",)),
        (3, 6, ("M1", "M2", "M3")),
        (7, 12, ("M4", "M5")),
    ]


def test_embedded_critical_path_is_a_dependency_chain() -> None:
    """The marked critical path is WS-01 -> ... -> WS-14, each step a dependency but one.

    The reference table has WS-10 depend on WS-04 and WS-09, not on WS-05, although the documented
    critical path runs WS-05 -> WS-10; the plan keeps the table's dependencies.
    """
    plan = default_plan()
    assert plan.critical_path() == CRITICAL_PATH
    for before, after in itertools.pairwise(CRITICAL_PATH):
        if (before, after) == ("WS-05", "WS-10"):
            assert after not in plan.dependents(before)
            assert "WS-04" in plan.workstreams[after].depends_on  # shares WS-05's predecessor
        else:
            assert before in plan.workstreams[after].depends_on, (before, after)


def test_topological_order_respects_every_dependency() -> None:
    """Every workstream comes after all of its dependencies."""
    plan = default_plan()
    order = plan.topological_order()
    assert sorted(order) == sorted(plan.workstreams)
    position = {wid: n for n, wid in enumerate(order)}
    for ws in plan.workstreams.values():
        for dep in ws.depends_on:
            assert position[dep] < position[ws.id], (dep, ws.id)


def test_fingerprint_is_stable() -> None:
    """The same plan gives the same fingerprint, wherever the file is and however it is laid out."""
    text = EMBEDDED_FILE.read_text(encoding="utf-8")
    relaid = "# a comment\n" + re.sub(r"(?m)^#.*$", "", text).replace(" = ", "=")
    again = parse_plan(relaid, "elsewhere.toml")
    assert again.fingerprint == default_plan().fingerprint
    assert re.fullmatch(r"[0-9a-f]{64}", again.fingerprint)


def test_fingerprint_changes_with_the_plan() -> None:
    """Changing one estimate changes the fingerprint."""
    text = EMBEDDED_FILE.read_text(encoding="utf-8").replace("days = [6, 8]", "days = [6, 9]", 1)
    assert parse_plan(text, "x.toml").fingerprint != default_plan().fingerprint


def test_embedded_file_loads_from_a_path(tmp_path: Path) -> None:
    """A copy of the embedded file loaded by path is the same plan, with the path as source."""
    copy = tmp_path / "dgx.toml"
    shutil.copy(EMBEDDED_FILE, copy)
    plan = load_plan(copy)
    assert plan.source == str(copy)
    assert plan.fingerprint == default_plan().fingerprint


# --- the Plan API on a small plan ---------------------------------------------------------------


def test_topological_order_prefers_file_order_among_ready(tmp_path: Path) -> None:
    """Among workstreams whose dependencies are done, the one earlier in the file comes first."""
    text = TINY.replace('days = 1\ndepends_on = ["WS-2"]', 'days = 1\ndepends_on = ["WS-1"]')
    plan = load_plan(write(tmp_path, text))
    assert plan.topological_order() == ("WS-1", "WS-2", "WS-3")
    text = TINY.replace("days = [1, 2]\n", 'days = [1, 2]\ndepends_on = ["WS-3"]\n', 1).replace(
        'days = 1\ndepends_on = ["WS-2"]', "days = 1"
    )
    assert load_plan(write(tmp_path, text)).topological_order() == ("WS-3", "WS-1", "WS-2")


def test_dependents_are_transitive(tmp_path: Path) -> None:
    """dependents() includes dependents of dependents."""
    plan = load_plan(write(tmp_path, TINY))
    assert plan.dependents("WS-1") == {"WS-2", "WS-3"}
    assert plan.dependents("WS-3") == set()


def test_workstreams_of_keeps_file_order(tmp_path: Path) -> None:
    """workstreams_of() gives the orchestrator's workstreams in file order."""
    plan = load_plan(write(tmp_path, TINY))
    assert [ws.id for ws in plan.workstreams_of("core")] == ["WS-1", "WS-2", "WS-3"]
    with pytest.raises(KeyError):
        plan.workstreams_of("nobody")


def test_phase_of_milestone() -> None:
    """phase_of_milestone() finds the phase that lists the milestone."""
    plan = default_plan()
    assert plan.phase_of_milestone("M3").id == 2
    assert plan.phase_of_milestone("M5").name == "Integration and Production"


def test_plan_without_phases_is_one_phase(tmp_path: Path) -> None:
    """A plan with no [[phases]] gets one phase over all weeks and milestones."""
    (phase,) = load_plan(write(tmp_path, TINY)).phases
    assert (phase.id, phase.first_week, phase.last_week, phase.milestones) == (1, 1, 4, ("M1",))


def test_defaults_fill_names_days_and_agent_type(tmp_path: Path) -> None:
    """Names default to ids, days = N means [N, N], agent_type to the orchestrator's first."""
    plan = load_plan(write(tmp_path, TINY))
    ws1, ws3 = plan.workstreams["WS-1"], plan.workstreams["WS-3"]
    assert (ws1.name, ws1.agent_type, ws1.priority, ws1.critical_path) == (
        "WS-1",
        "coder",
        "P1",
        False,
    )
    assert (ws3.min_days, ws3.max_days, ws3.agent_type) == (1, 1, "tester")
    assert plan.gates["done"].week is None


def test_gpu_bound_defaults_to_false_and_is_read(tmp_path: Path) -> None:
    """A workstream is GPU-bound only when the file says gpu_bound = true."""
    text = TINY.replace('id = "WS-1"\n', 'id = "WS-1"\ngpu_bound = true\n', 1)
    plan = load_plan(write(tmp_path, text))
    assert plan.workstreams["WS-1"].gpu_bound is True
    assert plan.workstreams["WS-3"].gpu_bound is False


def test_embedded_plan_marks_inference_and_training_gpu_bound() -> None:
    """WS-05 (SDXL inference) and WS-06 (LoRA training) run on the GPU; nothing else does."""
    plan = default_plan()
    assert [w.id for w in plan.workstreams.values() if w.gpu_bound] == ["WS-05", "WS-06"]


def test_gate_checks_and_metrics_parse(tmp_path: Path) -> None:
    """A gate's checks and metrics are read, with the default check timeout."""
    text = TINY + (
        'checks = [ { name = "smoke", command = "./smoke.sh" } ]\n'
        'metrics = [ { metric = "latency_ms", op = "<", value = 200 } ]\n'
    )
    gate = load_plan(write(tmp_path, text)).gates["done"]
    assert (gate.checks[0].name, gate.checks[0].command, gate.checks[0].timeout_s) == (
        "smoke",
        "./smoke.sh",
        300.0,
    )
    assert gate.metrics[0].holds(199.5)
    assert not gate.metrics[0].holds(200.0)


def test_docs_example_plan_is_valid(tmp_path: Path) -> None:
    """The example plan in docs/configuration.md loads and has three workstreams."""
    blocks = re.findall(r"```toml\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    example = next(b for b in blocks if "[plan]" in b and "[[workstreams]]" in b)
    plan = load_plan(write(tmp_path, example))
    assert len(plan.workstreams) == 3


# --- invalid plans: one line naming the file and the id or line ---------------------------------


def test_unknown_dependency(tmp_path: Path) -> None:
    """A dependency on a workstream the plan lacks names both ids."""
    path = broken(tmp_path, 'depends_on = ["WS-1"]', 'depends_on = ["WS-99"]')
    assert error_of(path) == "workstream WS-2 depends on unknown workstream WS-99"


def test_dependency_cycle(tmp_path: Path) -> None:
    """A dependency cycle is named link by link."""
    path = broken(tmp_path, "days = [1, 2]\n", 'days = [1, 2]\ndepends_on = ["WS-3"]\n')
    assert error_of(path) == "dependency cycle: WS-1 -> WS-3 -> WS-2 -> WS-1"


def test_self_dependency(tmp_path: Path) -> None:
    """A workstream depending on itself is a cycle of one."""
    path = broken(tmp_path, 'depends_on = ["WS-1"]', 'depends_on = ["WS-2"]')
    assert error_of(path) == "dependency cycle: WS-2 -> WS-2"


def test_duplicate_workstream_id(tmp_path: Path) -> None:
    """Two workstreams with one id are refused, naming the id."""
    path = broken(tmp_path, 'id = "WS-3"', 'id = "WS-2"')
    assert error_of(path) == "duplicate workstream id WS-2"


def test_workstream_of_unknown_orchestrator(tmp_path: Path) -> None:
    """A workstream of an orchestrator the plan lacks names both, and suggests the near one."""
    path = broken(
        tmp_path, 'id = "WS-2"\norchestrator = "core"', 'id = "WS-2"\norchestrator = "cor"'
    )
    assert (
        error_of(path) == "workstream WS-2 belongs to unknown orchestrator cor (did you mean core?)"
    )


def test_bad_toml_names_the_line(tmp_path: Path) -> None:
    """A TOML syntax error gives tomllib's message with its line and column."""
    path = broken(tmp_path, "weeks = 4", "weeks 4")
    assert error_of(path) == "line 3, column 7: Expected '=' after a key in a key/value pair"


def test_missing_file(tmp_path: Path) -> None:
    """A file that is not there gives the OS's reason."""
    assert error_of(tmp_path / "nope.toml") == "cannot read plan file: No such file or directory"


def test_unreadable_file(tmp_path: Path) -> None:
    """A file without read permission gives the OS's reason."""
    path = write(tmp_path, TINY)
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running with privileges that read a mode-000 file")
        assert error_of(path) == "cannot read plan file: Permission denied"
    finally:
        path.chmod(0o644)


def test_not_utf8(tmp_path: Path) -> None:
    """A file that is not UTF-8 says so."""
    path = tmp_path / "plan.toml"
    path.write_bytes(b'[plan]\nname = "caf\xe9"\n')
    assert error_of(path).startswith("not UTF-8 text")


def test_wrong_type_names_the_workstream(tmp_path: Path) -> None:
    """A value of the wrong type names the workstream by id and the key."""
    path = broken(tmp_path, "days = [2, 3]", 'days = [2, "three"]')
    assert error_of(path) == "workstream WS-2, days[1]: Expected `int`, got `str`"


def test_wrong_type_in_plan_table(tmp_path: Path) -> None:
    """A wrong type in [plan] names the key."""
    path = broken(tmp_path, "weeks = 4", 'weeks = "4"')
    assert error_of(path) == "plan.weeks: Expected `int`, got `str`"


def test_unknown_key(tmp_path: Path) -> None:
    """A misspelt key is refused, not ignored."""
    path = broken(tmp_path, 'depends_on = ["WS-1"]', 'depend_on = ["WS-1"]')
    assert error_of(path) == "workstream WS-2: unknown key `depend_on`"


def test_missing_key(tmp_path: Path) -> None:
    """A missing required key names the item and the key."""
    path = broken(tmp_path, 'milestone = "M1"\ndays = 1', "days = 1")
    assert error_of(path) == "workstream WS-3: missing key `milestone`"


def test_table_instead_of_array_of_tables(tmp_path: Path) -> None:
    """[workstreams] instead of [[workstreams]] says how to write it."""
    text = TINY.split("[[workstreams]]", maxsplit=1)[0] + '[workstreams]\nid = "WS-1"\n'
    assert error_of(write(tmp_path, text)).startswith("workstreams must be an array of tables")


def test_missing_plan_table(tmp_path: Path) -> None:
    """A file without [plan] says so."""
    path = broken(tmp_path, '[plan]\nname = "Tiny"\nweeks = 4\n', "")
    assert error_of(path).startswith("missing [plan] table")


def test_min_days_above_max(tmp_path: Path) -> None:
    """An estimate whose minimum exceeds its maximum is refused."""
    path = broken(tmp_path, "days = [2, 3]", "days = [3, 2]")
    assert error_of(path) == "workstream WS-2 has days [3, 2]: the minimum exceeds the maximum"


def test_days_must_be_positive(tmp_path: Path) -> None:
    """A zero-day estimate is refused."""
    path = broken(tmp_path, "days = 1", "days = 0")
    assert error_of(path) == "workstream WS-3 has days 0: estimates must be positive whole days"


def test_unknown_milestone(tmp_path: Path) -> None:
    """A workstream in a milestone the plan lacks is refused."""
    path = broken(tmp_path, 'milestone = "M1"\ndays = 1', 'milestone = "M2"\ndays = 1')
    assert error_of(path) == "workstream WS-3 is in unknown milestone M2"


def test_bad_priority(tmp_path: Path) -> None:
    """A priority other than P0, P1, P2 is refused."""
    path = broken(tmp_path, 'agent_type = "tester"', 'agent_type = "tester"\npriority = "high"')
    assert error_of(path) == "workstream WS-3 has priority 'high': use one of P0, P1, P2"


def test_agent_type_not_of_orchestrator(tmp_path: Path) -> None:
    """An agent type the orchestrator does not list is refused."""
    path = broken(tmp_path, 'agent_type = "tester"', 'agent_type = "designer"')
    assert error_of(path).startswith(
        "workstream WS-3 has agent_type 'designer', which orchestrator"
    )


def test_invalid_id(tmp_path: Path) -> None:
    """An id that is not a valid wire name is refused."""
    path = broken(tmp_path, 'id = "core"', 'id = "core team"')
    assert error_of(path).startswith("orchestrator id 'core team' is not a valid name")


def test_gate_of_unknown_workstream(tmp_path: Path) -> None:
    """A gate over a workstream the plan lacks is refused."""
    path = broken(tmp_path, 'workstreams = ["WS-3"]', 'workstreams = ["WS-4"]')
    assert error_of(path).startswith("gate done needs unknown workstream WS-4")


def test_gate_check_without_command(tmp_path: Path) -> None:
    """A gate check with an empty command is refused."""
    path = write(tmp_path, TINY + 'checks = [ { name = "smoke", command = "" } ]\n')
    assert error_of(path) == "gate done, check smoke: command is empty: give the command to run"


def test_gate_metric_bad_op(tmp_path: Path) -> None:
    """A metric comparison outside < <= > >= == is refused."""
    path = write(tmp_path, TINY + 'metrics = [ { metric = "x", op = "=<", value = 1 } ]\n')
    assert error_of(path) == "gate done, metric x: op '=<': use one of < <= > >= =="


def test_orchestrator_waits_for_unknown_gate(tmp_path: Path) -> None:
    """after_gates naming a gate the plan lacks is refused."""
    path = broken(tmp_path, 'agent_types = ["coder", "tester"]', 'after_gates = ["gate-9"]')
    assert error_of(path) == "orchestrator core waits for unknown gate gate-9"


def test_orchestrator_waiting_for_itself(tmp_path: Path) -> None:
    """An orchestrator that waits for its own workstreams could never start."""
    path = broken(tmp_path, 'agent_types = ["coder", "tester"]', 'after_gates = ["done"]')
    assert error_of(path).startswith("orchestrator core waits for gates or workstreams of its own")


def test_milestone_in_no_phase(tmp_path: Path) -> None:
    """When phases are given, every milestone must be in one."""
    text = TINY.replace(
        '[[milestones]]\nid = "M1"\n',
        '[[milestones]]\nid = "M1"\n\n[[milestones]]\nid = "M2"\n\n'
        '[[phases]]\nid = 1\nweeks = [1, 4]\nmilestones = ["M1"]\n',
    )
    assert error_of(write(tmp_path, text)) == (
        "milestone M2 is in no phase: list it in one phase's milestones"
    )


def test_phase_weeks_beyond_plan(tmp_path: Path) -> None:
    """A phase reaching past plan.weeks is refused."""
    text = TINY + '\n[[phases]]\nid = 1\nweeks = [1, 5]\nmilestones = ["M1"]\n'
    assert error_of(write(tmp_path, text)).startswith("phase 1 has weeks [1, 5]")


def test_newer_format_refused(tmp_path: Path) -> None:
    """A file written for a newer plan format is refused with the fix."""
    path = broken(tmp_path, "weeks = 4", "weeks = 4\nformat = 2")
    assert error_of(path).startswith("plan format 2 is not supported")
