"""The supervision policy (pixels_daemon/spawner.py): pure, driven by an injected clock."""

from __future__ import annotations

import pytest

from pixels_daemon.spawner import (
    Escalate,
    Launch,
    SupervisionConfig,
    SupervisionConfigError,
    Supervisor,
    Terminate,
    flapping_message,
)

T0 = 1_000_000.0
NAME = "foundation"


def running(sup: Supervisor, now: float = T0, pid: int = 100) -> None:
    """Want NAME, launch it and report it started."""
    sup.want(NAME, now)
    assert sup.tick(now, {}) == [Launch(NAME, restart=False)]
    sup.started(NAME, pid, now)


def crash(sup: Supervisor, now: float) -> list[object]:
    return list(sup.exited(NAME, now, "exit 1", clean=False))


def test_an_activated_orchestrator_is_launched_at_the_next_tick() -> None:
    sup = Supervisor([NAME])
    assert sup.want(NAME, T0) == []
    assert sup.tick(T0, {}) == [Launch(NAME, restart=False)]
    assert sup.get(NAME).phase == "starting"


def test_an_orchestrator_not_activated_is_not_launched() -> None:
    sup = Supervisor([NAME, "model"])
    sup.want(NAME, T0)
    assert sup.tick(T0, {}) == [Launch(NAME, restart=False)]
    assert sup.get("model").phase == "idle"


def test_a_connected_orchestrator_is_never_launched() -> None:
    sup = Supervisor([NAME])
    sup.want(NAME, T0)
    assert sup.tick(T0, {NAME: T0}) == []
    assert sup.get(NAME).phase == "connected"


def test_a_connection_last_heard_before_our_process_died_is_not_a_live_one() -> None:
    sup = Supervisor([NAME], SupervisionConfig(backoff_initial_s=1.0))
    running(sup)
    crash(sup, T0 + 5)
    assert sup.tick(T0 + 6, {NAME: T0 + 4.9}) == [Launch(NAME, restart=True)]


def test_a_connection_heard_after_our_process_died_is_someone_elses() -> None:
    sup = Supervisor([NAME], SupervisionConfig(backoff_initial_s=1.0))
    running(sup)
    crash(sup, T0 + 5)
    assert sup.tick(T0 + 6, {NAME: T0 + 5.5}) == []
    assert sup.get(NAME).phase == "connected"


def test_one_that_was_connected_is_launched_once_it_is_gone() -> None:
    sup = Supervisor([NAME])
    sup.want(NAME, T0)
    sup.tick(T0, {NAME: T0})
    assert sup.tick(T0 + 10, {}) == [Launch(NAME, restart=False)]


def test_a_seeded_orchestrator_is_launched_after_the_start_up_hold() -> None:
    sup = Supervisor([NAME])
    sup.seed(NAME, T0, wanted=True, operator_stopped=False, flapping=False, hold_s=2.0)
    assert sup.tick(T0 + 1, {}) == []
    assert sup.tick(T0 + 2, {}) == [Launch(NAME, restart=False)]


def test_a_launched_orchestrator_is_not_launched_again() -> None:
    sup = Supervisor([NAME])
    running(sup)
    assert sup.want(NAME, T0 + 1) == []
    assert sup.tick(T0 + 1, {}) == []


def test_a_crash_restarts_after_the_first_backoff() -> None:
    sup = Supervisor([NAME], SupervisionConfig(backoff_initial_s=1.0))
    running(sup)
    assert crash(sup, T0 + 5) == []
    assert sup.tick(T0 + 5.9, {}) == []
    assert sup.tick(T0 + 6.0, {}) == [Launch(NAME, restart=True)]
    assert sup.get(NAME).restarts == 1


def test_the_backoff_doubles_per_consecutive_crash() -> None:
    sup = Supervisor([NAME], SupervisionConfig(backoff_initial_s=1.0, flap_limit=10))
    running(sup)
    now = T0
    delays = []
    for _ in range(4):
        now += 1
        crash(sup, now)
        due = sup.next_due()
        assert due is not None
        delays.append(due - now)
        now = due
        sup.tick(now, {})
        sup.started(NAME, 101, now)
    assert delays == [1.0, 2.0, 4.0, 8.0]


