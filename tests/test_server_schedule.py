"""The schedule in a real daemon (server.py + schedule.py): pixelsd run with --time-scale polls a
connected orchestrator every 4 clock hours, writes the Friday 17:00 report in the configured zone
(across a DST change), and writes a report missed during downtime once on restart.

Time passes through the scaled clock (a week is seconds of real time); the waits below wait for a
condition (a poll arrived, a file exists), never for time to pass.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import anyio
import pytest

from orchestrators.client import OrchestratorClient
from protocol.messages import Poll, PollReply, Status, WorkstreamReport
from tests.support import DaemonProcess, ctl

BERLIN = ZoneInfo("Europe/Berlin")
HOUR = 3600.0
WEEK = 7 * 24 * HOUR


def local(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, BERLIN)


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def daemon(state_dir: Path) -> Iterator[Callable[..., DaemonProcess]]:
    started: list[DaemonProcess] = []

    def start(*extra: str) -> DaemonProcess:
        proc = DaemonProcess(state_dir, "--report-tz", "Europe/Berlin", *extra).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.close()


def test_polls_reach_a_connected_orchestrator_every_four_clock_hours(
    state_dir: Path, daemon: Callable[..., DaemonProcess]
) -> None:
    """At scale 144000 (4 h = 0.1 s) a registered orchestrator gets polls 4 clock hours apart
    (their `ts` is the daemon's clock); its answers keep missed_polls at 0."""
    daemon("--time-scale", "144000", "--sim-start", "2026-03-02T09:00")
    stamps: list[float] = []

    async def run() -> None:
        async with OrchestratorClient(
            "foundation", f"ipc://{state_dir}/run/bus.sock", state_dir / "outbox.db"
        ) as client:
            with anyio.fail_after(15):
                async for command in client.commands():
                    if isinstance(command, Poll):
                        stamps.append(command.ts)
                        await client.send(PollReply(orchestrator="foundation", re=command.id))
                        if len(stamps) == 4:
                            break
            await client.wait_acked(5)

    anyio.run(run)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    # Loop latency is scaled too (1 ms real = 2.4 clock minutes): "about 4 h" each.
    assert all(3 * HOUR < g < 5 * HOUR for g in gaps), [g / HOUR for g in gaps]
    (foundation,) = [o for o in ctl(state_dir, "orchestrators") if o["name"] == "foundation"]
    assert foundation["missed_polls"] == 0


def test_pixelsctl_poll_polls_the_connected_orchestrators_now(
    state_dir: Path, daemon: Callable[..., DaemonProcess]
) -> None:
    """The `poll` request names who was polled; with nobody connected, nobody."""
    daemon()
    assert ctl(state_dir, "poll")["polled"] == []

    async def run() -> list[str]:
        async with OrchestratorClient(
            "foundation", f"ipc://{state_dir}/run/bus.sock", state_dir / "outbox.db"
        ) as client:
            with anyio.fail_after(10):
                while not client.registered:
                    await anyio.sleep(0.01)
            polled: list[str] = await anyio.to_thread.run_sync(
                lambda: ctl(state_dir, "poll")["polled"]
            )
            with anyio.fail_after(10):
                async for command in client.commands():
                    if isinstance(command, Poll):
                        break
            return polled

    assert anyio.run(run) == ["foundation"]


def reports(state_dir: Path) -> list[str]:
    folder = state_dir / "reports"
    return sorted(p.name for p in folder.glob("week_*_status.md")) if folder.is_dir() else []


def log_times(proc: DaemonProcess, event: str, key: str) -> list[float]:
    """``key`` of each ``event`` record in the daemon's log, in order (clock time)."""
    out = []
    for line in proc.log().splitlines():
        if f'"{event}"' in line:
            record = json.loads(line)
            out.append(float(record[key]))
    return out


def test_the_friday_report_lands_at_17_local_across_a_dst_change(
    state_dir: Path, daemon: Callable[..., DaemonProcess]
) -> None:
    """Start Thursday 2026-03-26 in Berlin: reports on Friday 03-27 17:00 CET and Friday 04-03
    17:00 CEST (clocks went forward on 03-29), as weeks 1 and 2."""
    proc = daemon("--time-scale", "302400", "--sim-start", "2026-03-26T09:00")  # 1 week = 2 s
    # The log line follows the file: wait for the line, then the files are there too.
    wait_for(lambda: len(log_times(proc, "report_written", "at")) >= 2, 15, "two weekly reports")
    assert reports(state_dir)[:2] == ["week_01_status.md", "week_02_status.md"]
    # What the scheduler fired for, exactly; how late the loop woke up is a matter of load (at
    # this scale 1 ms of real time is 5 minutes of clock time), but a report is never early.
    first, second = log_times(proc, "report_due", "due")[:2]
    assert local(first) == dt.datetime(2026, 3, 27, 17, tzinfo=BERLIN)
    assert local(second) == dt.datetime(2026, 4, 3, 17, tzinfo=BERLIN)
    written = log_times(proc, "report_written", "at")[:2]
    assert written[0] >= first and written[1] >= second
    assert local(first).tzname() == "CET"
    assert local(second).tzname() == "CEST"
    meta = json.loads((state_dir / "status" / "meta_status.json").read_text())
    assert list(meta)[:4] == ["phase", "active_orchestrators", "completed_workstreams", "blockers"]


def test_a_report_missed_while_down_is_written_once_on_restart(
    state_dir: Path, daemon: Callable[..., DaemonProcess]
) -> None:
    """Stopped on a Thursday, back three weeks later (the anchor moved, as downtime would move
    it): one report, for the latest missed Friday, written at start; a second restart writes
    none."""
    proc = daemon("--time-scale", "60", "--sim-start", "2026-01-08T09:00")  # Thursday
    assert proc.terminate() == 0
    assert reports(state_dir) == []
    anchor = state_dir / "clock.json"
    clock = json.loads(anchor.read_text())
    clock.update(
        real_origin=time.time(), sim_origin=dt.datetime(2026, 1, 25, 12, tzinfo=BERLIN).timestamp()
    )
    anchor.write_text(json.dumps(clock))
    proc = daemon("--time-scale", "60")
    wait_for(lambda: reports(state_dir) != [], 10, "the catch-up report")
    assert reports(state_dir) == ["week_03_status.md"]  # Fri 01-23 is in week 3 of a 01-08 start
    assert proc.terminate() == 0
    proc = daemon("--time-scale", "60")
    # start() waited for the daemon to answer, and the catch-up is decided before it serves.
    assert proc.log().count('"report_catch_up"') == 1


def test_the_last_of_a_burst_of_reports_reaches_meta_status_json(
    state_dir: Path, daemon: Callable[..., DaemonProcess]
) -> None:
    """meta_status.json is rebuilt at most once a second under a stream of batches; the burst's
    last state still lands (a flush follows the skipped batches)."""
    daemon()
    meta = state_dir / "status" / "meta_status.json"

    async def run() -> None:
        async with OrchestratorClient(
            "foundation", f"ipc://{state_dir}/run/bus.sock", state_dir / "outbox.db"
        ) as client:
            for n in range(1, 21):
                blocker = "waiting on the disk array" if n == 20 else None
                report = WorkstreamReport(status="in_progress", progress=n / 40, blocker=blocker)
                await client.send(Status(orchestrator="foundation", workstreams={"WS-01": report}))
                await client.wait_acked(5)  # one batch each: a burst of small batches

    anyio.run(run)

    def blocker_shown() -> bool:
        blockers = json.loads(meta.read_text())["blockers"] if meta.exists() else []
        return [b["text"] for b in blockers] == ["waiting on the disk array"]

    wait_for(blocker_shown, 10, "the last report's blocker in meta_status.json")
