"""The config file's [notifications]: what loads, and the errors that name file, table and key."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pixels_daemon.notify.config import (
    ConfigError,
    EmailSink,
    GitHubSink,
    WebhookSink,
    load_config,
    sink_secrets,
)
from tests.support import BIN

GOOD = """
[notifications]
give_up_after_s = 3600

[notifications.quiet_hours]
start = "22:00"
end = "07:00"
timezone = "Europe/Berlin"

[notifications.sinks.slack]
type = "webhook"
url_env = "SLACK_URL"

[notifications.sinks.github]
type = "github"
repo = "acme/dgx-pixels"
issue = 42
token_file = "/etc/pixels/github-token"

[notifications.sinks.mail]
type = "email"
host = "smtp.example.com"
from_addr = "pixelsd@example.com"
to = ["team@example.com"]
username = "pixelsd"
password_env = "SMTP_PASSWORD"

[[notifications.routes]]
kinds = ["escalation"]
min_severity = "high"
sinks = ["slack"]

[[notifications.routes]]
kinds = ["weekly_report", "gate", "completion"]
sinks = ["github", "mail"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pixelsd.toml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return str(info.value)


def test_a_config_with_every_sink_loads(tmp_path: Path) -> None:
    notes = load_config(write(tmp_path, GOOD)).notifications
    assert isinstance(notes.sinks["slack"], WebhookSink)
    assert isinstance(notes.sinks["github"], GitHubSink)
    assert isinstance(notes.sinks["mail"], EmailSink)
    assert notes.sinks["mail"].port == 587
    assert [r.sinks for r in notes.routes] == [["slack"], ["github", "mail"]]


def test_an_unknown_key_is_named_with_its_table(tmp_path: Path) -> None:
    text = GOOD.replace('url_env = "SLACK_URL"', 'url_env = "SLACK_URL"\nchanel = "#ops"')
    message = error_of(tmp_path, text)
    assert message.startswith(str(tmp_path / "pixelsd.toml"))
    assert "[notifications.sinks.slack]: unknown key `chanel`" in message


def test_an_inline_token_is_refused(tmp_path: Path) -> None:
    text = GOOD.replace('token_file = "/etc/pixels/github-token"', 'token = "ghp_x"')
    assert "[notifications.sinks.github]: unknown key `token`" in error_of(tmp_path, text)


def test_a_route_to_an_unconfigured_sink_names_the_configured_ones(tmp_path: Path) -> None:
    text = GOOD.replace('sinks = ["slack"]', 'sinks = ["slak"]')
    assert (
        "[notifications.routes[0]]: sink 'slak' is not configured (configured: github, mail, slack)"
        in error_of(tmp_path, text)
    )


def test_an_unknown_sink_type_is_an_error(tmp_path: Path) -> None:
    text = GOOD.replace('type = "webhook"', 'type = "pager"')
    assert "[notifications.sinks.slack]: key `type`: Invalid value 'pager'" in error_of(
        tmp_path, text
    )


def test_a_bad_quiet_hours_zone_is_named(tmp_path: Path) -> None:
    text = GOOD.replace("Europe/Berlin", "Mars/Olympus")
    assert "[notifications.quiet_hours]: timezone 'Mars/Olympus'" in error_of(tmp_path, text)


def test_toml_syntax_errors_carry_the_line(tmp_path: Path) -> None:
    assert "not valid TOML" in error_of(tmp_path, "[notifications\n")


def test_a_missing_secret_names_its_variable_but_holds_no_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLACK_URL", raising=False)
    notes = load_config(write(tmp_path, GOOD)).notifications
    with pytest.raises(ConfigError, match="environment variable SLACK_URL"):
        sink_secrets("slack", notes.sinks["slack"])


def test_a_secret_is_read_from_its_file(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("ghp_secret\n")
    text = GOOD.replace("/etc/pixels/github-token", str(token))
    notes = load_config(write(tmp_path, text)).notifications
    assert sink_secrets("github", notes.sinks["github"]) == {"token": "ghp_secret"}


def test_pixelsd_refuses_a_bad_config_at_start_with_exit_2(state_dir: Path) -> None:
    config = write(state_dir, GOOD.replace("min_severity", "min_sevrity"))
    proc = subprocess.run(
        [str(BIN / "pixelsd"), "run", "--state-dir", str(state_dir), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert "unknown key `min_sevrity`" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_example_in_configuration_md_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/configuration.md's config example is a valid file (with its secrets present)."""
    import re

    doc = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    section = doc.split("## Daemon config file (`--config`)", 1)[1]
    example = re.search(r"```toml\n(.*?)```", section, re.S)
    assert example is not None
    notes = load_config(write(tmp_path, example.group(1))).notifications
    assert {type(s).__name__ for s in notes.sinks.values()} == {
        "WebhookSink",
        "GitHubSink",
        "EmailSink",
    }
    monkeypatch.setenv("PIXELS_GITHUB_TOKEN", "x")
    assert sink_secrets("github", notes.sinks["github"]) == {"token": "x"}
