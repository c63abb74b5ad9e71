"""Progress lines (PIXELS-...), the log reader that finds them, and which source speaks
(orchestrators/progress.py). Pure, plus real files for the reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrators.progress import (
    COMPLETE,
    IN_PROGRESS,
    BadProgressLine,
    LineReader,
    choose,
    parse_line,
    parse_status,
)


def test_plain_output_is_not_a_progress_line() -> None:
    assert parse_line("epoch 3/10 loss=0.2", "WS-01", None) is None
    assert parse_line(" PIXELS-PROGRESS 0.5", "WS-01", None) is None  # column 0 only


@pytest.mark.parametrize("text", ["0.4", "40", "40%"])
def test_progress_line_sets_in_progress(text: str) -> None:
    got = parse_line(f"PIXELS-PROGRESS {text}\n", "WS-01", None)
    assert got is not None
    assert (got.report.status, got.report.progress) == ("in_progress", pytest.approx(0.4))


def test_blocked_keeps_progress_and_progress_clears_the_blocker() -> None:
    at = parse_line("PIXELS-PROGRESS 0.3", "WS-01", None)
    blocked = parse_line("PIXELS-BLOCKED waiting for the GPU quota", "WS-01", at)
    assert blocked is not None
    assert blocked.report.status == "blocked"
    assert blocked.report.progress == pytest.approx(0.3)
    assert blocked.report.blocker == "waiting for the GPU quota"
    moving = parse_line("PIXELS-PROGRESS 0.35", "WS-01", blocked)
    assert moving is not None and moving.report.blocker is None


def test_metric_lines_accumulate_and_survive_progress() -> None:
    m = parse_line("PIXELS-METRIC inference_time_s 2.6", "WS-05", None)
    m = parse_line("PIXELS-METRIC memory_gb 72", "WS-05", m)
    m = parse_line("PIXELS-PROGRESS 0.9", "WS-05", m)
    assert m is not None and m.metrics == {"inference_time_s": 2.6, "memory_gb": 72.0}


def test_complete_line_is_complete_at_full_progress() -> None:
    got = parse_line("PIXELS-COMPLETE", "WS-01", parse_line("PIXELS-PROGRESS 0.2", "WS-01", None))
    assert got is not None and (got.report.status, got.report.progress) == ("complete", 1.0)


def test_status_line_is_a_whole_status_json() -> None:
    line = 'PIXELS-STATUS {"status": "blocked", "progress": 0.5, "blockers": ["no disk"]}'
    got = parse_line(line, "WS-01", None)
    assert got == parse_status(
        '{"status": "blocked", "progress": 0.5, "blockers": ["no disk"]}', "WS-01"
    )


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("PIXELS-PROGRESS lots", "give a number from 0 to 1"),
        ("PIXELS-PROGRESS 1.5e3", "give a number from 0 to 1"),
        ("PIXELS-BLOCKED", "needs a text"),
        ("PIXELS-METRIC speed", "give a name"),
        ("PIXELS-STATUS {half", "PIXELS-STATUS"),
        ("PIXELS-DONE", "unknown keyword 'PIXELS-DONE'; known: PIXELS-STATUS"),
    ],
)
def test_bad_pixels_lines_say_what_is_wrong(line: str, says: str) -> None:
    with pytest.raises(BadProgressLine, match=says.replace("(", r"\(")):
        parse_line(line, "WS-01", None)


def test_reader_gives_ended_lines_once(tmp_path: Path) -> None:
    """Lines from the offset on, each once; an unended line waits for its newline, or for the
    final read."""
    log = tmp_path / "agent.log"
    log.write_bytes(b"--- header\n")
    reader = LineReader(log, offset=log.stat().st_size)
    with log.open("ab") as f:
        f.write(b"a\nPIXELS-PROG")
    assert reader.read() == ["a"]
    assert reader.read() == []
    with log.open("ab") as f:
        f.write(b"RESS 0.5\nlast")
    assert reader.read() == ["PIXELS-PROGRESS 0.5"]
    assert reader.read(final=True) == ["last"]


def test_reader_skips_a_runaway_line(tmp_path: Path) -> None:
    log = tmp_path / "agent.log"
    log.write_bytes(b"x" * (200 * 1024) + b"\nPIXELS-COMPLETE\n")
    assert LineReader(log, 0).read(final=True) == ["PIXELS-COMPLETE"]


def test_auto_prefers_the_file_then_lines_then_liveness() -> None:
    f = parse_status('{"status": "in_progress", "progress": 0.7}', "WS-01")
    lines = parse_line("PIXELS-PROGRESS 0.2", "WS-01", None)
    assert choose("auto", f, lines, IN_PROGRESS) is f
    assert choose("auto", None, lines, IN_PROGRESS) is lines
    assert choose("auto", None, None, COMPLETE) is COMPLETE
    assert choose("stdout", f, lines, IN_PROGRESS) is lines
    assert choose("liveness", f, lines, IN_PROGRESS) is IN_PROGRESS
    assert choose("status_file", None, lines, IN_PROGRESS) is None
