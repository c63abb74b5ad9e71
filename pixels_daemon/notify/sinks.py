"""The sinks: deliver one outbox row and say how it went (an Outcome). No policy here: when to
try, how often and when to give up are notify/policy.py's; the delivery loop calls ``send``.

Every sink carries the row's send-once key to the receiver: webhooks as an ``Idempotency-Key``
header and a ``pixels_key`` field, GitHub as a hidden ``<!-- pixels:KEY -->`` comment (looked for
before posting again after an attempt whose answer was lost), email as a Message-ID made from it.
"""

from __future__ import annotations

import hashlib
import re
import smtplib
import ssl
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Protocol

import anyio
import httpx

from pixels_daemon.notify.config import EmailSink, GitHubSink, Sink, WebhookSink
from pixels_daemon.notify.outbox import Row
from pixels_daemon.notify.policy import Outcome, http_outcome

#: Slack refuses a section's text over 3,000 characters; a little room is kept for the cut note.
SLACK_SECTION_MAX = 2900
#: GitHub refuses a comment or issue body over 65,536 characters.
GITHUB_BODY_MAX = 65_000
#: Pages of recent comments read when looking for a key (100 each): a lookup is bounded even on
#: a busy issue; a notification is looked for only among comments made since it was.
GITHUB_LOOKUP_PAGES = 10


class Deliver(Protocol):
    async def send(self, row: Row, *, uncertain: bool) -> Outcome: ...


def marker(key: str) -> str:
    return f"<!-- pixels:{key} -->"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 30] + "\n\n... (cut; see the file)"


def _slack(text: str) -> str:
    """Markdown to Slack's mrkdwn, as far as our messages need: bold and headings."""
    text = re.sub(r"\*\*(.+?)\*\*", r"*\1*", text)
    return re.sub(r"^#+ (.*)$", r"*\1*", text, flags=re.MULTILINE)


def _transport_error(exc: Exception) -> Outcome:
    # No answer at all (refused, reset, timed out): the receiver may or may not have it.
    return Outcome("retry", f"{type(exc).__name__}: {exc}"[:300])


class WebhookDeliver:
    def __init__(self, sink: WebhookSink, secrets: dict[str, str], client: httpx.AsyncClient):
        self.sink = sink
        self.url = secrets["url"]
        self.token = secrets.get("token")
        self.client = client

    def payload(self, row: Row) -> dict[str, Any]:
        return {
            "text": f"{row.title}\n{_cut(_slack(row.body), SLACK_SECTION_MAX)}",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": row.title[:150]}},
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": _cut(_slack(row.body), SLACK_SECTION_MAX)},
                },
            ],
            "pixels_key": row.key,
        }

    async def send(self, row: Row, *, uncertain: bool) -> Outcome:
        headers = {"Idempotency-Key": row.key}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            resp = await self.client.post(
                self.url, json=self.payload(row), headers=headers, timeout=self.sink.timeout_s
            )
        except httpx.HTTPError as exc:
            return _transport_error(exc)
        return http_outcome(resp.status_code, resp.headers.get("retry-after"), resp.text, now())


def now() -> float:
    return time.time()


