"""Delivery against real local servers: the weekly report mailed through a real pixelsd to an
aiosmtpd server, with the report attached; in process (the notifier on a real outbox, a clock
injected): giving up after the configured time escalates, quiet hours hold a notification."""

from __future__ import annotations

import email
import email.policy
import socket
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from pixels_daemon.core import engine
from pixels_daemon.notify.config import Notifications
from pixels_daemon.notify.delivery import NotifyService
from pixels_daemon.notify.outbox import Message
from tests.notify_receiver import Receiver
from tests.support import DaemonProcess, ctl


class Inbox:
    """aiosmtpd handler: keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        return "250 OK"


def free_port() -> int:
    # Picked first: aiosmtpd's Controller checks its server by connecting to the port given.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def test_the_weekly_report_is_mailed_with_the_report_attached(
    state_dir: Path, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    config = state_dir / "pixelsd.toml"
    config.write_text(
        "\n".join(
            [
                "[notifications.sinks.team]",
                'type = "email"',
                'host = "127.0.0.1"',
                f"port = {port}",
                'security = "none"',
                'from_addr = "pixelsd@example.com"',
                'to = ["team@example.com"]',
                "[[notifications.routes]]",
                'kinds = ["weekly_report"]',
                'sinks = ["team"]',
            ]
        )
        + "\n"
    )
    daemon = DaemonProcess(state_dir, "--config", str(config)).start()
    try:
        report = ctl(state_dir, "report_now")
        rows: list[dict[str, Any]] = []

        def sent() -> bool:
            rows[:] = ctl(state_dir, "notifications")
            return [r["state"] for r in rows] == ["sent"]

        Receiver().wait_for(sent)
    finally:
        daemon.close()
    (msg,) = inbox.messages
    assert msg["Subject"] == f"Weekly report, week {report['week']}"
    assert msg["X-Pixels-Key"] == rows[0]["key"]
    (attachment,) = list(msg.iter_attachments())
    assert attachment.get_filename() == Path(report["path"]).name
    text = (state_dir / report["path"]).read_text()
    # Text travels with CRLF line ends in mail.
    assert attachment.get_content().replace("\r\n", "\n").rstrip() == text.rstrip()
    assert attachment.get_content_type() == "text/markdown"


# --- in process: the notifier on a real outbox and a real receiver, its clock injected ---------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def service(
    state_dir: Path, receiver: Receiver, clock: Clock, alerts: list[engine.Event], **extra: Any
) -> NotifyService:
    sinks = extra.pop("sinks", {"chat": {"type": "webhook", "url": f"{receiver.url}/hook"}})
    notes = msgspec.convert(
        {
            "sinks": sinks,
            "routes": [{"sinks": list(sinks)}],
            "backoff_initial_s": 0.01,
            "backoff_max_s": 0.02,
            **extra,
        },
        Notifications,
    )

    async def alert(event: engine.Event) -> bool:
        alerts.append(event)
        return True

    return NotifyService(notes, state_dir / "pixels.db", alert=alert, clock=clock)


MSG = Message(
    key="gate:gate-1:run:1", kind="gate", severity="high", title="Gate gate-1 FAILED", body="x"
)


async def wait_until(predicate: Any) -> None:
    with anyio.fail_after(10):
        while not predicate():
            await anyio.sleep(0.01)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    try:
        yield r
    finally:
        r.stop()


async def test_past_the_give_up_time_it_fails_and_escalates(
    state_dir: Path, receiver: Receiver
) -> None:
    receiver.script = [(500, {})] * 1000  # an outage that outlasts the give-up time
    clock = Clock(1_800_000_000.0)
    alerts: list[engine.Event] = []
    svc = service(state_dir, receiver, clock, alerts, give_up_after_s=600)
    svc.outbox.add(svc.rows_for([MSG]))
    async with anyio.create_task_group() as tg:
        await tg.start(svc.run)

        def retried_or_gave_up() -> bool:
            clock.now += 1  # each backoff (0.01-0.02 s) is over
            svc.wake()
            return len(receiver.posts()) >= 3

        await wait_until(retried_or_gave_up)
        assert svc.listing(failed=True) == []
        clock.now += 600  # the outage has lasted the give-up time
        svc.wake()
        await wait_until(lambda: alerts)
        tg.cancel_scope.cancel()
    (row,) = svc.listing(failed=True)
    assert row["last_error"].startswith("HTTP 500")
    assert alerts == [engine.NotificationFailed(sink="chat", key=MSG.key, error=row["last_error"])]
    svc.close()


async def test_quiet_hours_hold_a_notification_until_they_end(
    state_dir: Path, receiver: Receiver
) -> None:
    # 2026-03-04 03:00 UTC, inside 22:00-07:00 UTC.
    clock = Clock(1_772_593_200.0)
    quiet = {"start": "22:00", "end": "07:00", "timezone": "UTC"}
    svc = service(state_dir, receiver, clock, [], quiet_hours=quiet)
    svc.outbox.add(svc.rows_for([MSG]))
    async with anyio.create_task_group() as tg:
        await tg.start(svc.run)
        (row,) = svc.listing(failed=False)
        assert row["next_attempt"] == clock.now + 4 * 3600  # 07:00
        await anyio.wait_all_tasks_blocked()
        assert receiver.posts() == []
        clock.now += 4 * 3600
        svc.wake()
        await wait_until(receiver.posts)
        tg.cancel_scope.cancel()
    svc.close()


async def deliver_one(svc: NotifyService, receiver: Receiver, msg: Message) -> None:
    svc.outbox.add(svc.rows_for([msg]))
    async with anyio.create_task_group() as tg:
        await tg.start(svc.run)
        await wait_until(lambda: [r["state"] for r in svc.listing(failed=False)] == ["sent"])
        tg.cancel_scope.cancel()
    svc.close()


async def test_a_webhook_gets_slacks_text_and_blocks(state_dir: Path, receiver: Receiver) -> None:
    svc = service(state_dir, receiver, Clock(1_800_000_000.0), [])
    msg = Message(
        key="gate:gate-1:run:1",
        kind="gate",
        severity="high",
        title="Gate gate-1 FAILED",
        body="Gate **gate-1** FAILED (evaluation 1).",
    )
    await deliver_one(svc, receiver, msg)
    (post,) = receiver.posts()
    assert post.body["blocks"] == [
        {"type": "header", "text": {"type": "plain_text", "text": "Gate gate-1 FAILED"}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": "Gate *gate-1* FAILED (evaluation 1)."},
        },
    ]
    assert post.body["text"].startswith("Gate gate-1 FAILED\n")
    assert post.headers["Idempotency-Key"] == "gate:gate-1:run:1"


async def test_a_critical_escalation_opens_a_github_issue(
    state_dir: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PX_TEST_TOKEN", "t0ken")
    github = {
        "type": "github",
        "repo": "acme/pixels",
        "issue": 9,
        "api_url": f"{receiver.url}/api/v3",
        "token_env": "PX_TEST_TOKEN",
        "critical_issues": True,
    }
    svc = service(state_dir, receiver, Clock(1_800_000_000.0), [], sinks={"gh": github})
    msg = Message(
        key="escalation:E-7:raised:1800000000.000",
        kind="escalation",
        severity="critical",
        reason="raised",
        title="[critical] E-7 raised: GPU lost",
        body="**GPU lost**",
    )
    await deliver_one(svc, receiver, msg)
    (post,) = receiver.posts()
    assert post.path == "/api/v3/repos/acme/pixels/issues"
    assert post.body["title"] == "[critical] E-7 raised: GPU lost"
    assert post.body["body"].endswith("<!-- pixels:escalation:E-7:raised:1800000000.000 -->")
    assert post.headers["Authorization"] == "Bearer t0ken"


async def test_an_unreadable_github_answer_is_a_failed_attempt_not_a_crash(
    state_dir: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PX_TEST_TOKEN", "t0ken")
    github = {
        "type": "github",
        "repo": "acme/pixels",
        "issue": 9,
        "api_url": f"{receiver.url}/api",
        "token_env": "PX_TEST_TOKEN",
    }
    clock = Clock(1_800_000_000.0)
    svc = service(state_dir, receiver, clock, [], sinks={"gh": github})
    (row_id,) = svc.outbox.add(svc.rows_for([MSG]))
    svc.outbox.begin_attempt(row_id)  # as if the daemon died mid-attempt: it will look first
    receiver.get_raw = b"<html>502 Bad Gateway</html>"
    async with anyio.create_task_group() as tg:
        await tg.start(svc.run)
        await wait_until(lambda: svc.listing(failed=False)[0]["last_error"])
        assert svc.listing(failed=False)[0]["state"] == "pending"
        receiver.get_raw = None
        clock.now += 60
        svc.wake()
        await wait_until(lambda: svc.listing(failed=False)[0]["state"] == "sent")
        tg.cancel_scope.cancel()
    svc.close()
    assert len(receiver.posts()) == 1


@pytest.fixture
def smtp_auth() -> Iterator[tuple[Inbox, int, list[bytes]]]:
    """An SMTP server that wants AUTH (over plain TCP here: the test has no certificate)."""
    inbox = Inbox()
    logins: list[bytes] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any):
        assert isinstance(data, LoginPassword)
        logins.append(data.login)
        return AuthResult(success=data.password == b"hunter2")

    port = free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield inbox, port, logins
    finally:
        controller.stop()


def mail_service(
    state_dir: Path, port: int, monkeypatch: pytest.MonkeyPatch, password: str
) -> NotifyService:
    monkeypatch.setenv("PX_SMTP_PASSWORD", password)
    sink = {
        "type": "email",
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "username": "pixelsd",
        "password_env": "PX_SMTP_PASSWORD",
        "from_addr": "pixelsd@example.com",
        "to": ["team@example.com", "lead@example.com"],
    }
    return NotifyService(
        msgspec.convert({"sinks": {"mail": sink}, "routes": [{"sinks": ["mail"]}]}, Notifications),
        state_dir / "pixels.db",
        clock=Clock(1_800_000_000.0),
    )


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_email_logs_in_and_reaches_every_recipient(
    state_dir: Path, smtp_auth: tuple[Inbox, int, list[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox, port, logins = smtp_auth
    svc = mail_service(state_dir, port, monkeypatch, "hunter2")
    svc.outbox.add(svc.rows_for([MSG]))
    async with anyio.create_task_group() as tg:
        await tg.start(svc.run)
        await wait_until(lambda: svc.listing(failed=False)[0]["state"] == "sent")
        tg.cancel_scope.cancel()
    svc.close()
    assert logins == [b"pixelsd"]
    (msg,) = inbox.messages
    assert msg["To"] == "team@example.com, lead@example.com"
    assert msg["Subject"] == "Gate gate-1 FAILED"
