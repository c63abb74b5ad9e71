"""Live events from a real daemon (server.py + events.py): what a `pixelsctl watch` subscriber on
STATE_DIR/run/events.sock receives when the state changes."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import zmq

from pixels_daemon.events import WatchEvent
from tests.support import DaemonProcess, ctl


def test_a_subscriber_sees_an_operator_halt_as_it_happens(state_dir: Path) -> None:
    """Halting foundation publishes an orchestrator event naming it, to a connected watcher."""
    daemon = DaemonProcess(state_dir).start()
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    try:
        sub.connect(f"ipc://{state_dir}/run/events.sock")
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        # The subscription travels to the daemon asynchronously: repeat a harmless change
        # (halt/resume) until an event arrives, within a bounded number of tries.
        got: list[WatchEvent] = []
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            ctl(state_dir, "halt", target="foundation", reason="watch test")
            ctl(state_dir, "resume", target="foundation")
            while sub.poll(100):
                _kind, body = sub.recv_multipart()
                got.append(msgspec.msgpack.decode(body, type=WatchEvent))
        assert got, "no event reached the subscriber"
        assert any(e.kind == "orchestrator" and e.subject == "foundation" for e in got), got
    finally:
        sub.close(0)
        daemon.close()


def test_the_events_socket_is_removed_on_a_clean_stop(state_dir: Path) -> None:
    """A stopped daemon leaves no events.sock behind (a watcher then says none is running)."""
    daemon = DaemonProcess(state_dir).start()
    assert (state_dir / "run" / "events.sock").exists()
    assert daemon.terminate() == 0
    assert not (state_dir / "run" / "events.sock").exists()