def test_the_backoff_stops_growing_at_its_cap() -> None:
    config = SupervisionConfig(backoff_initial_s=1.0, backoff_max_s=5.0)
    assert [config.backoff(n) for n in (1, 2, 3, 4, 5, 100)] == [1, 2, 4, 5, 5, 5]


def test_a_run_that_lasted_a_whole_window_resets_the_backoff() -> None:
    config = SupervisionConfig(backoff_initial_s=1.0, flap_window_s=600.0)
    sup = Supervisor([NAME], config)
    running(sup)
    crash(sup, T0 + 1)
    sup.tick(T0 + 2, {})
    sup.started(NAME, 101, T0 + 2)
    crash(sup, T0 + 2 + 600)
    assert sup.next_due() == T0 + 2 + 600 + 1.0
    assert sup.get(NAME).consecutive == 1


def test_five_crashes_within_the_window_mark_it_flapping_and_escalate_once() -> None:
    sup = Supervisor([NAME], SupervisionConfig(backoff_initial_s=1.0))
    running(sup)
    now = T0
    actions: list[object] = []
    for _ in range(5):
        now += 1
        actions = crash(sup, now)
        due = sup.next_due()
        if due is None:
            break
        now = due
        sup.tick(now, {})
        sup.started(NAME, 101, now)
    assert actions == [Escalate(NAME, 5, 600.0, "exit 1")]
    assert sup.get(NAME).phase == "flapping"
    assert sup.get(NAME).flapping


def test_a_flapping_orchestrator_is_not_restarted() -> None:
    sup = Supervisor([NAME], SupervisionConfig(flap_limit=1))
    running(sup)
    crash(sup, T0 + 1)
    assert sup.tick(T0 + 10_000, {}) == []


def test_crashes_spread_wider_than_the_window_are_not_flapping() -> None:
    config = SupervisionConfig(backoff_initial_s=1.0, flap_limit=3, flap_window_s=100.0)
    sup = Supervisor([NAME], config)
    running(sup)
    now = T0
    for _ in range(6):
        now += 60  # each run under the 100 s that resets the count, each crash 60+ s apart
        assert crash(sup, now) == []
        now = sup.next_due() or now
        sup.tick(now, {})
        sup.started(NAME, 101, now)
    assert not sup.get(NAME).flapping


def test_a_clean_exit_is_not_restarted() -> None:
    sup = Supervisor([NAME])
    running(sup)
    assert sup.exited(NAME, T0 + 1, "exit 0", clean=True) == []
    assert sup.tick(T0 + 100, {}) == []
    assert sup.get(NAME).phase == "exited"


def test_a_failed_launch_counts_as_a_crash() -> None:
    sup = Supervisor([NAME], SupervisionConfig(backoff_initial_s=1.0))
    sup.want(NAME, T0)
    sup.tick(T0, {})
    assert sup.launch_failed(NAME, T0, "systemctl start exited 5") == []
    assert sup.next_due() == T0 + 1.0
    assert sup.get(NAME).last_exit == "systemctl start exited 5"


def test_operator_stop_terminates_a_running_orchestrator() -> None:
    sup = Supervisor([NAME])
    running(sup)
    assert sup.stop(NAME, T0 + 1) == [Terminate(NAME)]
    assert sup.get(NAME).phase == "stopping"


def test_an_operator_stopped_orchestrator_is_not_restarted_after_it_exits() -> None:
    sup = Supervisor([NAME])
    running(sup)
    sup.stop(NAME, T0 + 1)
    assert sup.exited(NAME, T0 + 2, "exit 0", clean=True) == []
    assert sup.tick(T0 + 100, {}) == []
    assert sup.get(NAME).phase == "stopped"


def test_an_operator_stopped_orchestrator_is_not_launched_when_activated() -> None:
    sup = Supervisor([NAME])
    sup.stop(NAME, T0)
    sup.want(NAME, T0 + 1)
    assert sup.tick(T0 + 1, {}) == []


