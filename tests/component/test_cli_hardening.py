"""cli.main([...]) where a mistake used to pass as success or end in a traceback."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mqtt2sms import cli

if TYPE_CHECKING:  # conftest is not importable at run time
    from tests.component.conftest import MakeSink, TlsFiles

CONFIG = """\
mqtt:
  port: {port}
contacts:
  alex: {{number: "+1 (555) 123-4567", carrier: tmobile}}
  sam: {{email: "5557654321@vtext.com"}}
groups:
  family: [alex, sam]
defaults:
  to: [family]
rules:
  - name: hot
    topic: zigbee2mqtt/+/temp
    when: value_json.temperature > 30
    to: [alex]
  - name: leak
    topic: zigbee2mqtt/+/temp
    when: value_json.water_leak
  - name: all
    topic: zigbee2mqtt/+/temp
"""


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"STATE_DIRECTORY": str(tmp_path / "state"), "TZ": "UTC"}


@pytest.fixture
def config_path(tmp_path: Path, free_port: Callable[[], int]) -> str:
    """Its broker port is closed: a `send` that gets past its checks fails to connect."""
    p = tmp_path / "config.yaml"
    p.write_text(CONFIG.format(port=free_port()), encoding="utf-8")
    return str(p)


def run(*argv: str, env: dict[str, str]) -> int:
    return int(cli.main(list(argv), env=env))


# --------------------------------------------------------------------------- send


@pytest.mark.parametrize(
    ("to", "said"),
    [
        ("nobody", "unknown contact or group 'nobody'"),
        ("alx", "unknown contact or group 'alx' (did you mean 'alex'?)"),
        ("+15551234567", "'+15551234567' is a number or address"),
        ("(555) 123-4567", "is a number or address"),
        ("5551234567@tmomail.net", "is a number or address"),
    ],
)
def test_send_refuses_a_name_the_config_does_not_know(
    config_path: str, env: dict[str, str], capsys: pytest.CaptureFixture[str], to: str, said: str
) -> None:
    assert run("send", "-c", config_path, "--to", "alex", "--to", to, "x", env=env) == 1
    err = capsys.readouterr().err
    assert said in err and "known: alex, family, sam" in err
    assert "send failed" not in err  # refused before any broker was tried


@pytest.mark.parametrize("text", ["", "  ", "\n\t"])
def test_send_refuses_an_empty_text(
    config_path: str, env: dict[str, str], capsys: pytest.CaptureFixture[str], text: str
) -> None:
    assert run("send", "-c", config_path, text, env=env) == 1
    err = capsys.readouterr().err
    assert "the text is empty" in err and "send failed" not in err


def test_send_with_known_names_goes_on_to_the_broker(
    config_path: str, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("send", "-c", config_path, "--to", "family", "--to", "sam", "hi", env=env) == 1
    assert "send failed: cannot reach broker" in capsys.readouterr().err


def test_send_to_with_an_alert_rule_that_sets_to_is_refused(
    tmp_path: Path, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "config.yaml"
    p.write_text(
        CONFIG.format(port=1) + "  - {name: mine, topic: home/alerts/sms, to: [sam]}\n",
        encoding="utf-8",
    )
    assert run("send", "-c", str(p), "--to", "alex", "hi", env=env) == 1
    assert "sets its own `to`, so --to would be ignored" in capsys.readouterr().err


# --------------------------------------------------------------------------- test


def test_test_says_which_when_stopped_which_rule(
    config_path: str, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    payload = '{"temperature": 20, "water_leak": false}'
    assert run("test", "-c", config_path, "zigbee2mqtt/attic/temp", payload, env=env) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "matched: all"
    assert out[1:3] == [
        "  [hot] matches the topic, but its `when` is false: value_json.temperature > 30",
        "  [leak] matches the topic, but its `when` is false: value_json.water_leak",
    ]


def test_test_when_every_when_is_false(
    config_path: str, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = Path(config_path)
    cfg.write_text(cfg.read_text(encoding="utf-8").split("  - name: all")[0], encoding="utf-8")
    assert (
        run("test", "-c", config_path, "zigbee2mqtt/attic/temp", '{"temperature": null}', env=env)
        == 0
    )
    out = capsys.readouterr().out
    assert "no rule matches" not in out
    assert "matched: (none)" in out and "[hot] matches the topic, but its `when` is false" in out
    assert "null > 30 is false" in out  # the problem line says why


def test_test_json_has_stopped_and_charsets(
    config_path: str, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    payload = "Протечка в подвале"
    assert run("test", "--json", "-c", config_path, "zigbee2mqtt/a/temp", payload, env=env) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["matched"] == ["all"]
    assert doc["stopped"] == [
        {"rule": "hot", "when": "value_json.temperature > 30"},
        {"rule": "leak", "when": "value_json.water_leak"},
    ]
    [charset] = doc["charsets"]
    assert charset["rule"] == "all" and "Cyrillic" in charset["reason"]
    assert {t["charset"] for t in doc["texts"]} == {charset["charset"]}
    assert all(t["body"] in (payload, "Protechka v podvale") for t in doc["texts"])


def test_test_shows_the_charset_and_why(
    config_path: str, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("test", "-c", config_path, "zigbee2mqtt/a/temp", "Fire 🔥 “hall”", env=env) == 0
    out = capsys.readouterr().out
    assert "  [all] charset GSM-7" in out and "transliterated, no letter lost" in out


# --------------------------------------------------------------------------- check


def test_check_shows_the_time_zone(
    config_path: str, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("check", "-c", config_path, env={**env, "TZ": "Europe/Berlin"}) == 0
    assert "time zone: Europe/Berlin" in capsys.readouterr().out.splitlines()


def _smtp_config(tmp_path: Path, port: int, **extra: str) -> str:
    lines = [f"smtp:\n  host: 127.0.0.1\n  port: {port}\n  from: home@example.com\n  timeout: 5s"]
    lines += [f"  {k}: {v}" for k, v in extra.items()]
    p = tmp_path / "smtp.yaml"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(p)


def test_check_probe_logs_in_with_a_non_ascii_password(
    tmp_path: Path,
    env: dict[str, str],
    make_sink: MakeSink,
    tls_files: TlsFiles,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sink = make_sink("starttls", users={"home": "pässwört"})
    path = _smtp_config(
        tmp_path, sink.port, username="home", password='"pässwört"', ca_certs=tls_files.cert
    )
    assert run("check", "--probe", "-c", path, env=env) == 0
    assert "probe smtp: OK" in capsys.readouterr().out


def test_check_probe_reports_an_unexpected_error_as_failed(
    tmp_path: Path, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = _smtp_config(tmp_path, 25, security="none")
    Path(path).write_text(
        Path(path).read_text(encoding="utf-8").replace("127.0.0.1", "smtp..example.org"),
        encoding="utf-8",
    )
    assert run("check", "--probe", "-c", path, env=env) == 1
    out = capsys.readouterr().out
    [line] = [x for x in out.splitlines() if x.startswith("probe smtp")]
    assert line.startswith("probe smtp: FAILED, ") and "unexpected error" in line


def test_check_probe_never_shows_a_traceback(
    tmp_path: Path,
    env: dict[str, str],
    free_port: Callable[[], int],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mqtt2sms.transports import smtp

    def broken(_self: object) -> str:
        raise RuntimeError("a bug")

    monkeypatch.setattr(smtp.SmtpTransport, "probe", broken)
    path = _smtp_config(tmp_path, free_port(), security="none")
    assert run("check", "--probe", "-c", path, env=env) == 1
    out = capsys.readouterr().out
    assert "probe smtp: FAILED, unexpected error: RuntimeError: a bug" in out


# --------------------------------------------------------------------------- broken pipe


class _ClosedPipe:
    def write(self, _s: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_reader_that_left_ends_the_command_quietly(
    config_path: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert run("check", "-c", config_path, env=env) == cli.EXIT_BROKEN_PIPE


@pytest.mark.parametrize("command", [["check"], ["queue", "list"], ["carriers"]])
def test_check_or_queue_list_into_a_closed_pipe_has_no_traceback(
    config_path: str, env: dict[str, str], command: list[str]
) -> None:
    argv = [sys.executable, "-m", "mqtt2sms", *command]
    if command != ["carriers"]:
        argv += ["-c", config_path]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**env, "PATH": "/usr/bin:/bin"}
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # `| head` that has already left
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(60) == cli.EXIT_BROKEN_PIPE
    assert (
        "Traceback" not in err and "BrokenPipeError" not in err and "Exception ignored" not in err
    )
