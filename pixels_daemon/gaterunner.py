"""Running a gate's check commands: the I/O edge of gate evaluation.

The engine decides *when* a gate is checked and what a result means; this module only runs one
command line with ``/bin/sh -c`` in a given directory, bounded by its timeout, and reports what
happened. The check's process group is killed on timeout (a script's children die with it), and
only the tail of its output is kept for the gate record.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import anyio
import msgspec

#: Kept output per check: enough for a script's summary and its last error lines, bounded so a
#: chatty check cannot bloat the event log that records the result.
OUTPUT_TAIL_BYTES = 16 * 1024

#: After SIGTERM on timeout, how long the check's process group gets before SIGKILL.
KILL_GRACE_S = 2.0


class CheckResult(msgspec.Struct, frozen=True, kw_only=True):
    """What one check command did. ``passed`` is exit status 0 within the timeout."""

    name: str
    command: str
    passed: bool
    exit_code: int | None  # None: it did not exit by itself (timed out) or could not start
    timed_out: bool
    duration_s: float
    output: str  # stdout and stderr interleaved, the last OUTPUT_TAIL_BYTES of it


def _tail(data: bytes) -> str:
    if len(data) > OUTPUT_TAIL_BYTES:
        data = b"[... earlier output cut ...]\n" + data[-OUTPUT_TAIL_BYTES:]
    return data.decode("utf-8", errors="replace")


def run_check_blocking(name: str, command: str, cwd: Path, timeout_s: float) -> CheckResult:
    """Run one check to completion or timeout (blocking: call it in a worker thread)."""
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a timeout kills its children too
        )
    except OSError as exc:
        return CheckResult(
            name=name,
            command=command,
            passed=False,
            exit_code=None,
            timed_out=False,
            duration_s=time.monotonic() - started,
            output=f"cannot start the check: {exc}",
        )
    timed_out = False
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
        out, _ = proc.communicate()
        out += f"\n[check timed out after {timeout_s:g} s and was stopped]\n".encode()
    code = None if timed_out else proc.returncode
    return CheckResult(
        name=name,
        command=command,
        passed=code == 0,
        exit_code=code,
        timed_out=timed_out,
        duration_s=round(time.monotonic() - started, 3),
        output=_tail(out),
    )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the check's process group, then SIGKILL it if it is still there after the grace."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=KILL_GRACE_S)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


async def run_check(name: str, command: str, cwd: Path, timeout_s: float) -> CheckResult:
    """Run one check in a worker thread, off the event loop."""
    return await anyio.to_thread.run_sync(run_check_blocking, name, command, cwd, timeout_s)
