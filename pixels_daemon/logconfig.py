"""structlog set-up for the daemon: readable console lines on a terminal, JSON lines when asked,
native journald entries under systemd.

``auto`` (the default) picks ``journal`` when stderr is the journal (systemd sets $JOURNAL_STREAM),
``console`` otherwise. Logs go to stderr (or journald); stdout stays free for commands that print
results. Whatever the format, values of keys that look like secrets are replaced before rendering.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Literal

import structlog

LogFormat = Literal["auto", "console", "json", "journal"]
LOG_FORMATS: tuple[str, ...] = ("auto", "console", "json", "journal")

#: Key names whose values are never logged (tokens, keys, passwords). Matched anywhere in the key,
#: so ``curve_secret_key`` and ``auth_token`` are caught; ``snapshot_key`` is not (no match below).
_SECRET_KEY = re.compile(
    r"token|secret|passw|credential|private_key|api_key|apikey|authorization|cookie", re.I
)
REDACTED = "[redacted]"


def redact_secrets(
    logger: object, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: blank the value of every key that names a secret."""
    for key in event_dict:
        if _SECRET_KEY.search(key):
            event_dict[key] = REDACTED
    return event_dict


def resolve_format(fmt: LogFormat) -> Literal["console", "json", "journal"]:
    """``auto`` -> ``journal`` when stderr is the journal stream, else ``console``."""
    if fmt != "auto":
        return fmt
    from pixels_daemon.journal import stderr_is_journal

    return "journal" if stderr_is_journal() else "console"


def configure_logging(fmt: LogFormat = "auto", level: int = logging.INFO) -> None:
    chosen = resolve_format(fmt)
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        redact_secrets,
    ]
    logger_factory: Any
    if chosen == "journal":
        from pixels_daemon.journal import JournalRenderer, JournalSinkFactory

        # No TimeStamper: journald stamps each entry itself (and more precisely).
        processors += [structlog.processors.format_exc_info, JournalRenderer()]
        logger_factory = JournalSinkFactory(fallback=sys.stderr)
    else:
        processors.append(structlog.processors.TimeStamper(fmt="iso", utc=True))
        if chosen == "json":
            processors += [
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ]
        else:
            processors.append(structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
        logger_factory = structlog.PrintLoggerFactory(file=sys.stderr)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=logger_factory,
        cache_logger_on_first_use=True,
    )
