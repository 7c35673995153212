"""Mistakes `check` used to accept and the daemon then lost alerts to (issue: no alert lost
to a mistake): each is now refused, or read as the user meant it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mqtt2sms import cli
from mqtt2sms.config import parse_config
from mqtt2sms.errors import ConfigError

ENV = {"HOME": "/home/pi"}
BASE = (
    'contacts:\n  alex: {number: "+1 (555) 123-4567", carrier: tmobile}\ndefaults: {to: [alex]}\n'
)


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_config(BASE + text, "config.yaml", ENV)
    return list(exc.value.problems)


def test_a_base_topic_that_swallows_the_alert_topic_is_an_error() -> None:
    (e,) = errors("mqtt: {base_topic: home}\n")
    assert "alert_topic" in e and "lies under mqtt.base_topic 'home'" in e
    (e,) = errors("alert_topic: mqtt2sms/x\n")
    assert "alert_topic" in e


def test_a_rule_wholly_under_base_topic_is_an_error_one_that_covers_it_a_warning() -> None:
    (e,) = errors("rules:\n  - {name: r, topic: mqtt2sms/status}\n")
    assert e.startswith("config.yaml:5: rules[0].topic:") and "cannot fire" in e
    loaded = parse_config(BASE + "rules:\n  - {name: r, topic: '#'}\n", "config.yaml", ENV)
    assert any("also covers mqtt2sms/" in w for w in loaded.warnings)


@pytest.mark.parametrize(
    ("given", "read"), [("HIGH", "high"), ("High", "high"), ("Normal", "normal")]
)
def test_priority_in_any_case(given: str, read: str) -> None:
    c = parse_config(
        BASE + f"rules:\n  - {{name: r, topic: t, priority: {given}}}\n", "c.yaml", ENV
    )
    assert c.config.rules[0].options.priority == read


def test_an_enum_typo_gets_a_did_you_mean_across_case() -> None:
    (e,) = errors("rules:\n  - {name: r, topic: t, charset: GSM8}\n")
    assert "did you mean 'gsm7'" in e


def test_charset_is_auto_by_default() -> None:
    c = parse_config(BASE, "c.yaml", ENV).config
    assert c.defaults.charset == "auto"


def _write(tmp: Path, text: str) -> Path:
    p = tmp / "config.yaml"
    p.write_text(BASE + text)
    return p


@pytest.mark.parametrize(
    "section",
    [
        "mqtt: {tls: {ca_certs: NOPE}}\n",
        "smtp: {host: smtp.example.com, from: a@example.org, ca_certs: NOPE}\n",
    ],
)
def test_check_refuses_a_missing_ca_file(
    tmp_path: Path, section: str, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing-ca.pem"
    cfg = _write(tmp_path, section.replace("NOPE", str(missing)))
    env = {"STATE_DIRECTORY": str(tmp_path / "state")}
    assert cli.main(["check", "-c", str(cfg)], env) == 2
    err = capsys.readouterr().err
    assert f"'{missing}': no such file" in err and "ca_certs" in err


def test_check_refuses_an_unknown_time_zone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _write(tmp_path, "")
    env = {"STATE_DIRECTORY": str(tmp_path / "state"), "TZ": "Mars/Olympus_Mons"}
    assert cli.main(["check", "-c", str(cfg)], env) == 2
    assert "Mars/Olympus_Mons" in capsys.readouterr().err
