"""sd_notify: tell systemd about readiness, status, liveness and shutdown. A no-op outside systemd.

The protocol (sd_notify(3)): one datagram of newline-separated ``KEY=VALUE`` lines sent to the
AF_UNIX datagram socket named by ``$NOTIFY_SOCKET``; a name starting with ``@`` lives in the
abstract namespace (the ``@`` becomes a NUL byte). Without ``$NOTIFY_SOCKET`` (not started by
systemd, or not ``Type=notify``) every call does nothing, so the daemon calls them unconditionally.

The watchdog: systemd sets ``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``) when ``WatchdogSec=`` is on;
the service must send ``WATCHDOG=1`` more often than that. ``Notifier.watchdog_interval_s`` is half
of it, as sd_watchdog_enabled(3) advises. Pinging is the caller's job, from its event loop: a
thread pinging on its own would keep a hung loop alive.

Sending never raises and never blocks: a notification that cannot be sent is logged and dropped
(systemd then times the service out, which is the right outcome for a daemon that cannot talk to
it), and the daemon serves on.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Mapping

import structlog

log = structlog.get_logger("pixelsd")

ENV_NOTIFY_SOCKET = "NOTIFY_SOCKET"
ENV_WATCHDOG_USEC = "WATCHDOG_USEC"
ENV_WATCHDOG_PID = "WATCHDOG_PID"

Address = str | bytes  # a filesystem path, or b"\0name" in the abstract namespace


def notify_address(value: str | None) -> Address | None:
    """The socket address named by a ``$NOTIFY_SOCKET`` value, or None when there is none.

    ``/path`` is a filesystem socket, ``@name`` an abstract one. Anything else (a relative path,
    systemd 254's ``vsock:`` addresses) is not supported here: it is logged and notifications are
    off, rather than sent somewhere unintended.
    """
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + os.fsencode(value[1:])
    if value.startswith("/"):
        return value
    log.warning("notify_socket_unsupported", notify_socket=value)
    return None


def watchdog_interval(environ: Mapping[str, str], pid: int | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``$WATCHDOG_USEC``), or None when off.

    Off when ``$WATCHDOG_USEC`` is unset, not a positive integer, or when ``$WATCHDOG_PID`` names
    another process (the variables were inherited from a parent that systemd watches).
    """
    raw = environ.get(ENV_WATCHDOG_USEC)
    if not raw:
        return None
    watched = environ.get(ENV_WATCHDOG_PID)
    if watched and watched != str(os.getpid() if pid is None else pid):
        return None
    try:
        usec = int(raw)
    except ValueError:
        usec = 0
    if usec <= 0:
        log.warning("watchdog_usec_invalid", watchdog_usec=raw)
        return None
    return usec / 2 / 1_000_000


def _one_line(text: str) -> str:
    # A newline would end the STATUS= value and start a bogus key: keep it one line.
    return " ".join(text.split())


class Notifier:
    """Sends sd_notify messages to one socket; does nothing when ``address`` is None."""

    def __init__(self, address: Address | None, watchdog_interval_s: float | None = None) -> None:
        self.address = address
        #: Half of WatchdogSec=, or None when systemd watches nothing.
        self.watchdog_interval_s = watchdog_interval_s if address is not None else None
        self._sock: socket.socket | None = None
        self._failed_once = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """The notifier systemd asked for through the environment (disabled when it asked none)."""
        env = os.environ if environ is None else environ
        return cls(notify_address(env.get(ENV_NOTIFY_SOCKET)), watchdog_interval(env))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` assignments in one datagram; True if it left, False otherwise."""
        if self.address is None:
            return False
        data = "\n".join(assignments).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # Never block the event loop on a slow receiver: drop instead (logged below).
                self._sock.setblocking(False)
            self._sock.sendto(data, self.address)
        except OSError as exc:
            # Logged once at warning, then at debug: a missing socket would otherwise log on every
            # watchdog ping.
            level = log.debug if self._failed_once else log.warning
            self._failed_once = True
            level("sd_notify_failed", error=str(exc), sent=assignments[0] if assignments else "")
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: start-up is finished (or a reload is), the service answers."""
        return self.send("READY=1", *self._status(status))

    def status(self, text: str) -> bool:
        """``STATUS=``: a one-line summary shown by ``systemctl status``."""
        return self.send(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: the event loop is alive."""
        return self.send("WATCHDOG=1")

    def reloading(self, status: str | None = None) -> bool:
        """``RELOADING=1`` (with the ``MONOTONIC_USEC=`` systemd 253+ asks for); end it with
        ``ready()``."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", *self._status(status))

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: shutdown has begun."""
        return self.send("STOPPING=1", *self._status(status))

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    @staticmethod
    def _status(text: str | None) -> tuple[str, ...]:
        return () if text is None else (f"STATUS={_one_line(text)}",)
