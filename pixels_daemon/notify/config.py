"""The daemon config file (``pixelsd run --config FILE``): its ``[notifications]`` table.

TOML read with tomllib, shaped by msgspec Structs that refuse unknown keys, so a typo is an error
naming the file, the table and the key rather than a sink silently left unconfigured. Secrets are
never inline: a sink names a file (``token_file``) or an environment variable (``token_env``) and
the secret is read at start-up (``resolve_secrets``), so it is neither in the file nor in a log.
"""

from __future__ import annotations

import datetime
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

Kind = Literal["escalation", "gate", "weekly_report", "completion"]
Severity = Literal["low", "medium", "high", "critical"]
KINDS: tuple[Kind, ...] = ("escalation", "gate", "weekly_report", "completion")
SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high", "critical")

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class ConfigError(Exception):
    """The config file is unreadable or wrong; the message names file, table and key."""


class _Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    pass


class WebhookSink(_Strict, frozen=True, tag="webhook", tag_field="type"):
    """A JSON POST in Slack's incoming-webhook shape (text + blocks): Slack, Mattermost, ...

    Slack's URL is itself the secret: give it by ``url_file``/``url_env`` there; ``url`` inline is
    for receivers whose URL is not (a bearer token then comes from ``token_file``/``token_env``).
    """

    url: str | None = None
    url_file: str | None = None
    url_env: str | None = None
    token_file: str | None = None
    token_env: str | None = None
    #: A receiver that has not answered in 10 s is treated as down (retried later): a hung
    #: connection must not hold the delivery loop.
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0


class GitHubSink(_Strict, frozen=True, tag="github", tag_field="type"):
    """Comments on ``repo``'s issue ``issue`` through the REST API (weekly reports, gate results,
    escalations); with ``critical_issues``, a new issue per critical escalation instead."""

    repo: Annotated[str, msgspec.Meta(pattern=r"^[^/\s]+/[^/\s]+$")]
    issue: Annotated[int, msgspec.Meta(ge=1)]
    token_file: str | None = None
    token_env: str | None = None
    #: GitHub Enterprise: https://HOST/api/v3
    api_url: str = "https://api.github.com"
    critical_issues: bool = False
    #: As for webhooks: GitHub answers in well under a second; 10 s is an outage, not a wait.
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0


class EmailSink(_Strict, frozen=True, tag="email", tag_field="type"):
    """Plain-text mail over SMTP, the Markdown report attached."""

    host: str
    to: Annotated[list[str], msgspec.Meta(min_length=1)]
    from_addr: str
    #: 587 is the submission port, where STARTTLS is the norm.
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 587
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password_file: str | None = None
    password_env: str | None = None
    #: SMTP servers may greylist or run slow filters before they accept; 30 s leaves room.
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    #: A CA bundle (PEM) to verify the server with instead of the system's: a site's own CA.
    ca_file: str | None = None


Sink = WebhookSink | GitHubSink | EmailSink


class Route(_Strict, frozen=True):
    """Events of these ``kinds`` at ``min_severity`` or above go to ``sinks``."""

    sinks: Annotated[list[str], msgspec.Meta(min_length=1)]
    kinds: list[Kind] = msgspec.field(default_factory=lambda: list(KINDS))
    min_severity: Severity = "low"


class QuietHours(_Strict, frozen=True):
    """A local-time window (``start`` to ``end``, "HH:MM", may span midnight) in ``timezone``:
    what falls in it waits until it ends, except severity critical."""

    start: str
    end: str
    timezone: str = "UTC"


class Notifications(_Strict, frozen=True):
    sinks: dict[Annotated[str, msgspec.Meta(pattern=_NAME)], Sink] = msgspec.field(
        default_factory=dict
    )
    routes: list[Route] = msgspec.field(default_factory=list)
    quiet_hours: QuietHours | None = None
    #: First retry after 30 s, doubling to at most an hour: quick to recover from a blip, gentle
    #: on a service that is down for longer.
    backoff_initial_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    backoff_max_s: Annotated[float, msgspec.Meta(gt=0)] = 3600.0
    #: A notification not delivered within a day is stale news: give up and escalate instead.
    give_up_after_s: Annotated[float, msgspec.Meta(gt=0)] = 86400.0


class FileConfig(_Strict, frozen=True):
    notifications: Notifications = msgspec.field(default_factory=Notifications)


def _where(exc: msgspec.ValidationError, table: str = "") -> str:
    """msgspec's "Expected `int`, got `str` - at `$.notifications.sinks...`" as
    "[TABLE]: key `KEY`: Expected `int`, got `str`" (``table``: where ``$`` is)."""
    text = str(exc)
    full = table
    match = re.search(r" - at `\$(.*)`$", text)
    if match:
        text = text[: match.start()]
        inner = match.group(1).lstrip(".")
        full = f"{table}.{inner}" if table and inner else (table or inner)
    text = text.replace("Object contains unknown field", "unknown key")
    text = text.replace("Object missing required field", "missing key")
    if not full:
        return text
    if text.startswith(("unknown key", "missing key")) or "." not in full:
        return f"[{full}]: {text}"
    tbl, _, key = full.rpartition(".")
    return f"[{tbl}]: key `{key}`: {text}"


