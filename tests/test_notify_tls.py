"""The email sink over TLS, against real aiosmtpd servers with certificates from a test CA
(trustme): STARTTLS with AUTH, implicit TLS, and a server whose certificate the configured CA did
not sign (refused, never sent in the clear)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from pixels_daemon.notify.config import ConfigError, Notifications, load_config
from pixels_daemon.notify.delivery import NotifyService
from tests.test_notify_delivery import MSG, Clock, Inbox, free_port, wait_until

HOST = "127.0.0.1"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST).configure_cert(context)
    return context


def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@contextmanager
def running(controller: Controller) -> Iterator[Controller]:
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


def mail(state_dir: Path, port: int, security: str, cafile: str, **extra: Any) -> NotifyService:
    sink = {
        "type": "email",
        "host": HOST,
        "port": port,
        "security": security,
        "ca_file": cafile,
        "from_addr": "pixelsd@example.com",
        "to": ["team@example.com"],
        **extra,
    }
    notes = msgspec.convert(
        {
            "sinks": {"mail": sink},
            "routes": [{"sinks": ["mail"]}],
            "backoff_initial_s": 0.01,
            "backoff_max_s": 0.02,
        },
        Notifications,
    )
    return NotifyService(notes, state_dir / "pixels.db", clock=Clock(1_800_000_000.0))


async def deliver_one(svc: NotifyService, done: Any) -> dict[str, Any]:
    svc.outbox.add(svc.rows_for([MSG]))
    async with anyio.create_task_group() as tg:
        await tg.start(svc.run)
        await wait_until(lambda: done(svc.listing(failed=False)[0]))
        tg.cancel_scope.cancel()
    (row,) = svc.listing(failed=False)
    svc.close()
    return row


async def test_starttls_with_login_delivers_to_a_server_signed_by_the_configured_ca(
    state_dir: Path,
    tmp_path: Path,
    ca: trustme.CA,
    server_tls: ssl.SSLContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inbox = Inbox()
    logins: list[bytes] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any):
        assert isinstance(data, LoginPassword)
        assert session.ssl is not None  # the password only ever crosses TLS
        logins.append(data.login)
        return AuthResult(success=data.password == b"hunter2")

    port = free_port()
    controller = Controller(
        inbox,
        hostname=HOST,
        port=port,
        tls_context=server_tls,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    )
    with running(controller):
        monkeypatch.setenv("PX_SMTP_PASSWORD", "hunter2")
        svc = mail(
            state_dir,
            port,
            "starttls",
            ca_file(ca, tmp_path),
            username="pixelsd",
            password_env="PX_SMTP_PASSWORD",
        )
        row = await deliver_one(svc, lambda r: r["state"] == "sent")
    assert row["state"] == "sent"
    assert logins == [b"pixelsd"]
    (msg,) = inbox.messages
    assert msg["Subject"] == "Gate gate-1 FAILED"


async def test_implicit_tls_delivers(
    state_dir: Path, tmp_path: Path, ca: trustme.CA, server_tls: ssl.SSLContext
) -> None:
    inbox = Inbox()
    port = free_port()
    with running(Controller(inbox, hostname=HOST, port=port, ssl_context=server_tls)):
        svc = mail(state_dir, port, "tls", ca_file(ca, tmp_path))
        row = await deliver_one(svc, lambda r: r["state"] == "sent")
    assert row["state"] == "sent"
    assert len(inbox.messages) == 1


async def test_a_certificate_the_ca_did_not_sign_is_refused_and_nothing_is_sent(
    state_dir: Path, tmp_path: Path, server_tls: ssl.SSLContext
) -> None:
    """The server's certificate comes from another CA: no mail, the error says why."""
    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox, hostname=HOST, port=port, tls_context=server_tls, require_starttls=True
    )
    with running(controller):
        svc = mail(state_dir, port, "starttls", ca_file(trustme.CA(), tmp_path))
        row = await deliver_one(svc, lambda r: r["attempts"] >= 1 and r["last_error"])
    assert row["state"] != "sent"
    assert "CERTIFICATE_VERIFY_FAILED" in row["last_error"]
    assert inbox.messages == []


def test_a_ca_file_that_is_not_pem_fails_the_config(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    config = tmp_path / "pixelsd.toml"
    config.write_text(
        "[notifications.sinks.mail]\n"
        'type = "email"\nhost = "smtp.example.com"\nfrom_addr = "p@example.com"\n'
        f'to = ["t@example.com"]\nca_file = "{bad}"\n'
        '[[notifications.routes]]\nsinks = ["mail"]\n'
    )
    with pytest.raises(ConfigError, match=r"ca_file .* cannot be loaded as PEM certificates"):
        load_config(config)
