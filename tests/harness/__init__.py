"""The one test harness, shared by tests/ and bench/ (not shipped in the mqtt2sms package).

    wait.py       free_port(), port_open(port), wait_for(pred, timeout, what) -> WaitTimeout
    mosquitto.py  Mosquitto(workdir, users=, tls=, persistence=, max_queued_messages=)
    sink.py       Sink (aiosmtpd, in-process), SinkProc (the same Sink as a process:
                  ``python -m tests.harness sink``), Mail, SinkHandler
    mqtt.py       Watcher: a paho client collecting events and retained status
    daemon.py     DaemonProc, base_config, running, wait_online, stalled_data
    tls.py        TlsFiles, make_tls_files(dir)

Import from the repository root (pytest does; bench/common.py puts the root on sys.path).
"""

from .daemon import DaemonProc, base_config, running, stalled_data, wait_online
from .mosquitto import Mosquitto, have_mosquitto, mosquitto_exe
from .mqtt import Watcher
from .sink import Mail, Sink, SinkHandler, SinkProc
from .tls import TlsFiles, make_tls_files
from .wait import WaitTimeout, free_port, port_open, wait_for

__all__ = [
    "DaemonProc",
    "Mail",
    "Mosquitto",
    "Sink",
    "SinkHandler",
    "SinkProc",
    "TlsFiles",
    "WaitTimeout",
    "Watcher",
    "base_config",
    "free_port",
    "have_mosquitto",
    "make_tls_files",
    "mosquitto_exe",
    "port_open",
    "running",
    "stalled_data",
    "wait_for",
    "wait_online",
]