def test_a_stop_while_starting_terminates_once_it_has_started() -> None:
    sup = Supervisor([NAME])
    sup.want(NAME, T0)
    sup.tick(T0, {})
    assert sup.stop(NAME, T0) == []
    assert sup.started(NAME, 100, T0 + 1) == [Terminate(NAME)]


def test_spawn_clears_operator_stop_and_launches_now() -> None:
    sup = Supervisor([NAME])
    running(sup)
    sup.stop(NAME, T0 + 1)
    sup.exited(NAME, T0 + 2, "exit 0", clean=True)
    sup.spawn(NAME, T0 + 3)
    assert sup.tick(T0 + 3, {}) == [Launch(NAME, restart=False)]
    assert not sup.get(NAME).operator_stopped


def test_spawn_clears_flapping_and_the_crash_count() -> None:
    sup = Supervisor([NAME], SupervisionConfig(flap_limit=1))
    running(sup)
    crash(sup, T0 + 1)
    sup.spawn(NAME, T0 + 2)
    assert sup.tick(T0 + 2, {}) == [Launch(NAME, restart=False)]
    proc = sup.get(NAME)
    assert (proc.flapping, proc.consecutive, proc.crash_times) == (False, 0, [])


def test_spawn_during_a_stop_launches_again_once_it_exited() -> None:
    sup = Supervisor([NAME])
    running(sup)
    sup.stop(NAME, T0 + 1)
    sup.spawn(NAME, T0 + 2)
    sup.exited(NAME, T0 + 3, "exit 0", clean=True)
    assert sup.tick(T0 + 3, {}) == [Launch(NAME, restart=False)]


def test_spawn_of_a_running_orchestrator_launches_nothing() -> None:
    sup = Supervisor([NAME])
    running(sup)
    sup.spawn(NAME, T0 + 1)
    assert sup.tick(T0 + 1, {}) == []


def test_an_adopted_process_counts_as_running() -> None:
    sup = Supervisor([NAME])
    sup.seed(NAME, T0, wanted=True, operator_stopped=False, flapping=False)
    sup.started(NAME, 4242, T0, adopted=True)
    assert sup.tick(T0, {}) == []
    assert (sup.get(NAME).phase, sup.get(NAME).adopted) == ("running", True)


def test_seeded_operator_stop_and_flapping_survive_a_restart() -> None:
    sup = Supervisor([NAME, "model"])
    sup.seed(NAME, T0, wanted=True, operator_stopped=True, flapping=False)
    sup.seed("model", T0, wanted=True, operator_stopped=False, flapping=True)
    assert sup.tick(T0, {}) == []
    assert (sup.get(NAME).phase, sup.get("model").phase) == ("stopped", "flapping")


def test_a_seeded_flapping_orchestrator_that_crashes_again_is_not_escalated_twice() -> None:
    sup = Supervisor([NAME], SupervisionConfig(flap_limit=1))
    sup.seed(NAME, T0, wanted=True, operator_stopped=False, flapping=True)
    sup.started(NAME, 4242, T0, adopted=True)
    assert crash(sup, T0 + 1) == []
    assert sup.get(NAME).phase == "flapping"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"backoff_initial_s": 0.0}, "positive"),
        ({"backoff_initial_s": 10.0, "backoff_max_s": 5.0}, "not be shorter"),
        ({"flap_limit": 0}, "at least 1"),
        ({"flap_window_s": -1.0}, "flap window"),
    ],
)
def test_unusable_settings_are_refused_with_a_reason(kwargs: dict[str, float], words: str) -> None:
    with pytest.raises(SupervisionConfigError, match=words):
        SupervisionConfig(**kwargs)  # type: ignore[arg-type]


def test_the_flapping_message_names_the_count_window_and_last_exit() -> None:
    text = flapping_message(NAME, 5, 600.0, "exit 2")
    assert text == (
        "orchestrator foundation crashed 5 times within 10 min (last: exit 2); "
        "it is not restarted any more"
    )
