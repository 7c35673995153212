"""Fixtures shared by the component and integration tests; the integration marker."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from tests.harness import TlsFiles, make_tls_files

__all__ = ["TlsFiles", "in_ci", "missing_binary"]

INTEGRATION = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under tests/integration/ is an integration test, new files included.

    (A ``pytestmark`` in a conftest applies to nothing, so this is done here.)
    """
    for item in items:
        if item.path.is_relative_to(INTEGRATION):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _root_logger_restored() -> Iterator[None]:
    """A command run in-process (``cli.main``) sets the root logger up on the test's captured
    stderr; a thread that logs after the test (an SMTP session of the sink closing) must not
    find that closed stream: the handlers and level are put back after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    for h in handlers:
        if h not in root.handlers:
            root.addHandler(h)
    root.setLevel(level)


def in_ci(env: dict[str, str] | None = None) -> bool:
    """Whether the tests run in CI (``CI`` set to true, as CI services and .ci/run set it)."""
    value = (os.environ if env is None else env).get("CI", "")
    return value.strip().lower() in ("1", "true", "yes")


def missing_binary(name: str, install: str) -> NoReturn:
    """A program the tests need is not installed: a skip on a developer's machine, a failure
    in CI, where a run that skipped every test against a real broker must not look green."""
    message = f"{name} is not installed ({install})"
    if in_ci():
        pytest.fail(f"{message}: CI must install it", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed certificate for 127.0.0.1 (IP SAN), made with the openssl command."""
    files = make_tls_files(tmp_path_factory.mktemp("tls"))
    if files is None:
        missing_binary("the openssl command", "apt-get install openssl")
    return files
