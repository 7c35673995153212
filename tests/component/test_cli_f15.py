"""What a new user sees from the command line (issue 15): one text for a notify that is also
the alert topic, `check` refusing what `run` refuses, and a busy port said in one line."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqtt2sms import cli

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """\
mqtt: {{port: {port}, embedded: {embedded}}}
contacts:
  alex: {{number: "+1 (555) 123-4567", carrier: tmobile}}
  sam: {{email: "5557654321@vtext.com"}}
defaults:
  to: [alex, sam]
alert_topic: {alert_topic}
"""


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """main() points the root logger at the stderr of the moment; put it back afterwards."""
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


def write(tmp_path: Path, port: int, embedded: bool = False, alert: str = "home/alerts/sms") -> str:
    p = tmp_path / "config.yaml"
    text = CONFIG.format(port=port, embedded=str(embedded).lower(), alert_topic=alert)
    p.write_text(text, encoding="utf-8")
    return str(p)


def test_a_notify_on_the_alert_topic_is_texted_once(
    tmp_path: Path, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, 1883, alert="mqtt2sms/notify")
    assert cli.main(["test", "--json", "-c", path, "mqtt2sms/notify", "Door open"], env) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["matched"] == ["sms"]
    assert [(t["to"], t["body"]) for t in doc["texts"]] == [
        ("alex", "Door open"),
        ("sam", "Door open"),
    ]
    assert cli.main(["check", "-c", path], env) == 0
    captured = capsys.readouterr()
    assert "the built-in `sms` rule alone serves it, so each message is texted once" in (
        captured.err
    )
    assert "  sms: mqtt2sms/notify (built-in" in captured.out
    assert "  notify:" not in captured.out


def test_check_refuses_an_embedded_broker_without_the_extra_as_run_does(
    tmp_path: Path,
    env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = write(tmp_path, 1883, embedded=True)
    assert cli.main(["check", "-c", path], env) == 0  # amqtt is installed here
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "amqtt.broker", None)  # as if it were not
    assert cli.main(["check", "-c", path], env) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{path}: mqtt.embedded: the built-in broker needs the `embedded` extra: "
        "pip install 'mqtt2sms[embedded]' (or pip install amqtt); or set "
        "`mqtt.embedded: false` and point mqtt.host at your broker",
        "config refused: 1 error",
    ]
    # and `run` refuses it the same way
    from mqtt2sms.broker import EmbeddedBroker
    from mqtt2sms.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        EmbeddedBroker("127.0.0.1", 1883).start()
    assert err[0].endswith(info.value.problems[0])


@pytest.mark.slow
def test_the_embedded_broker_on_a_busy_port_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = write(tmp_path, port, embedded=True)
        env = {**os.environ, "STATE_DIRECTORY": str(tmp_path / "state"), "TZ": "UTC"}
        env["MQTT2SMS_LOG"] = "plain"
        proc = subprocess.run(
            [sys.executable, "-m", "mqtt2sms", "run", "-c", path],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "Traceback" not in out and "amqtt" not in out, out
    (line,) = [x for x in out.splitlines() if "mqtt.embedded" in x]
    assert line.endswith(
        f"mqtt.embedded: port {port} on 127.0.0.1 is taken, by another MQTT broker (such as "
        "Mosquitto) or another program: set `mqtt.embedded: false` to use the broker that is "
        "there, or choose another mqtt.port"
    )
