"""The simulated agent: its pure time model (driven with an explicit ``now``), and the command as
a real subprocess on a clock anchor the test writes (a fast clock: no test waits for time)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrators.simagent import (
    DAY,
    HOUR,
    Params,
    advance,
    read_status,
    start,
    status_doc,
)
from pixels_daemon.clock import ScaledClock

T0 = 1_767_603_600.0  # Monday 2026-01-05 09:00 UTC


def at(params: Params, state_start: float, seconds: float) -> tuple[float, str]:
    state = advance(start(params, state_start), params, state_start + seconds)
    return state.progress, state.status


def test_progress_follows_simulated_time() -> None:
    """Half the days later, half the work is done."""
    params = Params(workstream="WS-01", days=4)
    assert at(params, T0, 2 * DAY) == pytest.approx((0.5, "in_progress"))


def test_overrun_stretches_the_work_by_its_factor() -> None:
    """With --overrun 1.7 the work completes at 1.7 x days, not before, at that exact instant."""
    params = Params(workstream="WS-05", days=10, overrun=1.7)
    assert advance(start(params, T0), params, T0 + 16.9 * DAY).completed_at is None
    done = advance(start(params, T0), params, T0 + 17 * DAY)
    assert done.completed_at == pytest.approx(T0 + 17 * DAY)
    assert status_doc(done, params)["status"] == "complete"


def test_stall_freezes_progress_for_its_hours_while_in_progress() -> None:
    """During the stall progress stays put and the status stays in_progress; the work ends
    stall_hours later than it would have."""
    params = Params(workstream="WS-11", days=4, stall_hours=30, seed=3)
    point = params.event_points()["stall"]
    begins = T0 + point * 4 * DAY
    state = advance(start(params, T0), params, begins + 10 * HOUR)
    later = advance(state, params, begins + 29 * HOUR)
    assert (state.progress, state.status) == pytest.approx((point, "in_progress"))
    assert later.progress == pytest.approx(point)
    done = advance(later, params, T0 + 4 * DAY + 30 * HOUR)
    assert done.completed_at == pytest.approx(T0 + 4 * DAY + 30 * HOUR)


def test_blocker_reports_blocked_with_its_text_then_clears() -> None:
    """Within the blocker window the document says blocked, with the blocker; after it, not."""
    params = Params(workstream="WS-13", days=6, blocker_hours=30, blocker_text="no storage")
    begins = T0 + params.event_points()["blocker"] * 6 * DAY
    state = advance(start(params, T0), params, begins + HOUR)
    doc = status_doc(state, params)
    assert (doc["status"], doc["blockers"]) == ("blocked", ["no storage"])
    after = status_doc(advance(state, params, begins + 31 * HOUR), params)
    assert (after["status"], after["blockers"]) == ("in_progress", [])


def test_event_points_depend_on_seed_and_workstream_only() -> None:
    """The same seed and workstream place the events the same way; another seed moves them."""
    a = Params(workstream="WS-07", days=5, seed=1, stall_hours=30, blocker_hours=30)
    b = Params(workstream="WS-07", days=9, seed=1, stall_hours=10, blocker_hours=5)
    others = {
        tuple(Params(workstream="WS-07", days=5, seed=s, stall_hours=30).event_points().values())
        for s in range(2, 12)
    }
    assert a.event_points() == b.event_points()
    assert len(others) > 1


def test_resumed_agent_continues_from_the_files_progress() -> None:
    """Resumed at 50 %, the work needs only the other half of its days."""
    params = Params(workstream="WS-02", days=4)
    resumed = {"progress": 0.5, "status": "in_progress", "started_at": "2026-01-05T09:00:00Z"}
    state = start(params, T0 + 10 * DAY, resumed)
    assert state.started_at == T0
    done = advance(state, params, T0 + 12 * DAY)
    assert done.completed_at == pytest.approx(T0 + 12 * DAY)


def test_resumed_agent_does_not_repeat_an_event_behind_its_progress() -> None:
    """A stall whose point lies behind the resumed progress happened already: no pause now."""
    params = Params(workstream="WS-02", days=4, stall_hours=30)
    resumed = {"progress": 0.9, "status": "in_progress"}
    done = advance(start(params, T0, resumed), params, T0 + 0.1 * 4 * DAY)
    assert done.completed_at == pytest.approx(T0 + 0.4 * DAY)


def test_status_document_has_the_source_projects_shape() -> None:
    """workstream, status, progress (whole percent), started_at, completion_date, blockers,
    metrics: nothing else."""
    params = Params(workstream="WS-05", days=4, metrics={"memory_gb": 72.0})
    doc = status_doc(advance(start(params, T0), params, T0 + 1.23 * DAY), params)
    assert doc == {
        "workstream": "WS-05",
        "status": "in_progress",
        "progress": 0.3,
        "started_at": "2026-01-05T09:00:00Z",
        "completion_date": None,
        "blockers": [],
        "metrics": {"memory_gb": 72.0},
    }


def test_a_file_for_another_workstream_or_garbage_is_not_resumed(tmp_path: Path) -> None:
    """read_status gives None for garbage, another workstream's file or a bad progress."""
    path = tmp_path / "STATUS.json"
    for text in (
        "{not json",
        json.dumps({"workstream": "WS-09", "status": "in_progress", "progress": 0.5}),
        json.dumps({"workstream": "WS-01", "status": "in_progress", "progress": 7}),
    ):
        path.write_text(text)
        assert read_status(path, "WS-01") is None


def _agent(state_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "orchestrators.simagent",
        "--workstream",
        "WS-01",
        "--output",
        str(state_dir / "STATUS.json"),
        "--clock",
        str(state_dir / "clock.json"),
        "--seed",
        "1",
        *extra,
    ]


def test_agent_command_runs_to_complete_on_the_daemons_clock(state_dir: Path) -> None:
    """On a clock anchor at a huge scale, the command reaches complete and exits 0."""
    ScaledClock(10_000_000.0, sim_origin=T0).save(state_dir / "clock.json")
    done = subprocess.run(
        _agent(state_dir, "--days", "2", "--stall-hours", "30", "--step", "0.01"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads((state_dir / "STATUS.json").read_text())
    assert (doc["status"], doc["progress"]) == ("complete", 1.0)
    assert doc["completion_date"] is not None


def test_sigterm_stops_the_agent_cleanly_keeping_its_progress(state_dir: Path) -> None:
    """SIGTERM: exit 0 with the last state on disk (still in progress)."""
    ScaledClock(1.0, sim_origin=T0).save(state_dir / "clock.json")  # a clock that barely moves
    proc = subprocess.Popen(_agent(state_dir, "--days", "30"), stderr=subprocess.PIPE)
    try:
        status = state_dir / "STATUS.json"
        deadline = time.monotonic() + 20
        while not status.exists() and time.monotonic() < deadline:
            time.sleep(0.02)  # until the process has written its first state
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
    assert json.loads(status.read_text())["status"] == "in_progress"


def test_unusable_clock_file_is_one_line_exit_1(state_dir: Path) -> None:
    """A clock file that is not an anchor: one line naming it, exit 1, no traceback."""
    (state_dir / "clock.json").write_text("garbage")
    done = subprocess.run(
        _agent(state_dir, "--days", "1"), capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 1
    assert done.stderr.startswith("simagent: error: ")
    assert "clock.json" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_bad_days_is_a_usage_error(state_dir: Path) -> None:
    """--days must be a positive number: exit 2 with argparse's message."""
    done = subprocess.run(
        _agent(state_dir, "--days", "-3"), capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 2
    assert "positive number" in done.stderr
