"""Native journald entries over a real datagram socket standing in for journald's: the renderer's
fields, the wire format, the sink's fallbacks, and a real pixelsd announcing an escalation."""

from __future__ import annotations

import array
import fcntl
import io
import os
import signal
import socket
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from pixels_daemon.core.state import EscalationRecord
from pixels_daemon.journal import (
    JournalRenderer,
    JournalSink,
    encode_entry,
    escalation_fields,
    field_name,
    log_escalation,
    stderr_is_journal,
)
from pixels_daemon.logconfig import REDACTED, redact_secrets, resolve_format
from protocol import codec
from protocol.messages import Ack, Escalation
from tests.support import BIN, env_with, wait_ready
from tests.test_sdnotify import DatagramSocket


def parse_entry(data: bytes) -> list[tuple[str, str]]:
    """Decode journald's native format (both the KEY=value and the binary-length forms)."""
    fields = []
    pos = 0
    while pos < len(data):
        newline = data.index(b"\n", pos)
        line = data[pos:newline]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            pos = newline + 1
        else:
            key = line
            (size,) = struct.unpack("<Q", data[newline + 1 : newline + 9])
            value = data[newline + 9 : newline + 9 + size]
            assert data[newline + 9 + size : newline + 10 + size] == b"\n"
            pos = newline + 10 + size
        fields.append((key.decode(), value.decode()))
    return fields


def record(severity: str = "critical", workstreams: tuple[str, ...] = ("WS-04", "WS-05")) -> Any:
    return EscalationRecord(
        id="E-7",
        orchestrator="model",
        type="blocker",
        severity=severity,
        issue="ComfyUI cannot load SDXL: out of memory",
        affected_workstreams=list(workstreams),
        attempted_resolutions=["smaller batch"],
        help_needed="more memory or a smaller model",
        raised_at=1_800_000_000.0,
    )


def render(**event: Any) -> list[tuple[str, str]]:
    return JournalRenderer()(None, event.get("level", "info"), dict(event))["entry"]


@pytest.fixture
def journal(state_dir: Path) -> Iterator[DatagramSocket]:
    sock = DatagramSocket(str(state_dir / "journal.sock"))
    yield sock
    sock.close()


# --- the renderer ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "priority"), [("critical", "2"), ("high", "3"), ("medium", "4"), ("low", "5")]
)
def test_severity_decides_priority(severity: str, priority: str) -> None:
    """An escalation's PRIORITY comes from its severity: critical 2, high 3, medium 4, low 5."""
    entry = dict(render(event="escalation", level="info", **escalation_fields(record(severity))))
    assert entry["PRIORITY"] == priority


@pytest.mark.parametrize(
    ("level", "priority"), [("debug", "7"), ("info", "6"), ("warning", "4"), ("error", "3")]
)
def test_log_level_decides_priority_otherwise(level: str, priority: str) -> None:
    """Without a severity, the log level maps to the syslog priority."""
    assert dict(render(event="listening", level=level))["PRIORITY"] == priority


def test_escalation_entry_fields() -> None:
    """An escalation carries MESSAGE, SYSLOG_IDENTIFIER and the PIXELS_* fields operators filter."""
    entry = render(event="escalation", level="critical", **escalation_fields(record()))
    fields = dict(entry)
    assert fields["SYSLOG_IDENTIFIER"] == "pixelsd"
    assert fields["PIXELS_EVENT"] == "escalation"
    assert fields["PIXELS_ESCALATION_ID"] == "E-7"
    assert fields["PIXELS_ORCHESTRATOR"] == "model"
    assert fields["PIXELS_SEVERITY"] == "critical"
    assert fields["PIXELS_ESCALATION_TYPE"] == "blocker"
    assert [v for k, v in entry if k == "PIXELS_WORKSTREAM"] == ["WS-04", "WS-05"]
    assert fields["MESSAGE"] == (
        "escalation E-7 [critical blocker] from model (WS-04, WS-05): "
        "ComfyUI cannot load SDXL: out of memory"
    )


def test_plain_event_message_is_logfmt() -> None:
    """An event without a message reads as 'event key=value ...', quoting values with spaces."""
    fields = dict(render(event="listening", bus="ipc:///run/pixels/bus.sock", plan="DGX Pixels"))
    assert fields["MESSAGE"] == "listening bus=ipc:///run/pixels/bus.sock plan='DGX Pixels'"
    assert fields["PIXELS_BUS"] == "ipc:///run/pixels/bus.sock"


def test_field_names_follow_journald_rules() -> None:
    """Keys become PIXELS_<UPPER>, other characters '_', at most 64 characters."""
    assert field_name("ack.seq-max") == "PIXELS_ACK_SEQ_MAX"
    assert len(field_name("x" * 100)) == 64


def test_secret_values_never_reach_an_entry() -> None:
    """Keys naming tokens, secrets, passwords or keys are redacted before rendering."""
    event = redact_secrets(None, "info", {"event": "x", "api_token": "t0k", "curve_secret": "s"})
    fields = dict(render(**event))
    assert fields["PIXELS_API_TOKEN"] == REDACTED
    assert fields["PIXELS_CURVE_SECRET"] == REDACTED
    assert "t0k" not in fields["MESSAGE"]


# --- the wire format and the sink ----------------------------------------------------------------


def test_multiline_value_uses_the_binary_form() -> None:
    """A value holding a newline is sent as KEY, a 64-bit length, the bytes (journald's format)."""
    data = encode_entry([("MESSAGE", "line 1\nline 2"), ("PRIORITY", "3")])
    assert data.startswith(b"MESSAGE\n" + struct.pack("<Q", 13) + b"line 1\nline 2\n")
    assert parse_entry(data) == [("MESSAGE", "line 1\nline 2"), ("PRIORITY", "3")]


