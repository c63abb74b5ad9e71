"""pixelsctl's views (pixels_daemon/core/views.py): a view is reused while what it shows is
unchanged, and rebuilt the moment anything it shows changes."""

from __future__ import annotations

from pixels_daemon.core import engine
from pixels_daemon.core.state import State
from pixels_daemon.core.views import orchestrator_views, workstream_views
from pixels_daemon.plan import Plan, default_plan
from protocol.messages import Status, WorkstreamReport

T0 = 1_800_000_000.0


def started() -> tuple[Plan, State]:
    plan = default_plan()
    state = engine.new_state(plan)
    engine.step(state, plan, engine.Tick(last_seen={}), T0)
    return plan, state


def report(plan: Plan, state: State, seq: int, progress: float) -> None:
    message = Status(
        id=f"foundation-{seq}",
        seq=seq,
        orchestrator="foundation",
        status="active",
        workstreams={"WS-01": WorkstreamReport(status="in_progress", progress=progress)},
    )
    engine.step(state, plan, engine.Received(message=message), T0 + seq)


def by_id(plan: Plan, state: State) -> dict[str, object]:
    return {v.id: v for v in workstream_views(plan, state)}


def test_an_unchanged_workstream_keeps_its_view_and_a_changed_one_gets_a_new_one() -> None:
    plan, state = started()
    report(plan, state, 1, 0.1)
    first = by_id(plan, state)
    report(plan, state, 2, 0.2)
    second = by_id(plan, state)
    assert second["WS-02"] is first["WS-02"]  # nothing about WS-02 changed
    assert second["WS-01"] is not first["WS-01"]
    assert second["WS-01"].progress == 0.2  # type: ignore[attr-defined]


def test_an_orchestrator_view_follows_its_connection() -> None:
    """Connection depends on the time asked: the same state at a later time is a new view."""
    plan, state = started()
    seen = {"foundation": T0}
    (now_view,) = [
        v for v in orchestrator_views(plan, state, seen, T0 + 1, 30.0) if v.name == "foundation"
    ]
    (again,) = [
        v for v in orchestrator_views(plan, state, seen, T0 + 2, 30.0) if v.name == "foundation"
    ]
    (later,) = [
        v for v in orchestrator_views(plan, state, seen, T0 + 3600, 30.0) if v.name == "foundation"
    ]
    assert again is now_view
    assert (now_view.connection, later.connection) == ("connected", "silent")


def test_a_workstream_view_follows_its_estimate_and_its_dependencies() -> None:
    """A re-scope or a runtime dependency change shows at once, though nothing was reported."""
    plan, state = started()
    before = by_id(plan, state)["WS-04"]
    engine.step(state, plan, engine.ChangeEstimate(workstream="WS-04", min_days=9, max_days=11), T0)
    rescoped = by_id(plan, state)["WS-04"]
    assert rescoped is not before
    assert rescoped.estimate_days == [9, 11]  # type: ignore[attr-defined]
    engine.step(state, plan, engine.AddDependency(workstream="WS-04", depends_on="WS-02"), T0)
    after = by_id(plan, state)["WS-04"]
    assert "WS-02" in after.depends_on  # type: ignore[attr-defined]
    assert "WS-02" not in rescoped.depends_on  # type: ignore[attr-defined]
