"""The client's durable outbox: seq assignment, welcome cases, acks, durability (real SQLite)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrators.outbox import (
    InvalidMessage,
    Outbox,
    OutboxError,
    WelcomeCase,
)
from protocol import codec
from protocol.messages import Escalation, Heartbeat, Status, WorkstreamReport

NAME = "foundation"
NOW = 1_800_000_000.0


def status(progress: float = 0.5) -> Status:
    return Status(
        orchestrator=NAME,
        workstreams={"WS-01": WorkstreamReport(status="in_progress", progress=progress)},
    )


@pytest.fixture
def path(state_dir: Path) -> Path:
    return state_dir / "outbox-foundation.db"


@pytest.fixture
def box(path: Path) -> Iterator[Outbox]:
    outbox = Outbox.open(path, NAME)
    try:
        yield outbox
    finally:
        outbox.close()


def seqs(box: Outbox) -> list[int | None]:
    return [row.seq for row in box.list_pending()]


def based(box: Outbox, acked: int = 0) -> Outbox:
    box.on_welcome(acked)
    return box


def test_enqueue_before_first_welcome_has_no_seq(box: Outbox) -> None:
    """Before the daemon's acked seq is known, accepted messages wait without a seq."""
    assert box.enqueue(status(), NOW) is None
    assert box.enqueue(status(), NOW) is None
    assert seqs(box) == [None, None]
    assert box.counters().pending == 2
    assert not box.based


def test_first_welcome_assigns_seqs_in_enqueue_order(box: Outbox) -> None:
    """The first welcome(A) numbers waiting messages A+1, A+2, ... in the order they came."""
    box.enqueue(status(0.1), NOW)
    box.enqueue(status(0.2), NOW + 1)
    outcome = box.on_welcome(7)
    assert outcome.case is WelcomeCase.FIRST
    assert outcome.renumbered == 2
    frames = box.frames(after_seq=0, limit=10)
    decoded = [codec.to_daemon.decode(f) for _, f in frames]
    assert [s for s, _ in frames] == [8, 9]
    assert [(m.seq, m.id) for m in decoded] == [(8, "foundation-8"), (9, "foundation-9")]
    assert [m.workstreams["WS-01"].progress for m in decoded] == [0.1, 0.2]  # type: ignore[union-attr]
    assert (outcome.counters.acked_seq, outcome.counters.last_seq) == (7, 9)


def test_enqueue_after_base_assigns_next_seq(box: Outbox) -> None:
    """Once the base is known, enqueue hands out the next seq at once, stamped into the frame."""
    based(box, 4)
    assert box.enqueue(status(), NOW) == 5
    assert box.enqueue_many([status(), status()], NOW) == [6, 7]
    message = codec.to_daemon.decode(box.frames(after_seq=6, limit=1)[0][1])
    assert (message.seq, message.id, message.ts) == (7, "foundation-7", NOW)


def test_resume_welcome_drops_applied_rows(box: Outbox) -> None:
    """welcome(A) within what was assigned drops rows with seq <= A and keeps the rest."""
    based(box)
    box.enqueue_many([status() for _ in range(5)], NOW)
    outcome = box.on_welcome(3)
    assert (outcome.case, outcome.dropped, outcome.renumbered) == (WelcomeCase.RESUME, 3, 0)
    assert seqs(box) == [4, 5]
    assert box.counters().acked_seq == 3


def test_reset_welcome_renumbers_from_the_daemons_seq(box: Outbox) -> None:
    """A welcome below the acked seq (the daemon lost its state) renumbers pending from A+1."""
    based(box, 10)
    box.enqueue_many([status() for _ in range(3)], NOW)  # 11, 12, 13
    box.on_ack(11)
    outcome = box.on_welcome(0)
    assert outcome.case is WelcomeCase.RESET
    assert seqs(box) == [1, 2]
    assert [codec.to_daemon.decode(f).seq for _, f in box.frames(0, 10)] == [1, 2]
    assert (box.counters().acked_seq, box.counters().last_seq) == (0, 2)


def test_acks_after_a_reset_count_from_the_new_base(box: Outbox) -> None:
    """After a reset, the next welcome is a resume (the old, higher acked seq is forgotten)."""
    based(box, 10)
    box.enqueue_many([status(), status()], NOW)  # 11, 12
    box.on_welcome(0)  # reset: now 1, 2
    assert box.on_welcome(1).case is WelcomeCase.RESUME
    assert seqs(box) == [2]


def test_foreign_welcome_renumbers_above_the_daemons_seq(box: Outbox) -> None:
    """A welcome above every assigned seq (another writer) renumbers pending from A+1."""
    based(box)
    box.enqueue_many([status(), status()], NOW)  # 1, 2
    outcome = box.on_welcome(40)
    assert outcome.case is WelcomeCase.FOREIGN
    assert seqs(box) == [41, 42]


def test_foreign_welcome_with_nothing_pending_moves_the_next_seq(box: Outbox) -> None:
    """Even with nothing pending, the next message goes after the daemon's seq, not under it."""
    based(box)
    assert box.on_welcome(40).case is WelcomeCase.FOREIGN
    assert box.enqueue(status(), NOW) == 41


def test_ack_deletes_covered_rows(box: Outbox) -> None:
    """ack(N) deletes rows with seq <= N and raises the acked seq."""
    based(box)
    box.enqueue_many([status() for _ in range(4)], NOW)
    outcome = box.on_ack(2)
    assert (outcome.deleted, outcome.foreign) == (2, False)
    assert seqs(box) == [3, 4]
    assert box.counters().acked_seq == 2


