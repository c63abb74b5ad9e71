"""Helpers for tests that run real daemons: start pixelsd as a subprocess, talk to it over ipc."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import zmq

from protocol import codec
from protocol.messages import Error, Reply, Request

BIN = Path(sys.executable).parent


def ctl(state_dir: Path, command: str, timeout_s: float = 5.0, **args: Any) -> Any:
    """One control request to the daemon under ``state_dir``; returns the result or raises."""
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(f"ipc://{state_dir}/run/ctl.sock")
        sock.send(codec.encode(Request(id="t", ts=time.time(), command=command, args=args)))
        if not sock.poll(int(timeout_s * 1000)):
            raise TimeoutError(f"no reply to {command!r} within {timeout_s}s")
        reply = codec.ctl_response.decode(sock.recv())
    finally:
        sock.close(0)
    if isinstance(reply, Error):
        raise RuntimeError(f"{reply.code}: {reply.message}")
    assert isinstance(reply, Reply)
    return reply.result


def wait_ready(
    state_dir: Path, proc: subprocess.Popen[bytes] | None = None, timeout_s: float = 15.0
) -> None:
    """Poll ``ping`` until the daemon answers (or fail, showing its stderr if it died)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"pixelsd exited with {proc.returncode}: {err}")
        if (state_dir / "run" / "ctl.sock").exists():
            try:
                ctl(state_dir, "ping", timeout_s=0.5)
                return
            except TimeoutError:
                pass
        time.sleep(0.05)
    raise TimeoutError("pixelsd did not become ready")


class DaemonProcess:
    """A real ``pixelsd`` subprocess on a state dir; restartable; killed at exit.

    It spawns no orchestrators (``--launcher none``) unless ``extra`` names a ``--launcher``:
    tests start their own, and a spawned one would outlive the test (it runs in its own session).
    """

    def __init__(self, state_dir: Path, *extra: str) -> None:
        self.state_dir = state_dir
        self.extra = list(extra)
        if "--launcher" not in self.extra:
            self.extra += ["--launcher", "none"]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProcess:
        log = open(self.state_dir / "pixelsd.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [
                str(BIN / "pixelsd"),
                "--state-dir",
                str(self.state_dir),
                "--log-format",
                "json",
                *self.extra,
            ],
            stdout=log,
            stderr=log,
        )
        log.close()
        wait_ready(self.state_dir, None, 15.0)
        return self

    def kill(self) -> None:
        """SIGKILL: no chance to flush, snapshot or clean up (a crash)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def terminate(self, timeout_s: float = 10.0) -> int:
        assert self.proc is not None
        self.proc.terminate()
        return self.proc.wait(timeout=timeout_s)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        path = self.state_dir / "pixelsd.log"
        return path.read_text(errors="replace") if path.exists() else ""


def env_with(**kv: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(kv)
    return env
