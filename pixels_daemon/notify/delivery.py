"""The notifier: routes what the engine decided to tell into the outbox, and delivers it.

``rows_for`` (called by the server while it commits a batch) turns effects into outbox rows that
are written in the batch's own transaction. ``run`` is the delivery loop, off the event loop's
critical path: it sleeps until the next row is due (or it is woken), sends what is due (each sink
on its own, in order), and records each outcome: sent only after the receiver accepted, else a
retry after a backoff (or the receiver's Retry-After), else failed, which becomes a
``NotificationFailed`` event (an escalation, durable in the log like any other).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import structlog

from pixels_daemon.core import engine
from pixels_daemon.core.state import State
from pixels_daemon.notify import messages, policy, sinks
from pixels_daemon.notify.config import Notifications, sink_secrets
from pixels_daemon.notify.outbox import Message, Outbox, Queued, Row, queued
from pixels_daemon.store import StoreError

log = structlog.get_logger("pixelsd.notify")

# httpx logs each request's URL at INFO, and a Slack webhook's URL is its secret.
logging.getLogger("httpx").setLevel(logging.WARNING)

#: With nothing due, the loop still looks once a minute: a row added by another process (or a
#: clock that jumped) is picked up without a wake-up.
IDLE_POLL_S = 60.0

Alert = Callable[[engine.Event], Awaitable[bool]]


class UnknownSink(Exception):
    """`pixelsctl notify test` named a sink the config does not have."""


class NotifyService:
    """Owns the outbox connection and the sinks (secrets read at construction: start-up)."""

    def __init__(
        self,
        notes: Notifications,
        db_path: Path,
        alert: Alert | None = None,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.notes = notes
        self.secrets = {name: sink_secrets(name, sink) for name, sink in notes.sinks.items()}
        self.outbox = Outbox.open(db_path)
        self.alert = alert
        self.clock = clock
        self.rand = rand
        self._wake = anyio.Event()

    def close(self) -> None:
        self.outbox.close()

    # --- enqueue (in the batch's transaction) -----------------------------------------------

    def messages_for(
        self, effects: Sequence[engine.Effect], state: State, documents: dict[str, str]
    ) -> list[Message]:
        """What the effects tell people. ``documents``: the reports just rendered, by file name."""
        out: list[Message] = []
        for effect in effects:
            match effect:
                case engine.Notify():
                    msg = messages.escalation_message(state, effect)
                    if msg is not None:
                        out.append(msg)
                case engine.GateDecided():
                    out.append(messages.gate_message(effect))
                case engine.WriteReport(week=week):
                    name = next((n for n in documents if n.startswith(f"week_{week:02d}")), None)
                    if name is not None:
                        out.append(messages.report_message(state, week, name, documents[name]))
                case engine.PlanCompleted():
                    text = documents.get("completion_report.md")
                    if text is not None:
                        out.append(messages.completion_message(text))
        return out

    def rows_for(self, msgs: Sequence[Message]) -> list[Queued]:
        """Route each message to its sinks, held until quiet hours end where they apply."""
        now = self.clock()
        rows: list[Queued] = []
        for msg in msgs:
            release = policy.release_at(self.notes.quiet_hours, msg.severity, now)
            rows.extend(
                queued(msg, sink, now, release)
                for sink in policy.route(self.notes, msg.kind, msg.severity)
            )
        return rows

    def wake(self) -> None:
        self._wake.set()

    # --- pixelsctl ----------------------------------------------------------------------------

    def test(self, sink: str) -> dict[str, Any]:
        """Enqueue a test message to ``sink`` (not routed, not held by quiet hours)."""
        if sink not in self.notes.sinks:
            known = ", ".join(sorted(self.notes.sinks)) or "none"
            raise UnknownSink(f"no sink named {sink!r}; configured sinks: {known}")
        now = self.clock()
        msg = messages.test_message(sink, now)
        (row_id,) = self.outbox.add([queued(msg, sink, now, now)])
        self.wake()
        return {"id": row_id, "sink": sink, "key": msg.key}

    def retry(self, row_id: int) -> dict[str, Any] | None:
        """`pixelsctl notify retry ID`: send a failed (or waiting) notification again now."""
        row = self.outbox.retry(row_id, self.clock())
        if row is not None and row.state == "pending":
            self.wake()
        return None if row is None else row.view()

    def listing(self, failed: bool) -> list[dict[str, Any]]:
        return [row.view() for row in self.outbox.rows(failed=failed)]

    # --- delivery -----------------------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Deliver until cancelled."""
        async with httpx.AsyncClient() as client:
            delivers = {
                name: sinks.make(name, sink, self.secrets[name], client)
                for name, sink in self.notes.sinks.items()
            }
            task_status.started()
            while True:
                self._wake = anyio.Event()
                try:
                    wait = await self._round(delivers)
                except StoreError as exc:
                    # The outbox cannot be read or marked (disk full, I/O error): the rows stay
                    # as they are, and the daemon serves on; the next round tries again.
                    log.error("notification_outbox_failed", error=str(exc))  # noqa: TRY400 - one line
                    wait = IDLE_POLL_S
                if wait > 0:
                    with anyio.move_on_after(wait):
                        await self._wake.wait()

    async def _round(self, delivers: dict[str, sinks.Deliver]) -> float:
        """Send what is due; how long to wait before the next round (0: go on at once)."""
        due = await anyio.to_thread.run_sync(self.outbox.due, self.clock())
        if due:
            await self._deliver_round(delivers, due)
            return 0.0
        nxt = await anyio.to_thread.run_sync(self.outbox.next_due)
        return IDLE_POLL_S if nxt is None else min(IDLE_POLL_S, nxt - self.clock())

    async def _deliver_round(self, delivers: dict[str, sinks.Deliver], due: list[Row]) -> None:
        by_sink: dict[str, list[Row]] = {}
        for row in due:
            by_sink.setdefault(row.sink, []).append(row)
        async with anyio.create_task_group() as tg:
            for name, rows in by_sink.items():
                tg.start_soon(self._deliver_sink, delivers.get(name), name, rows)

    async def _deliver_sink(
        self, deliver: sinks.Deliver | None, name: str, rows: list[Row]
    ) -> None:
        """One sink's due rows, in order; a sink that asks to wait is not sent more this round."""
        for row in rows:
            if deliver is None:  # the sink left the config since the row was queued
                await self._finish(
                    row, policy.Outcome("failed", f"sink {name!r} is no longer configured")
                )
                continue
            # Counted (durably) before the request leaves: if the daemon dies before the answer
            # is recorded, the next attempt knows the receiver may have it already.
            await anyio.to_thread.run_sync(self.outbox.begin_attempt, row.id)
            try:
                outcome = await deliver.send(row, uncertain=row.attempts > 0)
            except Exception as exc:
                # A receiver's odd answer (not JSON, a wrong shape) must not stop the daemon:
                # it is an attempt that failed, retried like any other.
                log.exception("notification_send_error", id=row.id, sink=row.sink)
                outcome = policy.Outcome("retry", f"{type(exc).__name__}: {exc}"[:300])
            await self._finish(row, outcome)
            if outcome.verdict == "retry":
                break  # the rest wait for the next round: keeps this sink's order

    async def _finish(self, row: Row, outcome: policy.Outcome) -> None:
        now = self.clock()
        outbox = self.outbox
        if outcome.verdict == "sent":
            await anyio.to_thread.run_sync(outbox.mark_sent, row.id, now)
            log.info("notification_sent", id=row.id, sink=row.sink, key=row.key)
            return
        nxt = policy.after_attempt(
            outcome,
            row.attempts + 1,
            created_at=row.since,
            now=now,
            notes=self.notes,
            rand=self.rand,
        )
        if nxt.state == "pending":
            assert nxt.next_attempt is not None
            retry_at = nxt.next_attempt
            await anyio.to_thread.run_sync(outbox.mark_retry, row.id, retry_at, outcome.error)
            log.warning(
                "notification_retry",
                id=row.id,
                sink=row.sink,
                key=row.key,
                error=outcome.error,
                in_s=round(retry_at - now, 3),
            )
            return
        await anyio.to_thread.run_sync(outbox.mark_failed, row.id, outcome.error)
        log.error("notification_failed", id=row.id, sink=row.sink, key=row.key, error=outcome.error)
        if self.alert is not None and row.kind != "test":
            await self.alert(
                engine.NotificationFailed(sink=row.sink, key=row.key, error=outcome.error)
            )
