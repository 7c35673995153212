"""The embedded broker (extra `embedded`): amqtt in its own thread and event loop."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from mqtt2sms.errors import ConfigError

log = logging.getLogger("mqtt2sms.broker")


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
        try:
            from amqtt.broker import Broker  # noqa: F401
        except ImportError as exc:
            raise ConfigError(
                [
                    "mqtt.embedded: the built-in broker needs the `embedded` extra: "
                    "pip install 'mqtt2sms[embedded]' (or pip install amqtt)"
                ]
            ) from exc
        for name in ("amqtt", "transitions", "websockets"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self._thread = threading.Thread(target=self._run, name="embedded-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the embedded broker did not start in time")
        if self._error is not None:
            raise RuntimeError(
                f"the embedded broker could not listen on {self.host}:{self.port}: {self._error}"
            ) from self._error
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
