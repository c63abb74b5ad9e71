"""Where a daemon keeps its files, and how clients find its sockets. Standard library only.

Layout under a state dir (``--state-dir DIR``)::

    DIR/pixels.db        the event log (SQLite)
    DIR/pixelsd.lock     held (flock) by the running daemon: a second daemon on DIR fails loudly
    DIR/run/bus.sock     ROUTER for orchestrators   (ipc://; the runtime dir may be moved)
    DIR/run/ctl.sock     ROUTER for pixelsctl
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: sun_path is 108 bytes including the terminating NUL; libzmq refuses longer ipc paths.
MAX_IPC_PATH = 107

ENV_STATE_DIR = "PIXELS_STATE_DIR"
ENV_CTL_ENDPOINT = "PIXELS_CTL_ENDPOINT"
ENV_BUS_ENDPOINT = "PIXELS_BUS_ENDPOINT"


class PathError(Exception):
    """Raised when a state dir or socket path cannot be used (e.g. an ipc path is too long)."""


def default_state_dir() -> Path:
    """$PIXELS_STATE_DIR, else systemd's $STATE_DIRECTORY, else $XDG_STATE_HOME/pixels."""
    for var in (ENV_STATE_DIR, "STATE_DIRECTORY"):
        value = os.environ.get(var)
        if value:
            return Path(value.split(":")[0])
    xdg = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(xdg) / "pixels"


@dataclass(frozen=True)
class StatePaths:
    """The files of one daemon instance."""

    state_dir: Path
    runtime_dir: Path

    @classmethod
    def under(cls, state_dir: str | os.PathLike[str], runtime_dir: str | None = None) -> StatePaths:
        base = Path(state_dir).absolute()
        return cls(base, Path(runtime_dir).absolute() if runtime_dir else base / "run")

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
    def bus_endpoint(self) -> str:
        return ipc_endpoint(self.bus_socket)

    @property
    def ctl_endpoint(self) -> str:
        return ipc_endpoint(self.ctl_socket)


def ipc_endpoint(path: Path) -> str:
    """``ipc://PATH``, refusing paths libzmq cannot bind (over 107 bytes)."""
    raw = os.fsencode(path)
    if len(raw) > MAX_IPC_PATH:
        raise PathError(
            f"socket path {path} is {len(raw)} bytes; ipc paths are limited to {MAX_IPC_PATH}: "
            "use a shorter --state-dir or set --runtime-dir"
        )
    return f"ipc://{path}"


def ipc_path(endpoint: str) -> Path | None:
    """The filesystem path of an ``ipc://`` endpoint, or None for other transports."""
    if endpoint.startswith("ipc://"):
        return Path(endpoint[len("ipc://") :])
    return None


def ctl_endpoint(state_dir: str | None, endpoint: str | None) -> str:
    """How pixelsctl finds the daemon: --endpoint, else --state-dir, else $PIXELS_CTL_ENDPOINT,
    else the default state dir."""
    if endpoint:
        return endpoint
    if state_dir:
        return StatePaths.under(state_dir).ctl_endpoint
    env = os.environ.get(ENV_CTL_ENDPOINT)
    if env:
        return env
    return StatePaths.under(default_state_dir()).ctl_endpoint


def bus_endpoint(state_dir: str | None, endpoint: str | None) -> str:
    """How an orchestrator finds the daemon's bus, by the same rules as ``ctl_endpoint``."""
    if endpoint:
        return endpoint
    if state_dir:
        return StatePaths.under(state_dir).bus_endpoint
    env = os.environ.get(ENV_BUS_ENDPOINT)
    if env:
        return env
    return StatePaths.under(default_state_dir()).bus_endpoint
