"""The coordination engine end to end: a real daemon, four real orchestrator clients, a gate whose
check command fails, halts that reach the dependents, and the recovery once the check passes."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrators.client import OrchestratorClient
from protocol.messages import Command, Poll, Status, WorkstreamReport
from tests.support import BIN, DaemonProcess, ctl

ORCHESTRATORS = ("foundation", "model", "interface", "integration")


def plan_with_gate_check(folder: Path) -> Path:
    """The embedded plan, with gate 1 also requiring `test -f m0.ok` (run in the plan's dir)."""
    text = resources.files("pixels_daemon.plans").joinpath("dgx_pixels.toml").read_text()
    anchor = 'workstreams = ["WS-01", "WS-02", "WS-03"]\n'
    assert anchor in text
    text = text.replace(
        anchor,
        anchor + 'checks = [ { name = "m0", command = "test -f m0.ok", timeout_s = 10 } ]\n',
        1,
    )
    path = folder / "plan.toml"
    path.write_text(text)
    return path


async def eventually(what: str, predicate: Callable[[], Any], timeout_s: float = 20.0) -> Any:
    """Poll a real process's state until ``predicate`` holds (not a sleep standing in for time)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await anyio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def gate(state_dir: Path, gate_id: str) -> dict[str, Any]:
    return next(g for g in ctl(state_dir, "gates") if g["id"] == gate_id)


def report(ws: str, status: str, progress: float) -> Status:
    return Status(
        orchestrator="foundation",
        workstreams={ws: WorkstreamReport(status=status, progress=progress)},  # type: ignore[arg-type]
    )


@pytest.mark.slow
async def test_failed_gate_halts_dependents_and_recheck_resumes_them(state_dir: Path) -> None:
    """Gate 1's failing check halts Model and Interface (halt commands reach them); fixing it and
    `gate check` resumes them; pixelsctl --json escalations shows the escalation's lifecycle."""
    plan = plan_with_gate_check(state_dir)
    daemon = DaemonProcess(state_dir, "--plan", str(plan)).start()
    received: dict[str, list[Command | Poll]] = {name: [] for name in ORCHESTRATORS}
    try:
        async with contextlib.AsyncExitStack() as stack:
            clients = {}
            for name in ORCHESTRATORS:
                client = OrchestratorClient(
                    name, f"ipc://{state_dir}/run/bus.sock", state_dir / f"outbox-{name}.db"
                )
                clients[name] = await stack.enter_async_context(client)
            tg = await stack.enter_async_context(anyio.create_task_group())
            for name in ORCHESTRATORS:

                async def collect(
                    c: OrchestratorClient = clients[name], into: list[Any] = received[name]
                ) -> None:
                    async for command in c.commands():
                        into.append(command)

                tg.start_soon(collect)

            def commanded(name: str, action: str, ws: str | None = None) -> bool:
                return any(
                    isinstance(c, Command)
                    and c.action == action
                    and (ws is None or c.workstream == ws)
                    for c in received[name]
                )

            # Foundation is active from the start: it is told to start WS-01.
            await eventually(
                "start WS-01", lambda: commanded("foundation", "start_workstream", "WS-01")
            )
            foundation = clients["foundation"]
            for ws, status, progress in [
                ("WS-01", "in_progress", 0.5),
                ("WS-01", "complete", 1.0),
                ("WS-02", "in_progress", 0.5),
                ("WS-03", "in_progress", 0.5),
                ("WS-02", "complete", 1.0),
                ("WS-03", "complete", 1.0),
            ]:
                await foundation.send(report(ws, status, progress))
            assert await foundation.wait_acked(timeout=20)
            assert foundation.rejected == []

            # M0 is complete, so gate 1 runs its check, which fails: its dependents are halted.
            failed = await eventually(
                "gate-1 failed", lambda: (g := gate(state_dir, "gate-1"))["state"] == "failed" and g
            )
            assert any("m0" in line for line in failed["failures"])
            for name in ("model", "interface"):
                await eventually(f"halt to {name}", lambda n=name: commanded(n, "halt"))
            escalations = ctl(state_dir, "escalations")
            (esc,) = [e for e in escalations if e["kind"] == "gate_failed"]
            assert (esc["orchestrator"], esc["subject"], esc["severity"]) == (
                "pixelsd",
                "gate-1",
                "high",
            )
            assert "pixelsctl gate check gate-1" in esc["help_needed"]
            assert esc["state"] == "open"
            assert ctl(state_dir, "ack", id=esc["id"], note="on it")["state"] == "acknowledged"
            assert not commanded("model", "start_workstream")

            # Fix what the check checks and ask again: the gate passes and Model is started.
            (state_dir / "m0.ok").write_text("ok\n")
            ctl(state_dir, "gate_check", id="gate-1")
            await eventually(
                "gate-1 passed", lambda: gate(state_dir, "gate-1")["state"] == "passed"
            )
            await eventually(
                "WS-04 started", lambda: commanded("model", "start_workstream", "WS-04")
            )
            tg.cancel_scope.cancel()

        out = subprocess.run(
            [
                str(BIN / "pixelsctl"),
                "--json",
                "escalations",
                "--all",
                "--state-dir",
                str(state_dir),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        after = next(e for e in json.loads(out.stdout) if e["id"] == esc["id"])
        # open -> acknowledged (by the operator) -> resolved (by the daemon, once the gate passed)
        assert after["acknowledged_at"] is not None
        assert after["state"] == "resolved"
        assert after["resolved_at"] >= after["acknowledged_at"]
    finally:
        daemon.close()