def test_sink_sends_one_datagram_per_entry(journal: DatagramSocket) -> None:
    """Each entry is one datagram to the socket the sink was given."""
    sink = JournalSink(str(journal.address))
    assert sink.send([("MESSAGE", "hello"), ("PRIORITY", "6")])
    assert parse_entry(journal.recv(2) or b"") == [("MESSAGE", "hello"), ("PRIORITY", "6")]
    assert journal.drain() == []


def test_oversized_entry_goes_through_a_sealed_memfd(journal: DatagramSocket) -> None:
    """An entry too large for a datagram is passed as a sealed memfd, as journald requires."""
    big = "x" * (1 << 20)
    assert JournalSink(str(journal.address)).send([("MESSAGE", big)])
    fds = array.array("i")
    data, ancillary, _flags, _addr = journal.sock.recvmsg(16, socket.CMSG_LEN(fds.itemsize))
    assert data == b""
    (level, kind, payload), *_ = ancillary
    assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
    fds.frombytes(payload[: fds.itemsize])
    with os.fdopen(fds[0], "rb") as memfd:
        seals = fcntl.fcntl(memfd.fileno(), fcntl.F_GET_SEALS)
        assert seals & fcntl.F_SEAL_WRITE and seals & fcntl.F_SEAL_SEAL
        assert parse_entry(os.pread(memfd.fileno(), 2 << 20, 0)) == [("MESSAGE", big)]


def test_unreachable_journal_falls_back_to_a_prefixed_line(state_dir: Path) -> None:
    """Without journald the entry becomes one '<PRIORITY>MESSAGE' line on the fallback stream."""
    fallback = io.StringIO()
    sink = JournalSink(str(state_dir / "no-journald.sock"), fallback=fallback)
    assert not sink.send([("MESSAGE", "escalation E-1: disk\nfull"), ("PRIORITY", "2")])
    assert fallback.getvalue() == "<2>escalation E-1: disk\n"


def test_stderr_is_journal_compares_device_and_inode(tmp_path: Path) -> None:
    """$JOURNAL_STREAM counts only when it names the very file the fd points at."""
    with open(tmp_path / "stream", "w") as f:
        st = os.fstat(f.fileno())
        assert stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, fd=f.fileno())
        assert not stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:1"}, fd=f.fileno())
        assert not stderr_is_journal({}, fd=f.fileno())


def test_auto_format_picks_journal_under_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    """--log-format auto is journal when stderr is the journal stream, console otherwise."""
    st = os.fstat(2)
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    assert resolve_format("auto") == "journal"
    monkeypatch.delenv("JOURNAL_STREAM")
    assert resolve_format("auto") == "console"


def test_log_escalation_logs_at_the_severity_level() -> None:
    """log_escalation calls the logger method its severity implies, with the escalation fields."""
    calls: list[tuple[str, str, dict[str, Any]]] = []

    class Recorder:
        def __getattr__(self, method: str) -> Any:
            return lambda event, **kw: calls.append((method, event, kw))

    log_escalation(record("high"), Recorder())
    assert [(m, e, kw["escalation_id"]) for m, e, kw in calls] == [("error", "escalation", "E-7")]


# --- a real daemon ------------------------------------------------------------------------------


def test_daemon_escalation_makes_one_journal_entry(
    state_dir: Path, journal: DatagramSocket
) -> None:
    """An escalation from an orchestrator (sent twice: a resend) gives exactly one entry."""
    proc = subprocess.Popen(
        [
            str(BIN / "pixelsd"),
            "--state-dir",
            str(state_dir),
            "--log-format",
            "journal",
            "--launcher",
            "none",
        ],
        env=env_with(PIXELS_JOURNAL_SOCKET=str(journal.address)),
        stderr=subprocess.PIPE,
    )
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        wait_ready(state_dir, proc)
        sock.connect(f"ipc://{state_dir}/run/bus.sock")
        escalation = Escalation(
            id="esc-1",
            seq=1,
            orchestrator="model",
            severity="critical",
            issue="ComfyUI cannot load SDXL",
            affected_workstreams=["WS-04", "WS-05"],
        )
        for _ in range(2):  # the second is a duplicate: acked again, not applied again
            sock.send(codec.encode(escalation))
            assert sock.poll(5000)
            ack = codec.to_orchestrator.decode(sock.recv())
            assert isinstance(ack, Ack)
            assert ack.acked_seq == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        entries = [parse_entry(d) for d in journal.drain()]
    finally:
        sock.close(0)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    escalations = [e for e in entries if ("PIXELS_EVENT", "escalation") in e]
    assert len(escalations) == 1, escalations
    fields = dict(escalations[0])
    assert fields["PRIORITY"] == "2"
    assert fields["SYSLOG_IDENTIFIER"] == "pixelsd"
    assert fields["PIXELS_ESCALATION_ID"] == "E-1"
    assert fields["PIXELS_ORCHESTRATOR"] == "model"
    assert fields["PIXELS_SEVERITY"] == "critical"
    assert [v for k, v in escalations[0] if k == "PIXELS_WORKSTREAM"] == ["WS-04", "WS-05"]
    # Every other event went to the journal too, none to stderr.
    assert any(("PIXELS_EVENT", "listening") in e for e in entries)
    assert proc.stderr is not None
    assert proc.stderr.read() == b""
