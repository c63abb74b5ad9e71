"""Generate the worked examples of docs/protocol.md from the real codec.

    python docs/tools/protocol_examples.py           # print the generated section (markdown)
    python docs/tools/protocol_examples.py --write   # replace that section in docs/protocol.md

The section sits between ``<!-- examples:begin -->`` and ``<!-- examples:end -->``.
tests/test_protocol_doc.py fails when the doc's section differs from this script's output, so the
hex in the doc is always what ``protocol.codec.encode`` produces today. Ids and timestamps are
fixed so that the output is deterministic.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path
from typing import NamedTuple

import msgspec

from protocol import codec
from protocol.messages import (
    Ack,
    Command,
    DependencyFound,
    Error,
    Escalation,
    Heartbeat,
    Message,
    Poll,
    PollReply,
    Register,
    Reply,
    Request,
    Status,
    Welcome,
    WorkstreamReport,
    tag_of,
)
from protocol.views import EscalationView

DOC = Path(__file__).resolve().parents[1] / "protocol.md"
BEGIN = "<!-- examples:begin -->"
END = "<!-- examples:end -->"

#: 2026-01-01T00:00:00Z. Offsets below are exact binary fractions, so the JSON shows them exactly.
T0 = 1767225600.0
HEX_BYTES_PER_LINE = 16


class Example(NamedTuple):
    direction: str
    note: str
    message: Message


EXAMPLES: tuple[Example, ...] = (
    Example(
        "orchestrator → daemon",
        "First frame on every connection and after every silence; answered by `welcome`.",
        Register(
            id="foundation-7f3a-1",
            ts=T0,
            orchestrator="foundation",
            pid=41235,
            host="spark-01",
            client="pixels-orchestrator 0.1.0",
        ),
    ),
    Example(
        "orchestrator → daemon",
        "Liveness, not durable (`seq` 0); answered by `ack`.",
        Heartbeat(id="foundation-7f3a-2", ts=T0 + 2.0, orchestrator="foundation"),
    ),
    Example(
        "orchestrator → daemon",
        "Durable (`seq` 42): the orchestrator's whole picture. Workstreams not listed keep their "
        "state; `blockers` and `decisions_needed` replace the previous lists.",
        Status(
            id="foundation-7f3a-3",
            seq=42,
            ts=T0 + 3.5,
            orchestrator="foundation",
            status="active",
            workstreams={
                "WS-01": WorkstreamReport(
                    status="complete", progress=1.0, completion_time=T0 - 86400.0
                ),
                "WS-02": WorkstreamReport(status="in_progress", progress=0.375, eta=T0 + 172800.0),
                "WS-03": WorkstreamReport(
                    status="blocked", progress=0.125, blocker="benchmark host unreachable"
                ),
            },
            blockers=["benchmark host unreachable"],
            decisions_needed=["record baselines at FP8 or BF16?"],
            performance_metrics={"baseline_tflops": 812.5},
        ),
    ),
    Example(
        "orchestrator → daemon",
        "Durable, like `status`; `re` names the `poll` it answers.",
        PollReply(
            id="foundation-7f3a-6",
            seq=44,
            ts=T0 + 14400.25,
            re="pixelsd-1a2b-9",
            orchestrator="foundation",
            status="active",
            workstreams={"WS-02": WorkstreamReport(status="in_progress", progress=0.5)},
        ),
    ),
    Example(
        "orchestrator → daemon",
        "Durable (`seq` 43). May name any workstream of the plan, not only the sender's.",
        Escalation(
            id="foundation-7f3a-4",
            seq=43,
            ts=T0 + 5.0,
            orchestrator="foundation",
            type="blocker",
            severity="high",
            issue="the benchmark host has been unreachable for 24 h",
            affected_workstreams=["WS-03"],
            attempted_resolutions=["rebooted the host", "re-ran the network check"],
            help_needed="someone with access to the lab switch",
        ),
    ),
    Example(
        "orchestrator → daemon",
        "Durable (`seq` 45). Adds `WS-03 depends on WS-02` to the plan; a cycle is refused.",
        DependencyFound(
            id="foundation-7f3a-7",
            seq=45,
            ts=T0 + 20.0,
            orchestrator="foundation",
            workstream="WS-03",
            depends_on="WS-02",
            reason="the benchmark suite needs the pinned environment of WS-02",
        ),
    ),
    Example(
        "daemon → orchestrator",
        "Answer to `register` (`re` = its id): every durable message with `seq` <= 41 is "
        "applied, so the client resends from 42.",
        Welcome(
            id="pixelsd-1a2b-1",
            ts=T0 + 0.125,
            re="foundation-7f3a-1",
            orchestrator="foundation",
            acked_seq=41,
            heartbeat_s=2.0,
            daemon="0.1.0",
            plan="dgx-pixels",
        ),
    ),
    Example(
        "daemon → orchestrator",
        "Cumulative: every durable message with `seq` <= 43 is committed. `re` is the id of the "
        "last message the batch covered.",
        Ack(id="pixelsd-1a2b-4", ts=T0 + 5.0625, re="foundation-7f3a-4", acked_seq=43),
    ),
    Example(
        "daemon → orchestrator, daemon → pixelsctl",
        "A refusal. `rejected_seq` 45 > 0: that durable message was consumed; do not resend it.",
        Error(
            id="pixelsd-1a2b-12",
            ts=T0 + 14460.0,
            re="foundation-7f3a-7",
            code="not_owner",
            message="workstream WS-05 belongs to model, not to foundation",
            rejected_seq=45,
        ),
    ),
    Example(
        "daemon → orchestrator",
        "Asks for a `poll_reply` within `deadline_s` seconds.",
        Poll(id="pixelsd-1a2b-9", ts=T0 + 14400.0, deadline_s=60.0),
    ),
    Example(
        "daemon → orchestrator",
        "Tells the orchestrator to act on one workstream (`workstream` null: on all of them).",
        Command(
            id="pixelsd-1a2b-15",
            ts=T0 + 15000.0,
            action="halt",
            workstream="WS-03",
            reason="Gate 1 review: hold benchmarks until the host is replaced",
        ),
    ),
    Example(
        "pixelsctl → daemon",
        "A control command with its arguments.",
        Request(id="ctl-5150-9f1c2d", ts=T0 + 20000.0, command="escalations", args={"all": True}),
    ),
    Example(
        "daemon → pixelsctl",
        "Success; `result` has the command's fixed shape (here a list of EscalationView).",
        Reply(
            id="pixelsd-1a2b-20",
            ts=T0 + 20000.0078125,
            re="ctl-5150-9f1c2d",
            result=msgspec.to_builtins(
                [
                    EscalationView(
                        id="E-1",
                        orchestrator="foundation",
                        type="blocker",
                        severity="high",
                        issue="the benchmark host has been unreachable for 24 h",
                        affected_workstreams=["WS-03"],
                        help_needed="someone with access to the lab switch",
                        raised_at=T0 + 5.0,
                        state="open",
                    )
                ]
            ),
        ),
    ),
)


def hex_lines(frame: bytes) -> str:
    """Bytes as lowercase hex pairs, 16 to a line."""
    return "\n".join(
        frame[i : i + HEX_BYTES_PER_LINE].hex(" ") for i in range(0, len(frame), HEX_BYTES_PER_LINE)
    )


# --- a byte-by-byte reading of one frame ----------------------------------------------------------

_FIXED = {0xC0: "nil", 0xC2: "false", 0xC3: "true"}
_UINT = {0xCC: ("uint 8", 1), 0xCD: ("uint 16", 2), 0xCE: ("uint 32", 4), 0xCF: ("uint 64", 8)}


def _token(frame: bytes, pos: int) -> tuple[int, str, str, int]:
    """One msgpack token at ``pos``: (end, format, value, map pairs or -1).

    Covers what a flat frame of short strings and numbers uses; anything else raises, so a change
    to the annotated example that needs more is noticed at once.
    """
    b = frame[pos]
    if b <= 0x7F:
        return pos + 1, "positive fixint", str(b), -1
    if 0x80 <= b <= 0x8F:
        return pos + 1, f"fixmap, {b & 0x0F} pairs", "", b & 0x0F
    if 0xA0 <= b <= 0xBF:
        end = pos + 1 + (b & 0x1F)
        return end, f"fixstr, {_bytes(b & 0x1F)}", repr_str(frame[pos + 1 : end]), -1
    if b == 0xD9:
        end = pos + 2 + frame[pos + 1]
        return end, f"str 8, {_bytes(frame[pos + 1])}", repr_str(frame[pos + 2 : end]), -1
    if b == 0xCB:
        (value,) = struct.unpack(">d", frame[pos + 1 : pos + 9])
        return pos + 9, "float 64", repr(value), -1
    if b in _FIXED:
        return pos + 1, _FIXED[b], "", -1
    if b in _UINT:
        name, width = _UINT[b]
        end = pos + 1 + width
        return end, name, str(int.from_bytes(frame[pos + 1 : end], "big")), -1
    raise ValueError(f"format 0x{b:02x} at byte {pos} is not covered by this walker")


def repr_str(raw: bytes) -> str:
    """A UTF-8 string's bytes as a JSON string literal."""
    return msgspec.json.encode(raw.decode()).decode()


