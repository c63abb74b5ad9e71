"""The pure parts of security/: who may send what, bindings, per-peer limits, key names."""

from __future__ import annotations

import pytest

from pixels_daemon.daemon import _CTL_COMMANDS
from pixels_daemon.security.limits import PeerLimiter
from pixels_daemon.security.policy import (
    OPERATOR,
    QUERIES,
    UNTRUSTED,
    VIEWER,
    Bindings,
    Role,
    RoleError,
    authorize_bus,
    authorize_ctl,
    ipc_ctl_role,
    parse_role,
    peer_uid,
)

CHANGES = sorted(set(_CTL_COMMANDS) - QUERIES)
READS = sorted(set(_CTL_COMMANDS) & QUERIES)
FOUNDATION = Role("orchestrator", "foundation")


def test_queries_are_daemon_commands() -> None:
    assert set(READS) <= set(_CTL_COMMANDS)
    assert {"ack", "resolve", "halt", "resume", "decision_approve", "spawn"} <= set(CHANGES)


@pytest.mark.parametrize("command", sorted(_CTL_COMMANDS))
def test_operator_may_run_every_command(command: str) -> None:
    assert authorize_ctl(OPERATOR, command) is None


@pytest.mark.parametrize("command", READS)
def test_viewer_may_query(command: str) -> None:
    assert authorize_ctl(VIEWER, command) is None


@pytest.mark.parametrize("command", CHANGES)
def test_viewer_may_not_change_anything(command: str) -> None:
    denial = authorize_ctl(VIEWER, command)
    assert denial is not None
    assert denial.code == "forbidden"
    assert "operator" in denial.message


def test_orchestrator_key_may_not_use_ctl() -> None:
    denial = authorize_ctl(FOUNDATION, "ping")
    assert denial is not None and "control socket" in denial.message


def test_revoked_key_gets_nothing() -> None:
    assert authorize_ctl(UNTRUSTED, "ping") is not None
    assert authorize_bus(UNTRUSTED, None, "foundation") is not None


def test_orchestrator_key_speaks_only_as_itself() -> None:
    assert authorize_bus(FOUNDATION, None, "foundation") is None
    denial = authorize_bus(FOUNDATION, None, "model")
    assert denial is not None and "'foundation'" in denial.message


@pytest.mark.parametrize("role", [OPERATOR, VIEWER])
def test_people_keys_may_not_speak_on_the_bus(role: Role) -> None:
    assert authorize_bus(role, None, "foundation") is not None


def test_ipc_connection_is_bound_to_its_first_name() -> None:
    assert authorize_bus(None, None, "model") is None
    assert authorize_bus(None, "model", "model") is None
    assert authorize_bus(None, "model", "foundation") is not None


def test_bindings_forget_the_least_recently_active() -> None:
    table = Bindings(limit=2)
    table.bind(b"a", "foundation")
    table.bind(b"b", "model")
    assert table.get(b"a") == "foundation"  # a is now the most recent
    table.bind(b"c", "interface")
    assert len(table) == 2
    assert table.get(b"b") is None
    assert table.get(b"a") == "foundation"


@pytest.mark.parametrize(
    ("text", "role"),
    [
        ("operator", OPERATOR),
        ("viewer", VIEWER),
        ("orchestrator:foundation", FOUNDATION),
    ],
)
def test_parse_role(text: str, role: Role) -> None:
    assert parse_role(text) == role
    assert str(role) == text


@pytest.mark.parametrize("text", ["orchestrator", "admin", "viewer:x", ""])
def test_parse_role_refuses_unknown_spellings(text: str) -> None:
    with pytest.raises(RoleError, match="orchestrator"):
        parse_role(text)


def test_peer_uid_from_libzmq_peer_address() -> None:
    assert peer_uid("localhost:1000:1000:4242") == 1000
    assert peer_uid("10.0.0.1") is None
    assert peer_uid(None) is None


def test_ipc_ctl_role_by_uid() -> None:
    ops = frozenset({0, 1000})
    assert ipc_ctl_role(1000, ops) == OPERATOR
    assert ipc_ctl_role(1001, ops) == VIEWER
    assert ipc_ctl_role(None, ops) == VIEWER


def test_limiter_throttles_a_flood_and_answers_once_per_dry_spell() -> None:
    lim = PeerLimiter(rate=10.0, burst=5.0)
    verdicts = [lim.admit(b"p", 0.0) for _ in range(8)]
    assert verdicts == [True] * 5 + [None, False, False]
    assert lim.stats.throttled == 3
    assert lim.admit(b"q", 0.0) is True  # another peer is not affected
    assert lim.admit(b"p", 0.1) is True  # a tenth of a second refills one frame


def test_limiter_charges_bad_frames_more() -> None:
    lim = PeerLimiter(rate=1.0, burst=200.0, bad_cost=100.0)
    lim.bad(b"p", "ipc:p", 0.0)
    lim.bad(b"p", "ipc:p", 0.0)
    assert lim.admit(b"p", 0.0) is None
    assert lim.stats.bad_by_peer == {"ipc:p": 2}


def test_limiter_tables_are_bounded() -> None:
    lim = PeerLimiter(max_peers=3)
    for i in range(100):
        lim.admit(bytes([i]), 0.0)
        lim.bad(bytes([i]), f"p{i}", 0.0)
    assert lim.stats.peers == 3
    assert len(lim.stats.bad_by_peer) <= 32


def test_limiter_ignores_a_clock_going_backwards() -> None:
    lim = PeerLimiter(rate=10.0, burst=1.0)
    assert lim.admit(b"p", 10.0) is True
    assert lim.admit(b"p", 5.0) is None


def test_protocol_doc_lists_the_viewer_queries() -> None:
    """docs/protocol.md, section 6, names every command a viewer may send."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()
    sentence = doc.split("they are the ones a viewer may send:")[1].split("(")[0]
    assert {w.strip("` ,\n") for w in sentence.split(",")} == QUERIES


def test_denials_are_logged_as_rate_limited_security_events() -> None:
    from structlog.testing import capture_logs

    from pixels_daemon.security.guard import Guard, Peer

    now = [0.0]
    guard = Guard(clock=lambda: now[0])
    peer = Peer(b"p", "uid:1000", VIEWER)
    with capture_logs() as logs:
        for _ in range(5):
            assert guard.check_ctl(peer, "halt") is not None
        now[0] = 11.0  # past the 10 s interval
        guard.check_ctl(peer, "halt")
    events = [e for e in logs if e["event"] == "security_denied"]
    assert len(events) == 2
    assert events[0]["peer"] == "uid:1000" and events[0]["command"] == "halt"
    assert events[1]["suppressed"] == 4
    assert guard.view()["denied"] == 6
