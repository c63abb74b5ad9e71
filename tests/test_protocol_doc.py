"""docs/protocol.md against the code: generated examples, field tables, value sets, error codes.

The examples section must be exactly what docs/tools/protocol_examples.py prints today; the tables
must list exactly the fields, defaults, values and codes of protocol/. A failure here means the doc
drifted: regenerate the examples (``python docs/tools/protocol_examples.py --write``) or edit the
table the failure names.
"""

from __future__ import annotations

import importlib.util
import itertools
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import get_args

import msgspec
import pytest

from protocol import codec, views
from protocol.messages import (
    ALL_MESSAGES,
    ERROR_CODES,
    MAX_FRAME_BYTES,
    SOCKET_MAX_MSGSIZE,
    CommandAction,
    EscalationType,
    Header,
    Message,
    OrchestratorStatus,
    Severity,
    WorkstreamReport,
    WorkstreamStatus,
    tag_of,
)
from tests.test_protocol import codec_for

ROOT = Path(__file__).resolve().parents[1]
DOC_PATH = ROOT / "docs" / "protocol.md"
SCRIPT = ROOT / "docs" / "tools" / "protocol_examples.py"
DOC = DOC_PATH.read_text()


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("protocol_examples", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


examples = _load_script()

BY_TAG = {tag_of(cls): cls for cls in ALL_MESSAGES}

EXAMPLE_RE = re.compile(r"```json\n(.*?)\n```\n\nmsgpack, \d+ bytes:\n\n```hex\n(.*?)\n```", re.S)


def section(number: int) -> str:
    """The text of the doc's ``## <number>.`` section, up to the next ``## `` heading."""
    match = re.search(rf"^## {number}\. .*?(?=^## |\Z)", DOC, re.M | re.S)
    assert match, f"docs/protocol.md has no section {number}"
    return match.group(0)


def subsection(text: str, heading: str) -> str:
    """The text under the heading line ``heading`` (any level), up to the next heading."""
    match = re.search(rf"^#+ {re.escape(heading)}\n(.*?)(?=^#|\Z)", text, re.M | re.S)
    assert match, f"no heading {heading!r} in the doc"
    return match.group(1)


def table(text: str) -> list[dict[str, str]]:
    """The first markdown table in ``text``, as one dict per row keyed by the header cells."""
    lines = text[text.index("\n|") + 1 :].splitlines()
    block = list(itertools.takewhile(lambda line: line.startswith("|"), lines))
    header, _, *rows = ([cell.strip() for cell in line.strip("|").split("|")] for line in block)
    return [dict(zip(header, row, strict=True)) for row in rows]


def names(rows: list[dict[str, str]], column: str) -> list[str]:
    """The first column's values with their backticks removed."""
    return [row[column].strip("`") for row in rows]


def own_fields(cls: type[msgspec.Struct]) -> list[msgspec.structs.FieldInfo]:
    """A message's fields without the envelope's."""
    envelope = {f.name for f in msgspec.structs.fields(Message)}
    return [f for f in msgspec.structs.fields(cls) if f.name not in envelope]


def documented_default(field: msgspec.structs.FieldInfo) -> str:
    """How the doc's default column writes a field's default (msgpack nil for None)."""
    if field.required:
        return "required"
    default = field.default_factory() if field.default is msgspec.NODEFAULT else field.default
    return "nil" if default is None else msgspec.json.encode(default).decode()


# --- the generated examples ----------------------------------------------------------------------


def test_examples_section_is_the_scripts_current_output() -> None:
    """The doc's examples section equals what protocol_examples.py prints now."""
    result = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, check=True, timeout=60
    )
    assert examples.section_of(DOC) == result.stdout, (
        "docs/protocol.md's examples are stale: run python docs/tools/protocol_examples.py --write"
    )


def test_examples_show_every_message_once_in_order() -> None:
    """The examples are one per message, in the order of ALL_MESSAGES."""
    shown = [msgspec.json.decode(js)["msg"] for js, _ in EXAMPLE_RE.findall(DOC)]
    assert shown == [tag_of(cls) for cls in ALL_MESSAGES]


@pytest.mark.parametrize(
    ("as_json", "as_hex"), EXAMPLE_RE.findall(DOC), ids=[tag_of(c) for c in ALL_MESSAGES]
)
def test_hex_block_decodes_to_its_json(as_json: str, as_hex: str) -> None:
    """Each example's hex decodes with protocol.codec to the message its JSON describes."""
    described = msgspec.json.decode(as_json)
    direction = codec_for(BY_TAG[described["msg"]])
    from_json = direction.decode(msgspec.msgpack.encode(described))
    assert direction.decode(bytes.fromhex(as_hex)) == from_json
    assert codec.encode(from_json) == bytes.fromhex(as_hex)