class GitHubDeliver:
    def __init__(self, sink: GitHubSink, secrets: dict[str, str], client: httpx.AsyncClient):
        self.sink = sink
        self.client = client
        self.base = sink.api_url.rstrip("/")
        self.headers = {
            "Authorization": f"Bearer {secrets['token']}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }

    def _new_issue(self, row: Row) -> bool:
        return (
            self.sink.critical_issues
            and row.kind == "escalation"
            and row.severity == "critical"
            and row.reason == "raised"
        )

    def body(self, row: Row) -> str:
        return _cut(f"### {row.title}\n\n{row.body}", GITHUB_BODY_MAX) + "\n\n" + marker(row.key)

    async def _already_there(self, row: Row) -> Outcome | None:
        """After an uncertain attempt: is the key in a comment (or issue) made since the row
        was? Outcome sent if so, None if not, retry if GitHub could not say."""
        since = datetime.fromtimestamp(row.created_at - 60, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        repo = self.sink.repo
        url: str | None = (
            f"{self.base}/repos/{repo}/issues"
            if self._new_issue(row)
            else f"{self.base}/repos/{repo}/issues/{self.sink.issue}/comments"
        )
        params: dict[str, str] | None = {"since": since, "per_page": "100"}
        if self._new_issue(row):
            assert params is not None
            params["state"] = "all"
        wanted = marker(row.key)
        for _ in range(GITHUB_LOOKUP_PAGES):
            if url is None:
                break
            try:
                resp = await self.client.get(
                    url, params=params, headers=self.headers, timeout=self.sink.timeout_s
                )
            except httpx.HTTPError as exc:
                return _transport_error(exc)
            if resp.status_code != 200:
                outcome = http_outcome(
                    resp.status_code, resp.headers.get("retry-after"), resp.text, now()
                )
                # Never post blind after an uncertain attempt: a lookup that fails is retried.
                return Outcome("retry", f"looking for {row.key}: {outcome.error}", outcome.wait_s)
            items = resp.json()
            if not isinstance(items, list):
                return Outcome("retry", f"looking for {row.key}: not a list of comments")
            if any(isinstance(i, dict) and wanted in (i.get("body") or "") for i in items):
                return Outcome("sent")
            nxt = resp.links.get("next")
            url, params = (nxt["url"], None) if nxt else (None, None)
        return None

    async def send(self, row: Row, *, uncertain: bool) -> Outcome:
        if uncertain:
            found = await self._already_there(row)
            if found is not None:
                return found
        repo = self.sink.repo
        if self._new_issue(row):
            url = f"{self.base}/repos/{repo}/issues"
            data: dict[str, Any] = {"title": row.title[:250], "body": self.body(row)}
        else:
            url = f"{self.base}/repos/{repo}/issues/{self.sink.issue}/comments"
            data = {"body": self.body(row)}
        try:
            resp = await self.client.post(
                url, json=data, headers=self.headers, timeout=self.sink.timeout_s
            )
        except httpx.HTTPError as exc:
            return _transport_error(exc)
        # GitHub's secondary rate limit answers 403 with Retry-After: a wait, not a refusal.
        if resp.status_code == 403 and resp.headers.get("retry-after"):
            return http_outcome(429, resp.headers.get("retry-after"), resp.text, now())
        return http_outcome(resp.status_code, resp.headers.get("retry-after"), resp.text, now())


class EmailDeliver:
    """smtplib in a worker thread: one message per row, a connection each (a few a week)."""

    def __init__(self, sink: EmailSink, secrets: dict[str, str]):
        self.sink = sink
        self.password = secrets.get("password")

    def message(self, row: Row) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = row.title
        msg["From"] = self.sink.from_addr
        msg["To"] = ", ".join(self.sink.to)
        # The same key gives the same Message-ID: mail systems that dedupe by it drop a repeat.
        digest = hashlib.sha256(row.key.encode()).hexdigest()[:32]
        msg["Message-ID"] = f"<{digest}@pixelsd>"
        msg["X-Pixels-Key"] = row.key
        if row.attachment is not None:
            # A report is read in the attachment (Markdown): the text says what it is.
            msg.set_content(f"{row.title}\n\nThe report is attached ({row.attachment_name}).\n")
        else:
            msg.set_content(row.body)
        if row.attachment is not None:
            msg.add_attachment(
                row.attachment, subtype="markdown", filename=row.attachment_name or "report.md"
            )
        return msg

    def _send_sync(self, msg: EmailMessage) -> None:
        sink = self.sink
        smtp: smtplib.SMTP
        # Certificates are always verified (host name included): the system's CAs, or ca_file.
        context = ssl.create_default_context(cafile=sink.ca_file)
        if sink.security == "tls":
            smtp = smtplib.SMTP_SSL(sink.host, sink.port, timeout=sink.timeout_s, context=context)
        else:
            smtp = smtplib.SMTP(sink.host, sink.port, timeout=sink.timeout_s)
        with smtp:
            if sink.security == "starttls":
                smtp.starttls(context=context)
            if sink.username and self.password:
                smtp.login(sink.username, self.password)
            smtp.send_message(msg)

    async def send(self, row: Row, *, uncertain: bool) -> Outcome:
        msg = self.message(row)
        try:
            await anyio.to_thread.run_sync(self._send_sync, msg)
        except smtplib.SMTPRecipientsRefused as exc:
            return Outcome("failed", f"recipients refused: {exc.recipients}"[:300])
        except smtplib.SMTPResponseException as exc:
            error = f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"[:300]
            # 4xx: try again later; 5xx: the server refuses this (auth, address) for good.
            return Outcome("retry" if exc.smtp_code < 500 else "failed", error)
        except (smtplib.SMTPException, OSError) as exc:
            return _transport_error(exc)
        return Outcome("sent")


def make(name: str, sink: Sink, secrets: dict[str, str], client: httpx.AsyncClient) -> Deliver:
    if isinstance(sink, WebhookSink):
        return WebhookDeliver(sink, secrets, client)
    if isinstance(sink, GitHubSink):
        return GitHubDeliver(sink, secrets, client)
    return EmailDeliver(sink, secrets)
