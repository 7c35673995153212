"""Log lines: one per event; journald gets `<N>` priorities and no timestamps of ours."""

from __future__ import annotations

import logging
import re

import pytest

from mqtt2sms import logs


@pytest.fixture(autouse=True)
def _restore_root() -> object:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield None
    root.handlers[:] = handlers
    root.setLevel(level)


def test_under_journald_lines_carry_the_syslog_priority(capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup({"JOURNAL_STREAM": "8:12345"})
    log = logging.getLogger("mqtt2sms.test")
    log.warning("smtp is failing\nsecond line")
    log.info("sent")
    log.error("boom")
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "<4>mqtt2sms.test: smtp is failing | second line",
        "<6>mqtt2sms.test: sent",
        "<3>mqtt2sms.test: boom",
    ]


def test_on_a_terminal_lines_carry_a_timestamp(capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup({})
    logging.getLogger("mqtt2sms.test").warning("hello")
    line = capsys.readouterr().err.strip()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d WARNING mqtt2sms\.test: hello", line)


def test_noisy_libraries_are_quietened() -> None:
    logs.setup({})
    assert logging.getLogger("amqtt").getEffectiveLevel() >= logging.WARNING
    assert logging.getLogger("transitions").getEffectiveLevel() >= logging.WARNING


def test_in_a_container_lines_go_to_stdout_without_a_timestamp(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.setup({"MQTT2SMS_LOG": "plain"})
    logging.getLogger("mqtt2sms.test").warning("hello")
    assert capsys.readouterr().out == "WARNING mqtt2sms.test: hello\n"
