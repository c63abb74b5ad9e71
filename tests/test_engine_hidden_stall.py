"""The hidden-stall rule (core/engine.py): a gpu_bound workstream in progress while every GPU has
been idle for the stall window, as telemetry reports it with GpuIdle events."""

from __future__ import annotations

import msgspec
import pytest

from pixels_daemon.core.engine import (
    BadRequest,
    Effect,
    Event,
    GpuIdle,
    Notify,
    decode_event,
    encode_event,
    new_state,
    step,
)
from pixels_daemon.plan import Plan, parse_plan
from tests.test_engine import DAY, HOUR, MINI, Sim, of


def gpu_plan() -> Plan:
    """The mini plan with A1 GPU-bound (A2 is not)."""
    text = MINI.replace('id = "A1"\n', 'id = "A1"\ngpu_bound = true\n', 1)
    return parse_plan(text, "mini-gpu")


def hidden(sim: Sim) -> list[str]:
    """Affected workstreams of each unresolved hidden_stall escalation."""
    return [
        w
        for e in sim.escalations("hidden_stall")
        if e.state != "resolved"
        for w in e.affected_workstreams
    ]


def moving(sim: Sim, ws: str, hours: int) -> None:
    """Report ``ws`` in progress with new progress every hour for ``hours`` (no visible stall)."""
    for n in range(hours):
        sim.later(HOUR)
        sim.report(ws, "in_progress", round(0.1 + n / (2 * hours), 4))


def test_gpu_bound_work_in_progress_through_a_day_of_idle_gpu_is_a_hidden_stall() -> None:
    """In progress since before the GPU went idle, idle for 24 h: one hidden_stall escalation."""
    sim = Sim(gpu_plan())
    sim.report("A1", "in_progress", 0.1)
    idle_from = sim.now + HOUR
    moving(sim, "A1", 24)
    sim.later(HOUR)
    effects = sim.do(GpuIdle(since=idle_from))
    (esc,) = sim.escalations("hidden_stall")
    assert esc.affected_workstreams == ["A1"]
    assert Notify(escalation=esc.id, reason="raised") in effects
    assert "every GPU has been idle since" in esc.issue
    assert esc.details["gpu_idle_since"] == idle_from


def test_not_a_hidden_stall_until_the_work_itself_was_in_progress_for_the_window() -> None:
    """The GPU idle for days, the work in progress for a second less than 24 h: nothing yet;
    a tick at 24 h raises it."""
    sim = Sim(gpu_plan())
    idle_from = sim.now
    sim.later(3 * DAY)
    sim.do(GpuIdle(since=idle_from))
    sim.report("A1", "in_progress", 0.1)
    moving(sim, "A1", 23)
    sim.later(HOUR - 1)
    sim.tick()
    assert hidden(sim) == []
    sim.later(1)
    sim.tick()
    assert hidden(sim) == ["A1"]


def test_a_workstream_that_is_not_gpu_bound_is_never_a_hidden_stall() -> None:
    """A2 in progress with the GPU idle for two days: not GPU-bound, not flagged."""
    sim = Sim(gpu_plan())
    sim.finish("A1")
    sim.report("A2", "in_progress", 0.1)
    idle_from = sim.now
    moving(sim, "A2", 48)
    sim.do(GpuIdle(since=idle_from))
    sim.tick()
    assert sim.escalations("hidden_stall") == []


def test_the_gpu_busy_again_resolves_the_hidden_stall() -> None:
    """GpuIdle(None): telemetry saw a busy GPU (or a gap); the escalation is resolved."""
    sim = Sim(gpu_plan())
    sim.report("A1", "in_progress", 0.1)
    idle_from = sim.now
    moving(sim, "A1", 25)
    sim.do(GpuIdle(since=idle_from))
    (esc,) = sim.escalations("hidden_stall")
    effects = sim.do(GpuIdle(since=None))
    assert sim.state.escalations[esc.id].state == "resolved"
    assert Notify(escalation=esc.id, reason="resolved") in effects


def test_leaving_in_progress_resolves_the_hidden_stall() -> None:
    """Blocked is a stop in plain sight: the hidden stall is resolved."""
    sim = Sim(gpu_plan())
    sim.report("A1", "in_progress", 0.1)
    idle_from = sim.now
    moving(sim, "A1", 25)
    sim.do(GpuIdle(since=idle_from))
    assert hidden(sim) == ["A1"]
    sim.report("A1", "blocked", 0.6, "waiting for the dataset")
    assert hidden(sim) == []


def test_a_visible_stall_is_not_also_reported_as_a_hidden_one() -> None:
    """Progress unchanged for 24 h is ws_stalled; hidden_stall would only repeat it."""
    sim = Sim(gpu_plan())
    sim.report("A1", "in_progress", 0.1)
    idle_from = sim.now
    sim.later(DAY + HOUR)
    sim.do(GpuIdle(since=idle_from))
    assert len(sim.escalations("ws_stalled")) == 1
    assert sim.escalations("hidden_stall") == []


def test_one_escalation_per_episode_and_a_new_one_for_the_next() -> None:
    """Ticks during the episode change nothing; after the GPU was busy, the next idle day is a
    new escalation."""
    sim = Sim(gpu_plan())
    sim.report("A1", "in_progress", 0.1)
    idle_from = sim.now
    moving(sim, "A1", 25)
    sim.do(GpuIdle(since=idle_from))
    assert of(sim.tick(), Notify) == []
    sim.do(GpuIdle(since=None))
    idle_again = sim.now
    sim.report("A1", "in_progress", 0.8)
    sim.later(DAY)
    sim.report("A1", "in_progress", 0.9)
    sim.do(GpuIdle(since=idle_again))
    assert [e.state for e in sim.escalations("hidden_stall")] == ["resolved", "open"]


def test_gpu_idle_in_the_future_is_refused() -> None:
    """A since after now is a shell bug, refused with a message; the state does not change."""
    sim = Sim(gpu_plan())
    with pytest.raises(BadRequest, match="in the future"):
        sim.do(GpuIdle(since=sim.now + 1))
    assert sim.state.gpu_idle_since is None


class Recording(Sim):
    """A Sim that keeps every event it applied, as the event log would."""

    def __init__(self, plan: Plan) -> None:
        self.log: list[tuple[float, Event]] = []
        super().__init__(plan)

    def do(self, event: Event) -> list[Effect]:
        self.log.append((self.now, decode_event(encode_event(event))))
        return super().do(event)


def test_a_hidden_stall_replays_from_the_log_to_the_same_state() -> None:
    """The events, through the log's encoding and replayed, give the same state bytes."""
    sim = Recording(gpu_plan())
    sim.report("A1", "in_progress", 0.1)
    idle_from = sim.now
    moving(sim, "A1", 25)
    sim.do(GpuIdle(since=idle_from))
    sim.do(GpuIdle(since=None))
    replayed = new_state(sim.plan)
    for at, event in sim.log:
        step(replayed, sim.plan, event, at)
    assert msgspec.msgpack.encode(replayed) == msgspec.msgpack.encode(sim.state)