def _bytes(n: int) -> str:
    return "1 byte" if n == 1 else f"{n} bytes"


def annotate(frame: bytes) -> str:
    """A markdown table reading a flat frame (one map of scalars) token by token."""
    rows = ["| bytes | msgpack format | meaning |", "|---|---|---|"]
    end, fmt, _, pairs = _token(frame, 0)
    rows.append(f"| `{frame[:end].hex(' ')}` | {fmt} | the frame: one map |")
    pos = end
    for _ in range(pairs):
        key_end, key_fmt, key, _ = _token(frame, pos)
        rows.append(f"| `{frame[pos:key_end].hex(' ')}` | {key_fmt} | key {key} |")
        value_end, value_fmt, value, _ = _token(frame, key_end)
        shown = f"value {value}" if value else "value"
        rows.append(f"| `{frame[key_end:value_end].hex(' ')}` | {value_fmt} | {shown} |")
        pos = value_end
    if pos != len(frame):
        raise ValueError("annotate() reads flat frames only")
    return "\n".join(rows)


# --- the section ---------------------------------------------------------------------------------


def render() -> str:
    """The markdown that goes between the markers (starting and ending with a newline)."""
    heartbeat = next(e.message for e in EXAMPLES if isinstance(e.message, Heartbeat))
    parts = [
        "",
        "<!-- generated by docs/tools/protocol_examples.py; edit the script and run it with "
        "--write, never this section -->",
        "",
        "### Reading a frame byte by byte",
        "",
        f"The `heartbeat` below, {len(codec.encode(heartbeat))} bytes, token by token:",
        "",
        annotate(codec.encode(heartbeat)),
    ]
    for example in EXAMPLES:
        frame = codec.encode(example.message)
        as_json = msgspec.json.format(msgspec.json.encode(example.message), indent=2).decode()
        parts += [
            "",
            f"### `{tag_of(type(example.message))}` ({example.direction})",
            "",
            example.note,
            "",
            "```json",
            as_json,
            "```",
            "",
            f"msgpack, {len(frame)} bytes:",
            "",
            "```hex",
            hex_lines(frame),
            "```",
        ]
    parts.append("")
    return "\n".join(parts)


def section_of(doc: str) -> str:
    """The text between the markers of ``doc`` (ValueError if they are missing)."""
    start = doc.find(BEGIN)
    end = doc.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the doc has no {BEGIN} ... {END} section")
    return doc[start + len(BEGIN) : end]


def splice(doc: str, section: str) -> str:
    """``doc`` with the text between the markers replaced by ``section``."""
    old = section_of(doc)
    start = doc.find(BEGIN) + len(BEGIN)
    return doc[:start] + section + doc[start + len(old) :]


def main(argv: list[str]) -> int:
    if argv == ["--write"]:
        DOC.write_text(splice(DOC.read_text(), render()))
        print(f"wrote the examples section of {DOC}")
        return 0
    if argv:
        print("usage: protocol_examples.py [--write]", file=sys.stderr)
        return 2
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
