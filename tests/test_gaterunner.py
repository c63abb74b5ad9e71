"""Gate check commands: real subprocesses, exit status decides, output kept, timeouts bounded."""

from __future__ import annotations

from pathlib import Path

from pixels_daemon.gaterunner import OUTPUT_TAIL_BYTES, run_check, run_check_blocking


def test_exit_zero_passes_and_output_is_kept(tmp_path: Path) -> None:
    """A command exiting 0 passes; its stdout and stderr are recorded."""
    result = run_check_blocking("ok", "echo hello; echo oops >&2", tmp_path, 10)
    assert (result.passed, result.exit_code, result.timed_out) == (True, 0, False)
    assert "hello" in result.output
    assert "oops" in result.output


def test_nonzero_exit_fails_with_its_code(tmp_path: Path) -> None:
    """A command exiting non-zero fails, and the exit code is in the result."""
    result = run_check_blocking("bad", "echo nope; exit 3", tmp_path, 10)
    assert (result.passed, result.exit_code) == (False, 3)


def test_runs_in_the_given_directory(tmp_path: Path) -> None:
    """Relative paths in the command resolve against the plan file's directory."""
    (tmp_path / "check.sh").write_text("#!/bin/sh\necho from-script\n")
    (tmp_path / "check.sh").chmod(0o755)
    result = run_check_blocking("script", "./check.sh", tmp_path, 10)
    assert result.passed
    assert "from-script" in result.output


def test_timeout_kills_the_whole_group_and_fails(tmp_path: Path) -> None:
    """A check that outlives its timeout is stopped (children too) and counts as failed."""
    marker = tmp_path / "child-alive"
    result = run_check_blocking("slow", f"(sleep 30; touch {marker}) & sleep 30", tmp_path, 0.3)
    assert (result.passed, result.exit_code, result.timed_out) == (False, None, True)
    assert "timed out" in result.output
    assert result.duration_s < 10


def test_output_is_cut_to_its_tail(tmp_path: Path) -> None:
    """Only the last OUTPUT_TAIL_BYTES of a chatty check are kept."""
    result = run_check_blocking("chatty", "yes line | head -c 200000; echo END", tmp_path, 10)
    assert result.output.endswith("END\n")
    assert len(result.output) <= OUTPUT_TAIL_BYTES + 100


def test_missing_directory_is_a_failed_check_not_an_exception(tmp_path: Path) -> None:
    """A check that cannot start fails with the reason instead of raising."""
    result = run_check_blocking("nowhere", "true", tmp_path / "gone", 10)
    assert not result.passed
    assert "cannot start" in result.output


async def test_async_wrapper_runs_off_the_loop(tmp_path: Path) -> None:
    """run_check gives the same result from a worker thread."""
    result = await run_check("ok", "exit 0", tmp_path, 10)
    assert result.passed
