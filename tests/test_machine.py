"""The workstream state machine table (core/machine.py) and its diagram (core/diagram.py)."""

from __future__ import annotations

import subprocess
import sys
import typing

import pytest

from pixels_daemon.core import diagram
from pixels_daemon.core.machine import (
    EVENT_TARGET,
    FINAL,
    REPORTS,
    TRANSITIONS,
    WS_EVENTS,
    WS_STATES,
    IllegalTransition,
    on_report,
    transition,
    unmet,
)
from protocol.messages import ErrorCode, WorkstreamStatus

REPORTED: tuple[WorkstreamStatus, ...] = typing.get_args(WorkstreamStatus)


@pytest.mark.parametrize(("pair", "target"), sorted(TRANSITIONS.items()))
def test_every_table_entry_is_a_legal_transition(pair: tuple[str, str], target: str) -> None:
    """transition() returns exactly what the table says for each listed pair."""
    state, event = pair
    assert transition(state, event) == target  # type: ignore[arg-type]


def test_every_event_leads_to_its_named_target() -> None:
    """Each event always lands in the same state, the one error messages name."""
    for (_, event), target in TRANSITIONS.items():
        assert EVENT_TARGET[event] == target


def test_unlisted_pair_raises_illegal_transition_with_from_to_and_why() -> None:
    """An illegal move raises a typed error whose message says from, to and why."""
    with pytest.raises(IllegalTransition) as info:
        transition("complete", "start")
    exc = info.value
    assert exc.code == "illegal_transition"
    assert (exc.current, exc.target) == ("complete", "in_progress")
    assert exc.message == (
        "complete -> in_progress is not allowed: it is complete, and complete is final"
    )


def test_illegal_transition_carries_the_callers_reason_and_subject() -> None:
    """The engine's specific reason and the workstream id replace the generic text."""
    with pytest.raises(IllegalTransition) as info:
        transition("not_started", "start", "it waits for WS-04 (in_progress)", subject="WS-05")
    assert info.value.message == (
        "WS-05: not_started -> in_progress is not allowed: it waits for WS-04 (in_progress)"
    )


def test_illegal_transition_code_is_a_wire_error_code() -> None:
    """The code can go back to an orchestrator as an error frame unchanged."""
    assert IllegalTransition.code in typing.get_args(ErrorCode)


def test_final_states_have_no_way_out() -> None:
    """complete and deferred accept no event at all."""
    for state in FINAL:
        for event in WS_EVENTS:
            with pytest.raises(IllegalTransition):
                transition(state, event)


def test_every_state_is_reachable_from_not_started() -> None:
    """The table has no dead state: each one is reachable from the initial state."""
    seen = {"not_started"}
    todo = ["not_started"]
    while todo:
        here = todo.pop()
        for (source, _), target in TRANSITIONS.items():
            if source == here and target not in seen:
                seen.add(target)
                todo.append(target)
    assert seen == set(WS_STATES)


def test_halt_is_possible_from_every_unfinished_state() -> None:
    """A failed gate can stop work wherever it is, short of finished work."""
    for state in WS_STATES:
        if state in FINAL or state == "halted":
            continue
        assert TRANSITIONS[(state, "halt")] == "halted"


def test_resume_leads_back_to_waiting() -> None:
    """Resumed work is not_started: readiness is worked out afresh."""
    assert transition("halted", "resume") == "not_started"


@pytest.mark.parametrize("state", WS_STATES)
@pytest.mark.parametrize("reported", REPORTED)
def test_every_report_maps_to_a_legal_event_or_is_refused(state: str, reported: str) -> None:
    """A report either causes an event the table allows, changes nothing, or raises."""
    key = (state, reported)
    if key not in REPORTS:
        with pytest.raises(IllegalTransition):
            on_report(state, reported)  # type: ignore[arg-type]
        return
    event = on_report(state, reported)  # type: ignore[arg-type]
    if event is not None:
        assert (state, event) in TRANSITIONS


def test_report_refusal_uses_the_callers_reason_only_when_refusing() -> None:
    """The reason callback is called lazily, only for an illegal report."""
    calls: list[int] = []

    def why() -> str:
        calls.append(1)
        return "it waits for WS-01 (in_progress)"

    assert on_report("ready", "in_progress", why) == "start"
    assert calls == []
    with pytest.raises(IllegalTransition, match="waits for WS-01"):
        on_report("not_started", "in_progress", why, subject="WS-02")
    assert calls == [1]


def test_report_of_progress_on_halted_work_is_accepted_unchanged() -> None:
    """An orchestrator that has not heard the halt yet is not refused for saying so."""
    assert on_report("halted", "in_progress") is None


def test_completing_halted_work_is_refused() -> None:
    """Halted work cannot be declared complete until it is resumed."""
    with pytest.raises(IllegalTransition, match="halted -> complete"):
        on_report("halted", "complete")


def test_started_work_cannot_be_reported_not_started() -> None:
    """in_progress -> not_started is not a move the machine has."""
    with pytest.raises(IllegalTransition, match="in_progress -> not_started"):
        on_report("in_progress", "not_started")


def test_unmet_lists_incomplete_dependencies_in_order() -> None:
    """Readiness: only complete dependencies are met."""
    states = {"A": "complete", "B": "in_progress", "C": "deferred", "D": "complete"}
    assert unmet(["A", "B", "C", "D"], states) == ["B", "C"]  # type: ignore[arg-type]


def test_diagram_has_one_arrow_per_state_pair_and_every_event() -> None:
    """The Mermaid text is generated from the table: every transition is drawn."""
    text = diagram.mermaid()
    assert text.startswith("stateDiagram-v2\n    [*] --> not_started\n")
    for (source, event), target in TRANSITIONS.items():
        arrow = next(
            line for line in text.splitlines() if line.strip().startswith(f"{source} --> {target} ")
        )
        assert event in arrow.split(" : ")[1].split(", ")
    assert "    complete --> [*]" in text
    assert "    deferred --> [*]" in text


def test_diagram_script_prints_a_fenced_block() -> None:
    """`python -m pixels_daemon.core.diagram --fenced` prints Markdown-ready Mermaid."""
    out = subprocess.run(
        [sys.executable, "-m", "pixels_daemon.core.diagram", "--fenced"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert out == f"```mermaid\n{diagram.mermaid()}```\n"
