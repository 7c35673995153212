"""A broker with a password and TLS, as a Home Assistant add-on or a remote Mosquitto has."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TlsFiles, missing_binary

from .conftest import Mosquitto, Sink, Watcher, base_config, wait_for, wait_online

USER, PASSWORD = "mqtt2sms", "broker-Secret-42"


@pytest.fixture
def secure_broker(tmp_path: Path, tls_files: TlsFiles) -> Any:
    if not shutil.which("mosquitto_passwd"):
        missing_binary("mosquitto_passwd", "apt-get install mosquitto")
    m = Mosquitto(
        tmp_path / "secure",
        users={USER: PASSWORD, "watcher": "w"},
        tls=(tls_files.cert, tls_files.key),
    )
    m.start()
    yield m
    m.stop()


def _config(broker: Mosquitto, sink: Sink, tls_files: TlsFiles, password: str) -> str:
    return base_config(broker.port, sink.port).replace(
        "client_id: mqtt2sms-test",
        f"client_id: mqtt2sms-test\n  username: {USER}\n  password_file: "
        f"{broker.workdir / 'pw'}\n  tls: {{ca_certs: {tls_files.cert}}}",
    ), password


def test_password_and_tls(
    secure_broker: Mosquitto, sink: Sink, tls_files: TlsFiles, daemon_factory: Any
) -> None:
    text, password = _config(secure_broker, sink, tls_files, PASSWORD)
    (secure_broker.workdir / "pw").write_text(password + "\n")
    d = daemon_factory(text)
    w = Watcher(secure_broker.port, auth=("watcher", "w"), ca_certs=tls_files.cert)
    d.start()
    wait_online(w)
    w.publish("home/alerts/sms", "over TLS")
    wait_for(lambda: sink.mails, 10, "a mail")
    assert [m.body for m in sink.mails] == ["over TLS"]
    assert d.stop() == 0
    w.close()
    assert PASSWORD not in d.logtext()


def test_wrong_broker_password_is_reported_and_retried(
    secure_broker: Mosquitto, sink: Sink, tls_files: TlsFiles, daemon_factory: Any
) -> None:
    text, _ = _config(secure_broker, sink, tls_files, "nope")
    (secure_broker.workdir / "pw").write_text("nope\n")
    d = daemon_factory(text)
    d.start()
    wait_for(lambda: "refused the connection" in d.logtext(), 15, "the refusal in the log")
    assert d.proc is not None and d.proc.poll() is None  # it keeps trying, it does not die
    assert "nope" not in d.logtext().replace("refused", "")
    assert d.stop() == 0
