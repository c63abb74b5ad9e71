"""The engine's hot path for progress within in_progress (engine._Run._progress) leaves exactly
the state and effects the general ``_status`` would, for any such report."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pixels_daemon.core.engine as engine_module
from pixels_daemon.plan import parse_plan
from protocol.messages import OrchestratorStatus, Status, WorkstreamReport
from tests.test_engine import DAY, MINI, Sim, snapshot

# The mini plan with A1 and A2 both startable at once.
PLAN = parse_plan(MINI.replace('days = 2\ndepends_on = ["A1"]\n', "days = 2\n", 1), "mini2")

TIMESTAMPS = st.none() | st.floats(min_value=1.7e9, max_value=1.9e9)
REPORTS = st.builds(
    WorkstreamReport,
    status=st.just("in_progress"),
    progress=st.sampled_from([0.0, 0.25, 0.5, 1.0]) | st.floats(min_value=0.0, max_value=1.0),
    eta=TIMESTAMPS,
    completion_time=TIMESTAMPS,
)
MESSAGES = st.lists(
    st.tuples(
        st.dictionaries(st.sampled_from(["A1", "A2"]), REPORTS, max_size=2),
        st.sampled_from(get_args(OrchestratorStatus)),
        st.floats(min_value=0.0, max_value=3600.0),  # seconds since the previous one
    ),
    min_size=1,
    max_size=6,
)


@contextmanager
def general_path() -> Iterator[None]:
    """Progress reports go through ``_status`` instead of ``_progress``."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine_module._Run, "_progress", engine_module._Run._status)
        yield


def started(stalled: bool, blockers: list[str], metrics: dict[str, float]) -> Sim:
    """alpha's A1 and A2 in progress; optionally silent for a day (a stall escalation open),
    with standing blockers and metrics that the progress reports repeat."""
    sim = Sim(PLAN)
    assert not PLAN.workstreams["A2"].depends_on
    sim.status(
        "alpha",
        {
            "A1": WorkstreamReport(status="in_progress", progress=0.1),
            "A2": WorkstreamReport(status="in_progress", progress=0.2),
        },
        blockers=blockers,
        performance_metrics=metrics,
    )
    if stalled:
        sim.later(DAY + 1)
        sim.tick()
        assert [e.subject for e in sim.escalations("orchestrator_stalled")] == ["alpha"]
    return sim


@settings(max_examples=150, deadline=None)
@given(
    messages=MESSAGES,
    stalled=st.booleans(),
    blockers=st.sampled_from([[], ["waiting on the dataset"], ["b", "a"]]),
    metrics=st.sampled_from([{}, {"speed": 12.0}]),
)
def test_progress_reports_take_the_hot_path_to_the_state_status_would_leave(
    messages: list[tuple[dict[str, WorkstreamReport], Any, float]],
    stalled: bool,
    blockers: list[str],
    metrics: dict[str, float],
) -> None:
    fast, general = started(stalled, blockers, metrics), started(stalled, blockers, metrics)
    taken: list[str] = []
    progress = engine_module._Run._progress

    def counted(run: Any, message: Status) -> None:
        taken.append(message.id)
        progress(run, message)

    for workstreams, status, gap in messages:
        fields: dict[str, Any] = {
            "status": status,
            "blockers": list(blockers),
            "performance_metrics": dict(metrics),
        }
        fast.later(gap)
        general.later(gap)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(engine_module._Run, "_progress", counted)
            fast_effects = fast.status("alpha", dict(workstreams), **fields)
        with general_path():
            general_effects = general.status("alpha", dict(workstreams), **fields)
        assert fast_effects == general_effects
        assert snapshot(fast.state) == snapshot(general.state)
    assert len(taken) == len(messages)  # every one took the hot path


def test_hearing_from_a_stalled_orchestrator_resolves_its_stall_on_the_hot_path() -> None:
    sim = started(stalled=True, blockers=[], metrics={})
    (esc,) = sim.escalations("orchestrator_stalled")
    effects = sim.status("alpha", {"A1": WorkstreamReport(status="in_progress", progress=0.5)})
    assert esc.state == "resolved" and esc.note == "heard from it again"
    assert engine_module.Notify(escalation=esc.id, reason="resolved") in effects


def test_a_changed_blocker_leaves_the_hot_path() -> None:
    """A report that adds a blocker is not progress-only: the general path records it."""
    sim = started(stalled=False, blockers=[], metrics={})
    sim.status(
        "alpha", {"A1": WorkstreamReport(status="in_progress", progress=0.5)}, blockers=["x"]
    )
    assert list(sim.state.orchestrators["alpha"].blockers) == ["x"]
