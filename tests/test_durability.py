"""End to end over real ipc sockets: nothing acked is lost or applied twice, across crashes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from protocol import codec
from protocol.messages import Status
from tests.support import BIN, DaemonProcess

SCRIPTS = Path(__file__).parent / "scripts"


def logged(db: Path) -> int:
    """Events in the log, read from another connection (WAL lets readers run beside the writer)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


@pytest.mark.slow
def test_ten_thousand_statuses_survive_three_sigkills(state_dir: Path) -> None:
    """10,000 statuses with the daemon SIGKILLed 3 times mid-stream: each applied exactly once."""
    n = 10_000
    daemon = DaemonProcess(state_dir).start()
    client = subprocess.Popen(
        [
            sys.executable,
            str(SCRIPTS / "flood.py"),
            "foundation",
            f"ipc://{state_dir}/run/bus.sock",
            str(state_dir / "outbox.db"),
            str(n),
            "100",
        ],
        stderr=subprocess.PIPE,
    )
    kills = 0
    try:
        for threshold in (2_500, 5_000, 7_500):
            deadline = time.monotonic() + 60
            while logged(state_dir / "pixels.db") < threshold:
                assert client.poll() is None, "the client finished before the daemon was killed"
                assert time.monotonic() < deadline, f"stuck below {threshold} events"
                time.sleep(0.005)  # polling a real process's progress, not waiting for time
            daemon.kill()
            kills += 1
            daemon.start()
        assert client.wait(timeout=120) == 0, client.stderr.read().decode() if client.stderr else ""
        assert kills == 3

        conn = sqlite3.connect(state_dir / "pixels.db")
        count, distinct, low, high = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT seq), MIN(seq), MAX(seq) FROM events "
            "WHERE orchestrator = 'foundation'"
        ).fetchone()
        assert (count, distinct, low, high) == (n, n, 1, n)  # every message once, none twice
        progress = [
            msgspec.convert(codec.to_daemon.decode(body), Status).workstreams["WS-01"].progress
            for (body,) in conn.execute("SELECT body FROM events WHERE kind = 'msg' ORDER BY id")
        ]
        assert progress == [i / n for i in range(1, n + 1)]  # applied in order
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()

        out = subprocess.run(
            [str(BIN / "pixelsctl"), "--json", "status", "--state-dir", str(state_dir)],
            capture_output=True,
            check=True,
            timeout=10,
        )
        view = json.loads(out.stdout)
        ws01 = next(w for w in view["workstreams"] if w["id"] == "WS-01")
        assert (ws01["status"], ws01["progress"]) == ("complete", 1.0)
        foundation = next(o for o in view["orchestrators"] if o["name"] == "foundation")
        assert foundation["acked_seq"] == n
    finally:
        client.kill()
        daemon.close()


def test_client_killed_with_unacked_outbox_delivers_after_restart(state_dir: Path) -> None:
    """A client SIGKILLed holding unacked messages delivers them, once, when it runs again."""
    outbox = state_dir / "outbox-foundation.db"
    base = [
        str(BIN / "pixels-orchestrator"),
        "report",
        "foundation",
        "--state-dir",
        str(state_dir),
        "--outbox",
        str(outbox),
    ]
    # No daemon yet: the client accepts the message into its outbox and keeps trying to deliver.
    stuck = subprocess.Popen(
        [
            *base,
            "--workstream",
            "WS-01",
            "--status",
            "in_progress",
            "--progress",
            "0.4",
            "--wait",
            "60",
        ],
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while "1 message pending" not in pending(outbox):
        assert time.monotonic() < deadline, "the client never wrote its outbox"
        time.sleep(0.02)  # polling a real process's progress
    stuck.kill()
    stuck.wait()

    daemon = DaemonProcess(state_dir).start()
    try:
        again = subprocess.run(
            [
                *base,
                "--workstream",
                "WS-01",
                "--status",
                "in_progress",
                "--progress",
                "0.6",
                "--wait",
                "30",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert again.returncode == 0, again.stderr
        conn = sqlite3.connect(state_dir / "pixels.db")
        rows = conn.execute(
            "SELECT seq, body FROM events WHERE kind = 'msg' ORDER BY id"
        ).fetchall()
        conn.close()
        assert [seq for seq, _ in rows] == [1, 2]  # both delivered, each once, in order
        reported = [
            msgspec.convert(codec.to_daemon.decode(b), Status).workstreams["WS-01"].progress
            for _, b in rows
        ]
        assert reported == [0.4, 0.6]
    finally:
        daemon.close()


def pending(outbox: Path) -> str:
    """What ``pixels-orchestrator outbox`` says about the outbox file."""
    return subprocess.run(
        [str(BIN / "pixels-orchestrator"), "outbox", "foundation", "--outbox", str(outbox)],
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    ).stdout
