"""Real parts for component tests: aiosmtpd sinks (from tests.harness) and free ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.harness import Mail, Sink, SinkHandler, TlsFiles
from tests.harness import free_port as _free_port

__all__ = ["Mail", "MakeSink", "Sink", "SinkHandler", "TlsFiles"]


@pytest.fixture
def free_port() -> Callable[[], int]:
    """Gives a TCP port on 127.0.0.1 that nothing listens on (right now)."""
    return _free_port


MakeSink = Callable[..., Sink]


@pytest.fixture
def make_sink(request: pytest.FixtureRequest) -> Iterator[MakeSink]:
    """Start aiosmtpd sinks: ``make_sink(security="none"|"starttls"|"ssl", users={u: p})``."""
    started: list[Sink] = []

    def make(security: str = "none", users: dict[str, str] | None = None) -> Sink:
        tls: TlsFiles | None = request.getfixturevalue("tls_files") if security != "none" else None
        # auth_required with auth_require_tls=False would warn (warnings are errors here)
        sink = Sink(
            users,
            security=security,
            tls=tls,
            auth_required=security == "starttls",
            server_hostname="sink.test",
        )
        sink.start()
        started.append(sink)
        return sink

    yield make
    for sink in started:
        sink.stop()
