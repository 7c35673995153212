"""The add-on's options are taken literally, and a half-filled SMTP or `to` is an error."""

from __future__ import annotations

from typing import Any

import pytest

from mqtt2sms import addon
from mqtt2sms import config as cfg
from tests.unit.test_addon import BROKER, options

ENV = {"HOME": "/root", "SUPERVISOR_TOKEN": "supervisor-token-value"}


def smtp(**extra: Any) -> dict[str, Any]:
    base = {"host": "smtp.gmail.com", "port": 587, "security": "starttls"}
    base.update(username="you@gmail.com", password="app-password")
    base.update(extra)
    return base


@pytest.mark.parametrize(
    "password", ["Tr0ub${HOME}x", "${SUPERVISOR_TOKEN}", "pa${1}ss", "a$${b}", "$$${X}"]
)
def test_a_password_is_taken_as_typed(password: str) -> None:
    text, _ = addon.translate(options(smtp=smtp(password=password)), BROKER, ENV)
    config = cfg.parse_config(text, "x", ENV).config
    assert config.smtp is not None and config.smtp.password == password


def test_every_option_is_taken_as_typed() -> None:
    rules = [{"name": "r", "topic": "home/x", "message": "cost ${HOME} now", "to": "alex"}]
    broker = addon.Broker("core-mosquitto", 1883, "addons", "p${HOME}w")
    text, _ = addon.translate(options(rules=rules), broker, ENV)
    config = cfg.parse_config(text, "x", ENV).config
    assert config.rules[0].message == "cost ${HOME} now"
    assert config.mqtt.password == "p${HOME}w"


@pytest.mark.parametrize("given", [{"username": "you@gmail.com"}, {"password": "pw"}])
def test_a_login_without_an_smtp_host_is_an_error(given: dict[str, str]) -> None:
    blank = {"host": "", "username": "", "password": "", **given}
    with pytest.raises(addon.OptionsError) as info:
        addon.translate(options(smtp=blank), BROKER, ENV)
    (problem,) = info.value.problems
    assert problem.startswith("smtp.host: empty, but smtp.")
    assert "pw" not in problem.replace("smtp.password", "")


def test_an_empty_to_is_an_error() -> None:
    for to in ("", " , ", None):
        with pytest.raises(addon.OptionsError) as info:
            addon.translate(options(to=to), BROKER, ENV)
        assert [p.split(":")[0] for p in info.value.problems] == ["to"]
