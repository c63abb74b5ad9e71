"""The engine's time-driven events: polls (sent, answered, missed, counted toward stall), the
weekly report's bookkeeping, and plan completion."""

from __future__ import annotations

import msgspec
import pytest

from pixels_daemon.core.engine import (
    BadRequest,
    EngineConfig,
    Event,
    Notify,
    PlanCompleted,
    PollAll,
    PollMissed,
    ReportDue,
    SendPoll,
    TelemetryAlert,
    Tick,
    WriteReport,
    new_state,
    step,
)
from protocol.messages import PollReply
from tests.test_engine import DAY, HOUR, Sim, of


def answer(sim: Sim, orch: str) -> None:
    n = sim.seq[orch] = sim.seq.get(orch, 0) + 1
    sim.send(PollReply(orchestrator=orch, seq=n, id=f"{orch}-{n}"))  # type: ignore[arg-type]


def test_poll_all_sends_a_poll_to_each_named_orchestrator() -> None:
    """PollAll asks each connected orchestrator once and records when."""
    sim = Sim()
    effects = sim.do(PollAll(orchestrators=["alpha", "beta"]))
    assert [e.orchestrator for e in of(effects, SendPoll)] == ["alpha", "beta"]
    assert sim.state.orchestrators["alpha"].poll_sent_at == sim.now


def test_poll_of_an_orchestrator_outside_the_plan_is_refused() -> None:
    """An unknown name changes nothing."""
    sim = Sim()
    with pytest.raises(Exception, match="no orchestrator 'ghost'"):
        sim.do(PollAll(orchestrators=["alpha", "ghost"]))
    assert sim.state.orchestrators["alpha"].poll_sent_at is None


def test_a_poll_reply_answers_the_poll() -> None:
    """poll_reply clears the pending poll and the missed count."""
    sim = Sim()
    sim.do(PollAll(orchestrators=["alpha"]))
    sim.later(sim.config.poll_timeout_s)
    sim.tick()
    sim.do(PollAll(orchestrators=["alpha"]))
    answer(sim, "alpha")
    orch = sim.state.orchestrators["alpha"]
    assert (orch.poll_sent_at, orch.missed_polls, orch.unanswered_since) == (None, 0, None)


def test_a_poll_unanswered_past_its_timeout_is_missed_once() -> None:
    """At the timeout the next tick counts one miss (an effect, so the tick is logged)."""
    sim = Sim()
    sim.do(PollAll(orchestrators=["alpha"]))
    sim.later(sim.config.poll_timeout_s - 1)
    assert of(sim.tick(), PollMissed) == []
    sim.later(1)
    assert of(sim.tick(), PollMissed) == [PollMissed(orchestrator="alpha", missed=1)]
    assert of(sim.tick(), PollMissed) == []  # counted once
    assert sim.state.orchestrators["alpha"].missed_polls == 1


def test_repolling_keeps_the_pending_polls_deadline() -> None:
    """A mute orchestrator's deadline does not move because it was polled again."""
    sim = Sim()
    sent = sim.now
    sim.do(PollAll(orchestrators=["alpha"]))
    sim.later(60)
    sim.do(PollAll(orchestrators=["alpha"]))
    assert sim.state.orchestrators["alpha"].poll_sent_at == sent


def test_unanswered_polls_for_the_stall_threshold_are_a_stall_even_with_heartbeats() -> None:
    """An orchestrator that heartbeats but answers no poll for 24 h is stalled."""
    sim = Sim()
    polled_at = sim.now
    while sim.now - polled_at < DAY:
        sim.do(PollAll(orchestrators=["alpha"]))
        sim.later(4 * HOUR)
        sim.tick(alpha=sim.now)  # heartbeats keep arriving
    sim.tick(alpha=sim.now)
    (stall,) = sim.escalations("orchestrator_stalled")
    assert "polls unanswered" in stall.issue
    assert sim.state.orchestrators["alpha"].missed_polls >= 6


def test_answering_ends_the_poll_stall() -> None:
    """Once it answers, the orchestrator_stalled escalation resolves."""
    sim = Sim()
    for _ in range(7):
        sim.do(PollAll(orchestrators=["alpha"]))
        sim.later(4 * HOUR)
        sim.tick(alpha=sim.now)
    (stall,) = sim.escalations("orchestrator_stalled")
    answer(sim, "alpha")
    sim.tick(alpha=sim.now)
    assert sim.state.escalations[stall.id].state == "resolved"


def test_report_due_records_the_week_and_asks_for_the_file() -> None:
    """ReportDue(week) is remembered (restart catch-up reads it) and emits WriteReport."""
    sim = Sim()
    effects = sim.do(ReportDue(week=3))
    assert of(effects, WriteReport) == [WriteReport(week=3)]
    assert sim.state.reports == {3: sim.now}


def test_report_for_week_zero_is_refused() -> None:
    """Weeks count from 1."""
    with pytest.raises(BadRequest, match="weeks are numbered from 1"):
        Sim().do(ReportDue(week=0))


def test_plan_completion_is_announced_once() -> None:
    """Every workstream complete and every gate passed: PlanCompleted, then never again."""
    sim = Sim(config=EngineConfig())
    sim.open_beta()
    sim.finish("B1")
    sim.status("beta", performance_metrics={"speed": 20.0})
    effects = sim.finish("B2")
    assert sim.state.gates["g2"].state == "passed"
    assert of(effects, PlanCompleted) == [PlanCompleted()]
    assert sim.state.completed_at == sim.now
    assert of(sim.tick(), PlanCompleted) == []


def test_poll_and_report_events_replay_to_the_same_state() -> None:
    """Logged poll/report events (and the tick that counted a miss) rebuild the same state."""
    sim = Sim()
    log: list[tuple[float, Event]] = [(sim.now, Tick())]
    for event, wait in ((PollAll(orchestrators=["alpha"]), 600.0), (Tick(), 0.0)):
        log.append((sim.now, event))
        sim.do(event)
        sim.later(wait)
    log.append((sim.now, ReportDue(week=1)))
    sim.do(log[-1][1])
    replayed = new_state(sim.plan)
    for at, event in log:
        step(replayed, sim.plan, event, at)
    assert msgspec.msgpack.encode(replayed) == msgspec.msgpack.encode(sim.state)


def test_a_telemetry_alarm_raised_opens_one_escalation_and_clearing_resolves_it() -> None:
    """telemetry_alert raised -> an open telemetry_<rule> escalation (a repeat updates it);
    cleared -> resolved."""
    sim = Sim()
    alarm = TelemetryAlert(
        rule="temperature", subject="gpu0", direction="raised", message="GPU 0 at 88 C"
    )
    effects = sim.do(alarm)
    (esc,) = sim.escalations("telemetry_temperature")
    assert (esc.state, esc.subject, esc.type) == ("open", "gpu0", "resource")
    assert of(effects, Notify)
    sim.do(alarm)
    assert len(sim.escalations("telemetry_temperature")) == 1
    sim.do(TelemetryAlert(rule="temperature", subject="gpu0", direction="cleared"))
    assert sim.state.escalations[esc.id].state == "resolved"


def test_a_poll_reply_that_changes_nothing_still_answers_the_poll() -> None:
    """The usual answer repeats what the daemon knows; it must still clear the pending poll
    (it may not take the fast path of progress-only reports, which skips the bookkeeping)."""
    sim = Sim()
    sim.do(PollAll(orchestrators=["alpha"]))
    answer(sim, "alpha")
    sim.do(PollAll(orchestrators=["alpha"]))
    answer(sim, "alpha")
    assert sim.state.orchestrators["alpha"].poll_sent_at is None
