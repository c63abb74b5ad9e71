"""Native journald output for structlog, and the one place an escalation becomes a log entry.

Under systemd, stderr lines reach the journal as text: priority survives (``<N>`` prefixes) but no
field can be queried. Native entries can: ``journalctl PIXELS_EVENT=escalation PRIORITY=2``. This
module writes them (systemd's native protocol, as sd_journal_send(3) does):

- ``JournalRenderer``: the last structlog processor; turns an event dict into journal fields
  (``MESSAGE``, ``PRIORITY``, ``SYSLOG_IDENTIFIER=pixelsd``, ``PIXELS_EVENT`` and one
  ``PIXELS_<KEY>`` per key, a list giving one field per item). Pure.
- ``JournalSink``: the structlog "logger" sending each entry as one datagram to journald's socket
  (``$PIXELS_JOURNAL_SOCKET``, for tests, else /run/systemd/journal/socket). An entry too large for
  a datagram goes in a sealed memfd, as systemd does. If journald cannot take it, the entry goes to
  stderr as one ``<N>`` prefixed line instead of being lost.
- ``log_escalation(record)``: logs an escalation with fields an operator filters on. The daemon
  calls it once an escalation from an orchestrator is committed; the coordination engine will call
  it for the escalations it raises.

Chosen when stderr is the journal (``$JOURNAL_STREAM`` names it) or with ``--log-format journal``.
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import os
import re
import socket
import struct
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from typing import IO, Any

import msgspec
import structlog

from pixels_daemon.core.state import EscalationRecord

ENV_JOURNAL_SOCKET = "PIXELS_JOURNAL_SOCKET"
DEFAULT_JOURNAL_SOCKET = "/run/systemd/journal/socket"
SYSLOG_IDENTIFIER = "pixelsd"

#: Escalation severity -> syslog priority (the issue's table: critical is "crit", low "notice").
SEVERITY_PRIORITY: dict[str, int] = {"critical": 2, "high": 3, "medium": 4, "low": 5}

#: structlog level -> syslog priority.
LEVEL_PRIORITY: dict[str, int] = {
    "critical": 2,
    "exception": 3,
    "error": 3,
    "warning": 4,
    "warn": 4,
    "info": 6,
    "debug": 7,
}

#: Keys the journal records by itself (time, priority) or that the renderer consumes.
_CONSUMED = frozenset({"event", "level", "timestamp", "message", "logger"})

#: journald drops an entry with more fields than ENTRY_FIELD_COUNT_MAX (1024); lists are cut
#: well below that so one large list cannot cost the whole entry.
MAX_ITEMS_PER_FIELD = 256

#: journald field names: A-Z, 0-9 and '_', not starting with '_', at most 64 characters.
_FIELD_BAD = re.compile(r"[^A-Z0-9_]")
_FIELD_MAX = 64

Entry = list[tuple[str, str]]


def field_name(key: str) -> str:
    """``PIXELS_<KEY>`` for a structlog key: upper-cased, other characters become '_'."""
    return _FIELD_BAD.sub("_", f"PIXELS_{key.upper()}")[:_FIELD_MAX]


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    try:
        return msgspec.json.encode(value).decode()
    except (TypeError, msgspec.EncodeError):
        return repr(value)


def _logfmt(event: str, pairs: Iterable[tuple[str, object]]) -> str:
    parts = [event]
    for key, value in pairs:
        text = _text(value)
        parts.append(f"{key}={text!r}" if (" " in text or not text) else f"{key}={text}")
    return " ".join(parts)


def priority_of(event_dict: Mapping[str, Any]) -> int:
    """An escalation's severity decides (critical -> 2 ... low -> 5); otherwise the log level."""
    severity = event_dict.get("severity")
    if isinstance(severity, str) and severity in SEVERITY_PRIORITY:
        return SEVERITY_PRIORITY[severity]
    return LEVEL_PRIORITY.get(str(event_dict.get("level", "info")), 6)


