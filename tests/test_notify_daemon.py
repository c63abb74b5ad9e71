"""Notifications through a real pixelsd (``--config``) to real local receivers: an escalation
becomes a webhook POST and a GitHub comment, through a 429 and an outage; a daemon SIGKILLed while
GitHub holds its answer delivers the comment exactly once after a restart; the outbox and the test
message through pixelsctl."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from protocol import codec
from protocol.messages import Escalation, Register
from tests.notify_receiver import Receiver
from tests.support import BIN, DaemonProcess, ctl


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    try:
        yield r
    finally:
        r.stop()


def write_config(state_dir: Path, receiver: Receiver, **extra: str) -> Path:
    token = state_dir / "gh-token"
    token.write_text("s3cret-token\n")
    config = state_dir / "pixelsd.toml"
    lines = [
        "[notifications]",
        # Short waits so a 500 outage costs the test milliseconds, not minutes.
        "backoff_initial_s = 0.05",
        "backoff_max_s = 0.2",
        *(f"{k} = {v}" for k, v in extra.items()),
        "[notifications.sinks.chat]",
        'type = "webhook"',
        f'url = "{receiver.url}/hooks/chat"',
        "[notifications.sinks.gh]",
        'type = "github"',
        'repo = "acme/pixels"',
        "issue = 9",
        f'api_url = "{receiver.url}/api"',
        f'token_file = "{token}"',
        "[[notifications.routes]]",
        'kinds = ["escalation"]',
        'min_severity = "high"',
        'sinks = ["chat", "gh"]',
    ]
    config.write_text("\n".join(lines) + "\n")
    return config


def raise_escalation(state_dir: Path, issue: str = "GPU OOM in training") -> None:
    """An orchestrator raises a high escalation (a real DEALER on the daemon's bus)."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 1000)
    sock.connect(f"ipc://{state_dir}/run/bus.sock")
    try:
        sock.send(codec.encode(Register(id="r", orchestrator="model")))
        esc = Escalation(id="e1", seq=1, orchestrator="model", severity="high", issue=issue)
        sock.send(codec.encode(esc))
        assert sock.poll(5000), "no answer from the daemon"
    finally:
        sock.close()


def outbox(state_dir: Path) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = ctl(state_dir, "notifications")
    return rows


def test_an_escalation_reaches_the_webhook_through_a_429_and_an_outage(
    state_dir: Path, receiver: Receiver
) -> None:
    receiver.script = [(429, {"Retry-After": "1"}), (500, {}), (500, {})]
    daemon = DaemonProcess(state_dir, "--config", str(write_config(state_dir, receiver))).start()
    try:
        raise_escalation(state_dir)
        receiver.wait_for(lambda: {r["state"] for r in outbox(state_dir)} == {"sent"})
    finally:
        daemon.close()
    hooks = [r for r in receiver.posts() if r.path == "/hooks/chat"]
    comments = [r for r in receiver.posts() if r.path.startswith("/api/")]
    # Webhook and GitHub share the script's three failures, then one 2xx each.
    assert len(hooks) + len(comments) == 5
    assert hooks[-1].body["text"].startswith("[high] E-1 raised: GPU OOM in training")
    assert hooks[-1].headers["Idempotency-Key"] == hooks[-1].body["pixels_key"]
    assert {h.headers["Idempotency-Key"] for h in hooks} == {hooks[0].body["pixels_key"]}
    assert comments[-1].path == "/api/repos/acme/pixels/issues/9/comments"
    assert comments[-1].headers["Authorization"] == "Bearer s3cret-token"


def test_the_token_never_reaches_the_log(state_dir: Path, receiver: Receiver) -> None:
    daemon = DaemonProcess(state_dir, "--config", str(write_config(state_dir, receiver))).start()
    try:
        raise_escalation(state_dir)
        receiver.wait_for(lambda: {r["state"] for r in outbox(state_dir)} == {"sent"})
    finally:
        daemon.close()
    assert "s3cret-token" not in daemon.log()
    assert "/hooks/chat" not in daemon.log()  # a webhook's URL may be its secret (Slack's is)


def test_killed_mid_delivery_and_restarted_it_comments_exactly_once(
    state_dir: Path, receiver: Receiver
) -> None:
    """SIGKILL while GitHub has the comment but has not answered: the restarted daemon finds the
    key in the issue's comments and marks it sent instead of posting it again."""
    config = str(write_config(state_dir, receiver))
    receiver.hold = True
    daemon = DaemonProcess(state_dir, "--config", config).start()
    try:
        raise_escalation(state_dir)
        assert receiver.arrived.wait(10), "no POST arrived"
        daemon.kill()
        receiver.hold = False
        receiver.release.set()  # the answer goes to a dead socket
        daemon.start()
        receiver.wait_for(lambda: {r["state"] for r in outbox(state_dir)} == {"sent"})
        key = next(r["key"] for r in outbox(state_dir) if r["sink"] == "gh")
    finally:
        daemon.close()
    marked = [c for c in receiver.comments if f"<!-- pixels:{key} -->" in c["body"]]
    assert len(marked) == 1
    assert any(r.method == "GET" for r in receiver.requests)  # it looked before it posted


def test_notifications_failed_lists_what_was_given_up(state_dir: Path, receiver: Receiver) -> None:
    receiver.script = [(401, {})] * 2  # a bad token: retrying cannot help
    daemon = DaemonProcess(state_dir, "--config", str(write_config(state_dir, receiver))).start()
    try:
        raise_escalation(state_dir)
        receiver.wait_for(lambda: len(ctl(state_dir, "notifications", failed=True)) == 2)
        failed = ctl(state_dir, "notifications", failed=True)
        escalations = ctl(state_dir, "escalations")
    finally:
        daemon.close()
    assert {f["sink"] for f in failed} == {"chat", "gh"}
    assert all(f["last_error"].startswith("HTTP 401") for f in failed)
    assert {"notification_failed"} <= {e["kind"] for e in escalations}


def test_notify_retry_sends_a_failed_notification_once_the_cause_is_fixed(
    state_dir: Path, receiver: Receiver
) -> None:
    receiver.script = [(401, {})] * 2  # a bad token, then fixed at the receiver
    daemon = DaemonProcess(state_dir, "--config", str(write_config(state_dir, receiver))).start()
    try:
        raise_escalation(state_dir)
        receiver.wait_for(lambda: len(ctl(state_dir, "notifications", failed=True)) == 2)
        failed = ctl(state_dir, "notifications", failed=True)
        retried = [ctl(state_dir, "notify_retry", id=row["id"]) for row in failed]
        receiver.wait_for(lambda: {r["state"] for r in outbox(state_dir)} == {"sent"})
    finally:
        daemon.close()
    assert {r["state"] for r in retried} == {"pending"}
    key = failed[0]["key"]
    hooks = [p for p in receiver.posts() if p.body.get("pixels_key") == key]
    comments = [p for p in receiver.posts() if p.body.get("body", "").endswith(f"pixels:{key} -->")]
    # Each sink: the refused try, then the retry. (The notification_failed escalation the
    # refusals raised was notified too, under its own key.)
    assert (len(hooks), len(comments)) == (2, 2)


def test_notify_test_sends_to_the_named_sink(state_dir: Path, receiver: Receiver) -> None:
    daemon = DaemonProcess(state_dir, "--config", str(write_config(state_dir, receiver))).start()
    try:
        result = ctl(state_dir, "notify_test", sink="chat")
        receiver.wait_for(lambda: bool(receiver.posts()))
        rows = outbox(state_dir)
    finally:
        daemon.close()
    assert [r["id"] for r in rows] == [result["id"]]
    assert receiver.posts()[0].path == "/hooks/chat"


def test_pixelsctl_notify_test_names_the_configured_sinks_for_an_unknown_one(
    state_dir: Path, receiver: Receiver
) -> None:
    daemon = DaemonProcess(state_dir, "--config", str(write_config(state_dir, receiver))).start()
    try:
        out = subprocess.run(
            [str(BIN / "pixelsctl"), "--state-dir", str(state_dir), "notify", "test", "slack"],
            capture_output=True,
            text=True,
            check=False,
        )
        listing = subprocess.run(
            [str(BIN / "pixelsctl"), "--state-dir", str(state_dir), "notifications", "--json"],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        daemon.close()
    assert out.returncode == 4
    assert "no sink named 'slack'; configured sinks: chat, gh" in out.stderr
    assert json.loads(listing.stdout) == []
