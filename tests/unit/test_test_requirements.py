"""The test suite's own rule: in CI a missing Mosquitto or openssl fails the run, not skips."""

from __future__ import annotations

import pytest

from tests.conftest import in_ci, missing_binary


@pytest.mark.parametrize(
    ("env", "ci"),
    [
        ({"CI": "true"}, True),
        ({"CI": "TRUE"}, True),
        ({"CI": "1"}, True),
        ({"CI": "false"}, False),
        ({"CI": ""}, False),
        ({}, False),
    ],
)
def test_in_ci(env: dict[str, str], ci: bool) -> None:
    assert in_ci(env) is ci


def test_a_missing_binary_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="mosquitto is not installed"):
        missing_binary("mosquitto", "apt-get install mosquitto")


def test_a_missing_binary_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"openssl is not installed \(apt-get"):
        missing_binary("openssl", "apt-get install openssl")
