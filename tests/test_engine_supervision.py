"""The engine's part of supervision: operator stop and spawn, flapping escalations (durable, so a
restarted daemon knows them); the processes themselves are the shell's."""

from __future__ import annotations

import pytest

from pixels_daemon.core.engine import (
    DAEMON,
    NotFound,
    Spawn,
    StartOrchestrator,
    Stop,
    StopOrchestrator,
    SupervisionAlert,
    decode_event,
    encode_event,
    standing_orders,
)
from tests.test_engine import DAY, Sim, of


def flapping(orch: str = "alpha") -> SupervisionAlert:
    return SupervisionAlert(
        rule="flapping",
        orchestrator=orch,
        direction="raised",
        message=f"orchestrator {orch} crashed 5 times within 10 min (last: exit 2)",
        help_needed=f"`pixelsctl spawn {orch}` to try again",
        details={"last_exit": "exit 2"},
    )


def test_stop_marks_the_orchestrator_operator_stopped_and_tells_it_to_stop() -> None:
    sim = Sim()
    effects = sim.do(Stop(orchestrator="alpha", reason="maintenance"))
    assert sim.state.orchestrators["alpha"].operator_stopped
    assert of(effects, StopOrchestrator) == [
        StopOrchestrator(orchestrator="alpha", reason="maintenance")
    ]


def test_spawn_clears_the_stop_and_asks_for_a_start_by_the_operator() -> None:
    sim = Sim()
    sim.do(Stop(orchestrator="alpha"))
    effects = sim.do(Spawn(orchestrator="alpha"))
    assert not sim.state.orchestrators["alpha"].operator_stopped
    (start,) = of(effects, StartOrchestrator)
    assert (start.orchestrator, start.by_operator) == ("alpha", True)


def test_a_stopped_orchestrator_that_reconnects_is_told_to_stop_again() -> None:
    sim = Sim()
    sim.do(Stop(orchestrator="alpha"))
    orders = standing_orders(sim.state, sim.plan, "alpha")
    assert [type(o) for o in orders] == [StopOrchestrator]


def test_stop_of_an_unknown_orchestrator_is_refused_naming_the_known_ones() -> None:
    sim = Sim()
    with pytest.raises(NotFound, match=r"no orchestrator 'nope'; it has: alpha, beta"):
        sim.do(Stop(orchestrator="nope"))


def test_spawn_of_an_unknown_orchestrator_is_refused() -> None:
    sim = Sim()
    with pytest.raises(NotFound, match="nope"):
        sim.do(Spawn(orchestrator="nope"))


def test_a_flapping_alert_raises_one_high_escalation_about_the_orchestrator() -> None:
    sim = Sim()
    sim.do(flapping())
    sim.do(flapping())
    (esc,) = sim.escalations("orchestrator_flapping")
    assert (esc.orchestrator, esc.subject, esc.severity, esc.type) == (
        DAEMON,
        "alpha",
        "high",
        "failure",
    )
    assert "spawn alpha" in esc.help_needed
    assert sim.state.orchestrators["alpha"].flapping


def test_spawn_clears_flapping_and_resolves_its_escalation() -> None:
    sim = Sim()
    sim.do(flapping())
    sim.do(Spawn(orchestrator="alpha"))
    (esc,) = sim.escalations("orchestrator_flapping")
    assert esc.state == "resolved"
    assert not sim.state.orchestrators["alpha"].flapping


def test_a_stopped_orchestrator_is_never_reported_stalled() -> None:
    sim = Sim()
    sim.do(Stop(orchestrator="alpha"))
    sim.later(3 * DAY)
    sim.tick()
    assert sim.escalations("orchestrator_stalled") == []


def test_a_flapping_orchestrator_is_not_also_reported_stalled() -> None:
    sim = Sim()
    sim.do(flapping())
    sim.later(3 * DAY)
    sim.tick()
    assert sim.escalations("orchestrator_stalled") == []


@pytest.mark.parametrize(
    "event", [Stop(orchestrator="alpha", reason="r"), Spawn(orchestrator="beta"), flapping()]
)
def test_supervision_events_round_trip_through_the_event_log(event: object) -> None:
    assert decode_event(encode_event(event)) == event  # type: ignore[arg-type]
