"""Shared fixtures. Temp dirs are short: ipc:// paths are limited to 107 bytes."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A fresh, short state dir under /tmp (pytest's tmp_path is too long for ipc sockets)."""
    path = Path(tempfile.mkdtemp(prefix="px-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