def load_config(path: str | Path) -> FileConfig:
    """Read and check the config file; ConfigError names what is wrong and where."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    # Sinks are converted one by one: msgspec names a table's key only as "[...]", and an
    # error must say which sink it is about.
    notes_raw = raw.get("notifications")
    sinks_raw = notes_raw.pop("sinks", {}) if isinstance(notes_raw, dict) else {}
    try:
        config = msgspec.convert(raw, FileConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {_where(exc)}") from None
    if not isinstance(sinks_raw, dict):
        raise ConfigError(f"{path}: [notifications.sinks]: expected tables, one per sink")
    sinks: dict[str, Sink] = {}
    for name, value in sinks_raw.items():
        table = f"notifications.sinks.{name}"
        if not re.match(_NAME, name):
            raise ConfigError(
                f"{path}: [{table}]: a sink's name is letters, digits, '_', '.' and '-'"
            )
        try:
            sinks[name] = msgspec.convert(value, Sink)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{path}: {_where(exc, table)}") from None
    notes = msgspec.structs.replace(config.notifications, sinks=sinks)
    try:
        check(notes)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return msgspec.structs.replace(config, notifications=notes)


def check(notes: Notifications) -> None:
    """What the types cannot say: one secret source each, routes name known sinks, times parse."""
    for name, sink in notes.sinks.items():
        table = f"[notifications.sinks.{name}]"
        if isinstance(sink, WebhookSink):
            given = [k for k in ("url", "url_file", "url_env") if getattr(sink, k)]
            if len(given) != 1:
                raise ConfigError(f"{table}: give exactly one of url, url_file, url_env")
            _one_or_none(table, "token", sink.token_file, sink.token_env)
        elif isinstance(sink, GitHubSink):
            if (sink.token_file is None) == (sink.token_env is None):
                raise ConfigError(f"{table}: give exactly one of token_file, token_env")
        else:
            _one_or_none(table, "password", sink.password_file, sink.password_env)
            has_password = sink.password_file or sink.password_env
            if has_password and not sink.username:
                raise ConfigError(f"{table}: a password needs a username")
            if sink.ca_file is not None:
                _check_ca_file(table, sink.ca_file)
    for i, route in enumerate(notes.routes):
        for sink_name in route.sinks:
            if sink_name not in notes.sinks:
                known = ", ".join(sorted(notes.sinks)) or "none"
                raise ConfigError(
                    f"[notifications.routes[{i}]]: sink {sink_name!r} is not configured "
                    f"(configured: {known})"
                )
    if notes.backoff_max_s < notes.backoff_initial_s:
        raise ConfigError("[notifications]: backoff_max_s is shorter than backoff_initial_s")
    if notes.quiet_hours is not None:
        quiet_window(notes.quiet_hours)


def _check_ca_file(table: str, path: str) -> None:
    """A CA bundle that cannot be loaded fails the start, not the first mail hours later."""
    import ssl

    try:
        ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"{table}: ca_file {path!r} cannot be loaded as PEM certificates ({exc}); give the "
            "CA bundle that signed the SMTP server's certificate"
        ) from None


def _one_or_none(table: str, what: str, file: str | None, env: str | None) -> None:
    if file is not None and env is not None:
        raise ConfigError(f"{table}: give {what}_file or {what}_env, not both")


def quiet_window(quiet: QuietHours) -> tuple[datetime.time, datetime.time, ZoneInfo]:
    """The window's start, end and zone; ConfigError when one does not parse."""
    table = "[notifications.quiet_hours]"
    times = []
    for key in ("start", "end"):
        text = getattr(quiet, key)
        try:
            times.append(datetime.time.fromisoformat(text))
        except ValueError:
            raise ConfigError(f'{table}: {key} {text!r} is not a time of day ("22:00")') from None
    try:
        zone = ZoneInfo(quiet.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{table}: timezone {quiet.timezone!r} is not a known time zone (e.g. Europe/Berlin)"
        ) from None
    return times[0], times[1], zone


def read_secret(table: str, what: str, file: str | None, env: str | None) -> str | None:
    """The secret from its file (stripped) or environment variable; None when neither is set.
    ConfigError when the named one is missing or empty (the message never holds the secret)."""
    if file is not None:
        try:
            value = Path(file).read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"{table}: cannot read {what}_file {file}: {exc.strerror or exc}"
            ) from None
        if not value:
            raise ConfigError(f"{table}: {what}_file {file} is empty")
        return value
    if env is not None:
        value = os.environ.get(env, "").strip()
        if not value:
            raise ConfigError(f"{table}: environment variable {env} ({what}_env) is not set")
        return value
    return None


def sink_secrets(name: str, sink: Sink) -> dict[str, str]:
    """Every secret ``sink`` needs, read now (start-up): ``url``, ``token``, ``password``."""
    table = f"[notifications.sinks.{name}]"
    out: dict[str, str] = {}
    if isinstance(sink, WebhookSink):
        url = sink.url or read_secret(table, "url", sink.url_file, sink.url_env)
        assert url is not None  # check() made sure one is given
        out["url"] = url
        token = read_secret(table, "token", sink.token_file, sink.token_env)
    elif isinstance(sink, GitHubSink):
        token = read_secret(table, "token", sink.token_file, sink.token_env)
    else:
        token = read_secret(table, "password", sink.password_file, sink.password_env)
        if token is not None:
            out["password"] = token
        return out
    if token is not None:
        out["token"] = token
    return out
