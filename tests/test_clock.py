"""The scaled clock (pixels_daemon/clock.py): the arithmetic and its anchor file."""

from __future__ import annotations

from pathlib import Path

import pytest

from pixels_daemon.clock import ClockError, ScaledClock


class Real:
    """A settable wall clock."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_one_real_second_counts_as_scale_seconds() -> None:
    """At scale 3600 a real second is an hour of clock time."""
    real = Real(1000.0)
    clock = ScaledClock(3600, sim_origin=5000.0, real=real)
    real.t += 2
    assert clock() == 5000.0 + 7200.0
    assert clock.to_real(clock.to_sim(1234.5)) == pytest.approx(1234.5)
    assert clock.real_seconds(7200) == 2


def test_a_non_positive_scale_is_refused_with_the_reason() -> None:
    """Scale 0 or below makes no sense: a clear error."""
    with pytest.raises(ClockError, match="positive"):
        ScaledClock(0)


def test_resume_continues_the_anchored_simulated_time(tmp_path: Path) -> None:
    """A restart on the same state dir goes on from the simulated time reached (downtime counts
    at the same scale)."""
    path = tmp_path / "clock.json"
    real = Real(100.0)
    first = ScaledClock.resume(path, 60, start=1_000_000.0, real=real)
    real.t += 10
    again = ScaledClock.resume(path, 60, start=5.0, real=real)  # start ignored: anchored
    assert again() == first() == 1_000_000.0 + 600


def test_resume_with_a_new_scale_reanchors_at_the_current_instant(tmp_path: Path) -> None:
    """Changing --time-scale keeps the simulated instant and changes only the rate."""
    path = tmp_path / "clock.json"
    real = Real(0.0)
    ScaledClock.resume(path, 100, start=0.0, real=real)
    real.t = 1.0
    faster = ScaledClock.resume(path, 1000, real=real)
    assert faster() == pytest.approx(100.0)
    real.t = 2.0
    assert faster() == pytest.approx(1100.0)
    assert ScaledClock.load(path, real).scale == 1000  # type: ignore[union-attr]


def test_scale_one_without_a_start_writes_no_anchor(tmp_path: Path) -> None:
    """The default clock is the wall clock and leaves no file behind."""
    path = tmp_path / "clock.json"
    clock = ScaledClock.resume(path, 1.0, real=Real(42.0))
    assert clock() == 42.0
    assert not path.exists()


def test_a_corrupt_anchor_is_an_error_that_says_what_to_do(tmp_path: Path) -> None:
    """Garbage in clock.json names the file and the fix."""
    path = tmp_path / "clock.json"
    path.write_text("{not json")
    with pytest.raises(ClockError, match=r"clock\.json.*delete it"):
        ScaledClock.load(path)