def test_splice_replaces_only_the_section() -> None:
    """--write's splice swaps the text between the markers and keeps the rest of the doc."""
    doc = f"before\n{examples.BEGIN}old{examples.END}\nafter\n"
    assert examples.splice(doc, "new") == f"before\n{examples.BEGIN}new{examples.END}\nafter\n"


def test_section_of_a_doc_without_markers_is_an_error() -> None:
    """A doc that lost its markers is reported, not silently appended to."""
    with pytest.raises(ValueError, match="examples:begin"):
        examples.section_of("no markers here")


# --- tables against the code ---------------------------------------------------------------------


def test_envelope_table_lists_the_envelope_fields() -> None:
    """Section 2's table has msg and every Message field, with the real defaults."""
    rows = table(section(2))
    expected = ["msg"] + [f.name for f in msgspec.structs.fields(Message)]
    assert names(rows, "field") == expected
    defaults = {f.name: documented_default(f) for f in msgspec.structs.fields(Message)}
    assert {r["field"].strip("`"): r["default"].strip("`") for r in rows[1:]} == defaults


def test_header_reads_only_envelope_fields() -> None:
    """The codec's Header (used to describe a refused frame) reads only envelope fields."""
    envelope = {"msg"} | {f.name for f in msgspec.structs.fields(Message)}
    assert {f.name for f in msgspec.structs.fields(Header)} <= envelope


# Section 3's heading for each struct with a field table.
TABLED: dict[str, type[msgspec.Struct]] = {f"`{tag_of(cls)}`": cls for cls in ALL_MESSAGES}
TABLED["WorkstreamReport"] = WorkstreamReport


@pytest.mark.parametrize(("heading", "cls"), TABLED.items(), ids=TABLED.keys())
def test_field_table_lists_every_field_with_its_default(
    heading: str, cls: type[msgspec.Struct]
) -> None:
    """Each message's table in section 3 names exactly its fields, in order, with real defaults."""
    rows = table(subsection(section(3), heading))
    fields = own_fields(cls)
    assert names(rows, "field") == [f.name for f in fields]
    assert [r["default"].strip("`") for r in rows] == [documented_default(f) for f in fields]


VALUE_SETS = {
    "WorkstreamStatus": WorkstreamStatus,
    "OrchestratorStatus": OrchestratorStatus,
    "Severity": Severity,
    "EscalationType": EscalationType,
    "CommandAction": CommandAction,
}


def test_value_sets_match_the_literals() -> None:
    """Every closed value set in section 3 lists exactly the Literal's values, in order."""
    rows = {r["set"]: r["values"] for r in table(subsection(section(3), "Value sets"))}
    for name, literal in VALUE_SETS.items():
        assert re.findall(r"`([^`]+)`", rows[name]) == list(get_args(literal)), name


def test_error_table_lists_every_code_in_order() -> None:
    """Section 4's table has one row per ErrorCode, in the code's order."""
    assert names(table(section(4)), "code") == list(ERROR_CODES)


VIEWS = [
    views.StatusView,
    views.OrchestratorView,
    views.ProcessView,
    views.WorkstreamView,
    views.BlockerView,
    views.EscalationView,
    views.GateView,
    views.CheckResultView,
    views.DecisionView,
    views.HoldView,
    views.PlanChangeView,
]


@pytest.mark.parametrize("cls", VIEWS, ids=lambda c: c.__name__)
def test_view_table_lists_every_field(cls: type[msgspec.Struct]) -> None:
    """Each result shape in section 6 names exactly the view's fields, in order."""
    rows = table(subsection(section(6), cls.__name__))
    assert names(rows, "field") == [f.name for f in msgspec.structs.fields(cls)]


def test_every_view_has_a_table() -> None:
    """Section 6 documents every result view of protocol/views.py (a new view needs a table)."""
    defined = {
        name
        for name, obj in vars(views).items()
        if isinstance(obj, type)
        and issubclass(obj, msgspec.Struct)
        and obj.__module__ == views.__name__
    }
    assert defined == {cls.__name__ for cls in VIEWS}


def test_commands_table_lists_every_pixelsctl_command() -> None:
    """Section 6's commands table names exactly the requests pixelsctl sends, in its order."""
    from pixels_daemon.ctl import COMMANDS, LOCAL_COMMANDS

    listed = names(table(subsection(section(6), "Commands")), "command")
    sent = {c.request for c in COMMANDS.values()}
    sent |= {r for c in LOCAL_COMMANDS.values() for r in c.requests}
    assert sorted(listed) == sorted(sent)


def test_limits_in_the_doc_match_the_constants() -> None:
    """The frame limits in section 1 are the values of the code's constants."""
    rows = {r["constant"].strip("`"): r["value"] for r in table(subsection(section(1), "Limits"))}
    assert rows["MAX_FRAME_BYTES"].startswith(f"{MAX_FRAME_BYTES:,} bytes")
    assert rows["SOCKET_MAX_MSGSIZE"].startswith(f"{SOCKET_MAX_MSGSIZE:,} bytes")
