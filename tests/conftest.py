"""Fixtures shared by the component and integration tests; the integration marker."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import TlsFiles, make_tls_files

__all__ = ["TlsFiles"]

INTEGRATION = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under tests/integration/ is an integration test, new files included.

    (A ``pytestmark`` in a conftest applies to nothing, so this is done here.)
    """
    for item in items:
        if item.path.is_relative_to(INTEGRATION):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed certificate for 127.0.0.1 (IP SAN), made with the openssl command."""
    files = make_tls_files(tmp_path_factory.mktemp("tls"))
    if files is None:
        pytest.skip("the openssl command is not installed")
    return files
