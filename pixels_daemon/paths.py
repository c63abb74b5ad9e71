"""Where a daemon keeps its files, and how clients find its sockets.

Layout under a state dir (``--state-dir DIR``)::

    DIR/pixels.db        the event log (SQLite)
    DIR/pixelsd.lock     held (flock) by the running daemon: a second daemon on DIR fails loudly
    DIR/run/bus.sock     ROUTER for orchestrators   (ipc://; the runtime dir may be moved)
    DIR/run/ctl.sock     ROUTER for pixelsctl
    DIR/run/events.sock  XPUB of live events for `pixelsctl watch`
    DIR/clock.json       the scaled clock's anchor when --time-scale is not 1 (clock.py)
    DIR/reports/         week_NN_status.md, completion_report.md
    DIR/status/          meta_status.json (kept current, written atomically)
    DIR/decisions/       ADRs
    DIR/logs/            logs the daemon or its orchestrators write there
    DIR/telemetry/       weeks.json: per-week telemetry figures for the weekly reports

Lean on purpose: pixelsctl imports this module and its start-up time is benchmarked, so it uses
os.path and a plain class (pathlib costs ~5 ms of imports, dataclasses another ~10 ms via inspect).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

#: sun_path is 108 bytes including the terminating NUL; libzmq refuses longer ipc paths.
MAX_IPC_PATH = 107

ENV_STATE_DIR = "PIXELS_STATE_DIR"
ENV_CTL_ENDPOINT = "PIXELS_CTL_ENDPOINT"
ENV_BUS_ENDPOINT = "PIXELS_BUS_ENDPOINT"


class PathError(Exception):
    """Raised when a state dir or socket path cannot be used (e.g. an ipc path is too long)."""


def _default_state_dir() -> str:
    for var in (ENV_STATE_DIR, "STATE_DIRECTORY"):
        value = os.environ.get(var)
        if value:
            return value.split(":")[0]
    xdg = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return os.path.join(xdg, "pixels")


def default_state_dir() -> Path:
    """$PIXELS_STATE_DIR, else systemd's $STATE_DIRECTORY, else $XDG_STATE_HOME/pixels."""
    from pathlib import Path

    return Path(_default_state_dir())


class StatePaths:
    """The files of one daemon instance (all paths absolute)."""

    __slots__ = ("runtime_dir", "state_dir")

    def __init__(self, state_dir: Path, runtime_dir: Path) -> None:
        self.state_dir = state_dir
        self.runtime_dir = runtime_dir

    @classmethod
    def under(cls, state_dir: str | os.PathLike[str], runtime_dir: str | None = None) -> StatePaths:
        from pathlib import Path

        base = Path(state_dir).absolute()
        return cls(base, Path(runtime_dir).absolute() if runtime_dir else base / "run")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StatePaths) and (self.state_dir, self.runtime_dir) == (
            other.state_dir,
            other.runtime_dir,
        )

    def __hash__(self) -> int:
        return hash((self.state_dir, self.runtime_dir))

    def __repr__(self) -> str:
        return f"StatePaths({str(self.state_dir)!r}, {str(self.runtime_dir)!r})"

    @property
    def db(self) -> Path:
        return self.state_dir / "pixels.db"

    @property
    def lock(self) -> Path:
        return self.state_dir / "pixelsd.lock"

    @property
    def bus_socket(self) -> Path:
        return self.runtime_dir / "bus.sock"

    @property
    def ctl_socket(self) -> Path:
        return self.runtime_dir / "ctl.sock"

    @property
    def events_socket(self) -> Path:
        return self.runtime_dir / "events.sock"

    @property
    def clock(self) -> Path:
        return self.state_dir / "clock.json"

    @property
    def reports(self) -> Path:
        return self.state_dir / "reports"

    @property
    def status(self) -> Path:
        return self.state_dir / "status"

    @property
    def decisions(self) -> Path:
        return self.state_dir / "decisions"

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    @property
    def bus_endpoint(self) -> str:
        return ipc_endpoint(self.bus_socket)

    @property
    def events_endpoint(self) -> str:
        return ipc_endpoint(self.events_socket)

    @property
    def ctl_endpoint(self) -> str:
        return ipc_endpoint(self.ctl_socket)


def ipc_endpoint(path: str | os.PathLike[str]) -> str:
    """``ipc://PATH``, refusing paths libzmq cannot bind (over 107 bytes)."""
    raw = os.fsencode(path)
    if len(raw) > MAX_IPC_PATH:
        raise PathError(
            f"socket path {os.fspath(path)} is {len(raw)} bytes; ipc paths are limited to "
            f"{MAX_IPC_PATH}: use a shorter --state-dir or set --runtime-dir"
        )
    return f"ipc://{os.fspath(path)}"


def ipc_path(endpoint: str) -> Path | None:
    """The filesystem path of an ``ipc://`` endpoint, or None for other transports."""
    file = ipc_file(endpoint)
    if file is None:
        return None
    from pathlib import Path

    return Path(file)


def ipc_file(endpoint: str) -> str | None:
    """``ipc_path`` as a string: pixelsctl's everyday request needs no pathlib (5 ms to import
    with what it pulls in: urllib.parse, ipaddress)."""
    return endpoint[len("ipc://") :] if endpoint.startswith("ipc://") else None


def _socket_endpoint(state_dir: str, name: str) -> str:
    return ipc_endpoint(os.path.join(os.path.abspath(state_dir), "run", name))


def ctl_endpoint(state_dir: str | None, endpoint: str | None) -> str:
    """How pixelsctl finds the daemon: --endpoint, else --state-dir, else $PIXELS_CTL_ENDPOINT,
    else the default state dir."""
    if endpoint:
        return endpoint
    if state_dir:
        return _socket_endpoint(state_dir, "ctl.sock")
    env = os.environ.get(ENV_CTL_ENDPOINT)
    if env:
        return env
    return _socket_endpoint(_default_state_dir(), "ctl.sock")


def events_endpoint(state_dir: str | None, endpoint: str | None) -> str:
    """Where `pixelsctl watch` subscribes: --endpoint, else --state-dir, else the default state
    dir (the events socket sits beside ctl.sock)."""
    if endpoint:
        return endpoint
    return _socket_endpoint(state_dir or _default_state_dir(), "events.sock")


def bus_endpoint(state_dir: str | None, endpoint: str | None) -> str:
    """How an orchestrator finds the daemon's bus, by the same rules as ``ctl_endpoint``."""
    if endpoint:
        return endpoint
    if state_dir:
        return _socket_endpoint(state_dir, "bus.sock")
    env = os.environ.get(ENV_BUS_ENDPOINT)
    if env:
        return env
    return _socket_endpoint(_default_state_dir(), "bus.sock")