class JournalRenderer:
    """structlog processor: event dict -> ``{"entry": [(FIELD, value), ...]}`` for JournalSink.

    ``MESSAGE`` is the event's ``message`` key when given (a sentence for people), else the event
    name followed by its keys, logfmt style. An ``exception`` key (from format_exc_info) is
    appended to ``MESSAGE`` so a traceback stays with its entry.
    """

    def __init__(self, identifier: str = SYSLOG_IDENTIFIER) -> None:
        self.identifier = identifier

    def __call__(
        self, logger: object, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> dict[str, Entry]:
        event = str(event_dict.get("event", ""))
        rest = [
            (k, v)
            for k, v in event_dict.items()
            if k not in _CONSUMED and k != "exception" and v is not None
        ]
        message = event_dict.get("message")
        text = str(message) if message is not None else _logfmt(event, rest)
        exception = event_dict.get("exception")
        if exception:
            text = f"{text}\n{exception}"
        entry: Entry = [
            ("MESSAGE", text),
            ("PRIORITY", str(priority_of(event_dict))),
            ("SYSLOG_IDENTIFIER", self.identifier),
            ("PIXELS_EVENT", event),
        ]
        for key, value in rest:
            name = field_name(key)
            if isinstance(value, list | tuple | set | frozenset):
                # One field per item: `journalctl PIXELS_WORKSTREAM=WS-05` matches any of them.
                entry.extend((name, _text(item)) for item in list(value)[:MAX_ITEMS_PER_FIELD])
            else:
                entry.append((name, _text(value)))
        return {"entry": entry}


def encode_entry(entry: Iterable[tuple[str, str]]) -> bytes:
    """The native protocol: ``KEY=value\\n``, or for a value holding a newline
    ``KEY\\n<64-bit little-endian length><value>\\n``."""
    out = bytearray()
    for key, value in entry:
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


def journal_socket_path(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get(ENV_JOURNAL_SOCKET) or DEFAULT_JOURNAL_SOCKET


def stderr_is_journal(environ: Mapping[str, str] | None = None, fd: int = 2) -> bool:
    """True when ``fd`` is the stream systemd connected to the journal.

    systemd sets ``$JOURNAL_STREAM=DEVICE:INODE`` for it; compare with the fd itself, since the
    variable is inherited by children whose stderr may point elsewhere (systemd.exec(5)).
    """
    env = os.environ if environ is None else environ
    value = env.get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


class JournalSink:
    """Sends entries to journald; falls back to ``<N>``-prefixed lines on ``fallback``.

    Non-blocking: a journald that does not keep up must not stall the daemon's event loop, so a
    full socket queue sends the entry to the fallback stream instead.
    """

    def __init__(self, path: str | None = None, fallback: IO[str] | None = None) -> None:
        self.path = path or journal_socket_path()
        self.fallback = fallback
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.setblocking(False)

    def send(self, entry: Entry) -> bool:
        """Send one entry; True if journald took it, False if it went to the fallback."""
        data = encode_entry(entry)
        try:
            try:
                self._sock.sendto(data, self.path)
            except OSError as exc:
                if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                    raise
                self._send_memfd(data)
        except OSError:
            self._write_fallback(entry)
            return False
        return True

    def _send_memfd(self, data: bytes) -> None:
        """Too large for a datagram: pass a sealed memfd holding the entry (journald reads it)."""
        fd = os.memfd_create("pixelsd-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.write(fd, data)
            # journald only accepts a memfd that nobody can change any more.
            seals = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
            rights = array.array("i", [fd]).tobytes()
            self._sock.sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)], 0, self.path)
        finally:
            os.close(fd)

    def _write_fallback(self, entry: Entry) -> None:
        fields = dict(entry)
        stream = self.fallback if self.fallback is not None else sys.stderr
        line = " ".join(fields.get("MESSAGE", "").split("\n")[:1])
        with contextlib.suppress(OSError, ValueError):
            stream.write(f"<{fields.get('PRIORITY', '6')}>{line}\n")
            stream.flush()

    def msg(self, entry: Entry) -> None:
        self.send(entry)

    # structlog calls the logger method named after the level.
    log = debug = info = warn = warning = err = error = critical = exception = fatal = msg

    def close(self) -> None:
        self._sock.close()


class JournalSinkFactory:
    """structlog logger factory: every logger shares one sink (one socket)."""

    def __init__(self, path: str | None = None, fallback: IO[str] | None = None) -> None:
        self.sink = JournalSink(path, fallback)

    def __call__(self, *args: Any) -> JournalSink:
        return self.sink


# --- escalations ---------------------------------------------------------------------------------

#: Log method per severity, for console/JSON output (journald's PRIORITY comes from the severity).
_SEVERITY_METHOD = {"critical": "critical", "high": "error", "medium": "warning", "low": "info"}


def escalation_fields(record: EscalationRecord) -> dict[str, Any]:
    """The keys an escalation is logged with (each becomes a PIXELS_* journal field)."""
    where = f" ({', '.join(record.affected_workstreams)})" if record.affected_workstreams else ""
    return {
        "message": (
            f"escalation {record.id} [{record.severity} {record.type}] from "
            f"{record.orchestrator}{where}: {record.issue}"
        ),
        "escalation_id": record.id,
        "orchestrator": record.orchestrator,
        "severity": record.severity,
        "escalation_type": record.type,
        "workstream": list(record.affected_workstreams),
        "issue": record.issue,
        "help_needed": record.help_needed or None,
        "raised_at": record.raised_at,
    }


def log_escalation(record: EscalationRecord, logger: Any = None, reason: str = "raised") -> None:
    """Announce an escalation: one ``escalation`` event, at the level its severity implies.

    Call it once per notification the engine asks for (``reason``: raised, escalated, renotify,
    snooze_ended, released, resolved), after the batch that caused it is committed (replay must
    not call it: a restart would announce every escalation again).
    """
    target = logger if logger is not None else structlog.get_logger("pixelsd")
    method = getattr(target, _SEVERITY_METHOD.get(record.severity, "warning"))
    method("escalation", reason=reason, **escalation_fields(record))
