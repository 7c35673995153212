"""The embedded broker (extra `embedded`): amqtt in its own thread and event loop."""

from __future__ import annotations

import asyncio
import errno
import logging
import threading
from typing import Any

from mqtt2sms.errors import ConfigError

log = logging.getLogger("mqtt2sms.broker")


def missing() -> str | None:
    """Why the embedded broker cannot run here (amqtt, the `embedded` extra, is not
    installed), or None. `check` and `run` both ask, so both refuse the same config."""
    try:
        from amqtt.broker import Broker  # noqa: F401
    except ImportError:
        return (
            "mqtt.embedded: the built-in broker needs the `embedded` extra: "
            "pip install 'mqtt2sms[embedded]' (or pip install amqtt); or set "
            "`mqtt.embedded: false` and point mqtt.host at your broker"
        )
    return None


def listen_problem(host: str, port: int, error: BaseException) -> str:
    """One line for a broker that could not start: a port in use says what to do."""
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
        return (
            f"mqtt.embedded: port {port} on {host} is taken, by another MQTT broker (such as "
            "Mosquitto) or another program: set `mqtt.embedded: false` to use the broker that "
            "is there, or choose another mqtt.port"
        )
    if isinstance(cause, OSError):
        why = cause.strerror or str(cause)
        return f"mqtt.embedded: the built-in broker cannot listen on {host}:{port}: {why}"
    first = str(error).splitlines()[0] if str(error) else type(error).__name__
    return f"mqtt.embedded: the built-in broker could not start on {host}:{port}: {first}"


class EmbeddedBroker:
    """amqtt listening on host:port; start() returns once it accepts connections."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: Any = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float = 15.0) -> None:
        problem = missing()
        if problem is not None:
            raise ConfigError([problem])
        for name in ("amqtt", "transitions", "websockets"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # amqtt logs a failed start as a traceback of its own: we say it in one line below
        logging.getLogger("amqtt.broker").setLevel(logging.CRITICAL)
        self._thread = threading.Thread(target=self._run, name="embedded-broker", daemon=True)
        self._thread.start()
        ready = self._ready.wait(timeout)
        logging.getLogger("amqtt.broker").setLevel(logging.WARNING)
        if not ready:
            raise RuntimeError("the embedded broker did not start in time")
        if self._error is not None:
            raise RuntimeError(listen_problem(self.host, self.port, self._error)) from None
        log.info("embedded broker listening on %s:%d", self.host, self.port)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._start())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        loop.run_forever()
        loop.close()

    async def _start(self) -> None:
        from amqtt.broker import Broker

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }
        self._broker = Broker(config)
        await self._broker.start()

    def stop(self, timeout: float = 5.0) -> None:
        loop = self._loop
        if loop is None or self._broker is None or not loop.is_running():
            return
        fut = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), loop)
        try:
            fut.result(timeout)
        except Exception as exc:  # a broker that fails to stop must not block our exit
            log.debug("embedded broker shutdown: %s", exc)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout)