def test_stale_ack_changes_nothing(box: Outbox) -> None:
    """An ack below the acked seq (reordered, or a heartbeat's) leaves the outbox as it is."""
    based(box)
    box.enqueue_many([status() for _ in range(4)], NOW)
    box.on_ack(3)
    outcome = box.on_ack(1)
    assert outcome.deleted == 0
    assert box.counters().acked_seq == 3


def test_ack_above_every_assigned_seq_is_foreign(box: Outbox) -> None:
    """An ack for seqs this outbox never assigned deletes nothing and is flagged."""
    based(box)
    box.enqueue(status(), NOW)
    outcome = box.on_ack(9)
    assert (outcome.deleted, outcome.foreign) == (0, True)
    assert seqs(box) == [1]


def test_outbox_survives_reopen(path: Path) -> None:
    """Rows, seqs, the acked seq and the known base are all on disk."""
    with Outbox.open(path, NAME) as box:
        box.on_welcome(5)
        box.enqueue_many([status() for _ in range(3)], NOW)
        box.on_ack(6)
    with Outbox.open(path, NAME) as box:
        assert seqs(box) == [7, 8]
        assert box.based
        counters = box.counters()
        assert (counters.acked_seq, counters.last_seq, counters.pending) == (6, 8, 2)
        assert box.integrity_check() == "ok"


def test_enqueue_many_is_one_commit(box: Outbox) -> None:
    """A batch costs one transaction (one fsync), whatever its size."""
    based(box)
    statements: list[str] = []
    box._conn.set_trace_callback(statements.append)
    box.enqueue_many([status() for _ in range(50)], NOW)
    box._conn.set_trace_callback(None)
    assert sum(s.strip().upper() == "COMMIT" for s in statements) == 1


def test_enqueue_many_is_all_or_nothing(box: Outbox) -> None:
    """One invalid message in a batch leaves nothing accepted."""
    based(box)
    with pytest.raises(InvalidMessage):
        box.enqueue_many([status(), status(progress=1.5), status()], NOW)
    assert box.counters().pending == 0
    assert box.enqueue(status(), NOW) == 1


def test_undecodable_message_is_refused(box: Outbox) -> None:
    """A message the daemon could not decode never enters the outbox (it would block the seqs)."""
    with pytest.raises(InvalidMessage, match="progress"):
        box.enqueue(status(progress=1.5), NOW)
    assert box.counters().pending == 0


def test_message_of_another_orchestrator_is_refused(box: Outbox) -> None:
    """The outbox carries one orchestrator's seqs: another's message is a caller bug."""
    with pytest.raises(InvalidMessage, match="'model'"):
        box.enqueue(Escalation(orchestrator="model", issue="x"), NOW)


def test_non_durable_message_is_refused(box: Outbox) -> None:
    """Heartbeats and registers are not outbox material."""
    with pytest.raises(InvalidMessage, match="Heartbeat"):
        box.enqueue(Heartbeat(orchestrator=NAME), NOW)  # type: ignore[arg-type]


def test_outbox_of_another_orchestrator_cannot_be_opened(path: Path) -> None:
    """Opening a file under the wrong name fails with a message naming its owner."""
    Outbox.open(path, NAME).close()
    with pytest.raises(OutboxError, match="'foundation', not 'model'"):
        Outbox.open(path, "model")


def test_two_handles_on_one_file_never_share_a_seq(path: Path) -> None:
    """Two writers on one outbox (runner and CLI) read the counters inside their transaction."""
    with Outbox.open(path, NAME) as a, Outbox.open(path, NAME) as b:
        a.on_welcome(0)
        got = [a.enqueue(status(), NOW), b.enqueue(status(), NOW), a.enqueue(status(), NOW)]
        assert got == [1, 2, 3]


def test_accepted_messages_survive_sigkill(path: Path) -> None:
    """Every seq a killed writer reported as accepted is in the outbox afterwards."""
    script = textwrap.dedent(
        f"""
        import sys
        from orchestrators.outbox import Outbox
        from protocol.messages import Status
        box = Outbox.open({str(path)!r}, {NAME!r})
        box.on_welcome(0)
        while True:
            seq = box.enqueue(Status(orchestrator={NAME!r}), 1.0)
            print(seq, flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    accepted = [int(proc.stdout.readline()) for _ in range(20)]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with Outbox.open(path, NAME) as box:
        stored = set(seqs(box))
        assert set(accepted) <= stored
        assert box.integrity_check() == "ok"


def test_refused_message_is_dropped_and_later_ones_move_down(box: Outbox) -> None:
    """A message the daemon's decoder refused goes; later seqs close the hole, frames renumbered."""
    based(box)
    box.enqueue_many([status(0.1), status(0.2), status(0.3), status(0.4)], NOW)  # 1..4
    counters = box.drop_refused(2)
    assert counters is not None
    assert (counters.last_seq, counters.pending) == (3, 3)
    decoded = [codec.to_daemon.decode(f) for _, f in box.frames(0, 10)]
    assert [(m.seq, m.id) for m in decoded] == [
        (1, "foundation-1"),
        (2, "foundation-2"),
        (3, "foundation-3"),
    ]
    assert [m.workstreams["WS-01"].progress for m in decoded] == [0.1, 0.3, 0.4]  # type: ignore[union-attr]
    assert box.enqueue(status(), NOW) == 4


def test_refusal_of_an_acked_seq_changes_nothing(box: Outbox) -> None:
    """A stale refusal naming a seq that is no longer pending is ignored."""
    based(box)
    box.enqueue_many([status(), status()], NOW)
    box.on_ack(1)
    assert box.drop_refused(1) is None
    assert seqs(box) == [2]
