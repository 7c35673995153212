"""The MQTT edge: a paho 2.x client with a persistent session and manual acks.

paho messages become our frozen ``Message`` here and nowhere else. paho runs its own
network thread (``loop_start``); our callbacks only hand work over. What goes wrong here
reaches callers as our ``MqttError`` (``BrokerUnreachableError`` when no connection could be
made), never as a socket, ssl or paho exception.

A broker that cannot be reached (down, a wrong port or host name) is logged at the first
failed attempt, with the reason, then every ``UNREACHABLE_LOG_EVERY`` seconds while it lasts,
and the connection that ends it says how long it took; paho itself retries quietly.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import queue
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mqtt2sms.config import MqttConfig
from mqtt2sms.errors import BrokerUnreachableError, MqttError
from mqtt2sms.model import Message

log = logging.getLogger("mqtt2sms.mqtt")

#: While the broker cannot be reached, the log says so again this often (seconds).
UNREACHABLE_LOG_EVERY = 300.0


def connect_failure(exc: BaseException | None) -> str:
    """A person's reason for a failed TCP/TLS connection to the broker."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the broker running, and on this port?)"
    if isinstance(exc, socket.gaierror):
        return f"host name not known ({exc.strerror or exc})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {getattr(exc, 'reason', None) or exc}"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    return "connection failed"


def _took(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def to_message(msg: paho.MQTTMessage, now: dt.datetime) -> Message:
    """Convert a paho message into our own frozen Message (never raises on a bad topic)."""
    raw_topic: bytes = msg._topic
    return Message(
        topic=raw_topic.decode("utf-8", "replace"),
        payload=bytes(msg.payload),
        received_at=now,
        retained=bool(msg.retain),
        dup=bool(msg.dup),
        mid=int(msg.mid),
        qos=int(msg.qos),
    )


def make_client(cfg: MqttConfig, client_id: str, clean: bool, manual_ack: bool) -> paho.Client:
    """A paho client set up from the mqtt section (protocol, credentials, TLS).

    Raises ``MqttError`` when the TLS files cannot be loaded.
    """
    v5 = cfg.protocol == "5"
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=None if v5 else clean,
        protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
        manual_ack=manual_ack,
    )
    if cfg.username is not None:
        client.username_pw_set(cfg.username, cfg.password)
    if cfg.tls is not None:
        try:
            ctx = ssl.create_default_context(cafile=cfg.tls.ca_certs)
            if cfg.tls.certfile:
                ctx.load_cert_chain(cfg.tls.certfile, cfg.tls.keyfile)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise MqttError(f"mqtt.tls: cannot load the TLS files: {exc}") from exc
        if cfg.tls.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        client.tls_set_context(ctx)
    return client


def connect_kwargs(cfg: MqttConfig, clean: bool) -> dict[str, Any]:
    kw: dict[str, Any] = {"host": cfg.host, "port": cfg.port, "keepalive": cfg.keepalive}
    if cfg.protocol == "5":
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 0 if clean else int(cfg.session_expiry)
        kw["clean_start"] = clean
        kw["properties"] = props
    return kw


class MqttLink:
    """The daemon's connection: persistent session, QoS 1 subscriptions, status and will.

    ``on_session(present)`` (optional) is told about every connection the broker accepts,
    the first and each reconnect, with the CONNACK's session-present flag, before the
    subscriptions go out and before any message of the new connection is handed over. False
    means the broker kept nothing of ours (a first connect, an expired session, a broker that
    lost its state): packet ids start again at 1, so whatever was remembered by (mid, digest)
    to recognise a redelivery must be forgotten then. It runs on paho's network thread.
    """

    def __init__(
        self,
        cfg: MqttConfig,
        filters: Iterable[str],
        on_message: Callable[[Message], None],
        on_online: Callable[[bool], None],
        clock: Callable[[], dt.datetime],
        monotonic: Callable[[], float] = time.monotonic,
        *,
        on_session: Callable[[bool], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.filters = sorted(set(filters))
        self._on_message = on_message
        self._on_online = on_online
        self._on_session = on_session
        self._clock = clock
        self._monotonic = monotonic
        self._unreachable_since: float | None = None  # monotonic, while connecting fails
        self._unreachable_logged = 0.0
        self._lock = threading.Lock()
        self._pending_sub: int | None = None
        self._extra_subs: dict[int, threading.Event] = {}  # SUBACKs a reload waits for
        self.connected = False
        self._stopping = False
        self.refused: str | None = None  # the broker's reason, while it refuses us
        self.status_topic = f"{cfg.base_topic}/status"
        c = make_client(cfg, cfg.client_id, clean=False, manual_ack=True)
        c.will_set(self.status_topic, "offline", qos=1, retain=True)
        c.reconnect_delay_set(1, 30)
        c.max_inflight_messages_set(100)
        c.max_queued_messages_set(10000)
        c.on_connect = self._connected
        c.on_connect_fail = self._connect_failed
        c.on_disconnect = self._disconnected
        c.on_subscribe = self._subscribed
        c.on_message = self._message
        c.on_publish = self._published
        self.client = c

    # paho callbacks (network thread) -----------------------------------------------------
    def _connected(self, client: paho.Client, _u: object, flags: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            self.refused = str(rc)
            log.warning("broker %s:%d refused the connection: %s", self.cfg.host, self.cfg.port, rc)
            return
        self.refused = None
        since, self._unreachable_since = self._unreachable_since, None
        log.info(
            "connected to %s:%d (session %s)%s",
            self.cfg.host,
            self.cfg.port,
            "resumed" if flags.session_present else "new",
            "" if since is None else f", reachable again after {_took(self._monotonic() - since)}",
        )
        if self._on_session is not None:
            self._on_session(bool(flags.session_present))
        self.connected = True
        self._subscribe(self.filters)

    def _connect_failed(self, _c: paho.Client, _u: object) -> None:
        # paho calls this inside its `except OSError:` around the connect: the reason is there.
        reason = connect_failure(sys.exc_info()[1])
        now = self._monotonic()
        where = f"{self.cfg.host}:{self.cfg.port}"
        if self._unreachable_since is None:
            self._unreachable_since = self._unreachable_logged = now
            log.warning("cannot reach the broker at %s: %s; retrying", where, reason)
        elif now - self._unreachable_logged >= UNREACHABLE_LOG_EVERY:
            self._unreachable_logged = now
            log.warning(
                "still cannot reach the broker at %s (for %s): %s; retrying",
                where,
                _took(now - self._unreachable_since),
                reason,
            )

    def _subscribe(self, filters: list[str]) -> None:
        if not filters:
            self._go_online()
            return
        _res, mid = self.client.subscribe([(f, 1) for f in filters])
        with self._lock:
            self._pending_sub = mid

    def _subscribed(self, _c: paho.Client, _u: object, mid: int, codes: Any, _p: Any) -> None:
        failed = [str(c) for c in codes if getattr(c, "is_failure", False)]
        if failed:
            log.error("broker refused some subscriptions: %s", ", ".join(failed))
        with self._lock:
            extra = self._extra_subs.pop(mid, None)
            if extra is not None:
                extra.set()
                return
            if mid != self._pending_sub:
                return
            self._pending_sub = None
        self._go_online()

    def _go_online(self) -> None:
        self.client.publish(self.status_topic, "online", qos=1, retain=True)
        self._on_online(True)

    def _disconnected(self, _c: paho.Client, _u: object, _f: Any, rc: Any, _p: Any) -> None:
        was = self.connected
        self.connected = False
        if was and not self._stopping:
            log.warning(
                "disconnected from %s:%d (%s); reconnecting", self.cfg.host, self.cfg.port, rc
            )
        self._on_online(False)

    def _message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        self._on_message(to_message(msg, self._clock()))
        _quickack(self.client)

    def _published(self, _c: paho.Client, _u: object, *_rest: object) -> None:
        _quickack(self.client)  # a PUBACK was read: the other read that must not wait

    # used by the daemon -------------------------------------------------------------------
    def start(self) -> None:
        self.client.connect_async(**connect_kwargs(self.cfg, clean=False))
        self.client.loop_start()

    def set_filters(self, filters: Iterable[str]) -> threading.Event:
        """Change the subscriptions; the event is set once the broker has the new ones."""
        new = sorted(set(filters))
        gone = [f for f in self.filters if f not in new]
        added = [f for f in new if f not in self.filters]
        self.filters = new
        done = threading.Event()
        if not self.connected or not added:
            done.set()
        if not self.connected:
            return done
        if gone:
            self.client.unsubscribe(gone)
        if added:
            with self._lock:  # held, so the SUBACK cannot be handled before we note its mid
                _res, mid = self.client.subscribe([(f, 1) for f in added])
                if mid is None:
                    done.set()
                else:
                    self._extra_subs[mid] = done
        return done

    def alive(self) -> bool:
        """paho's network thread is running (it reconnects by itself while it does)."""
        thread = getattr(self.client, "_thread", None)
        return thread is not None and bool(thread.is_alive())

    def ack(self, msg: Message) -> None:
        if msg.qos > 0:
            self.client.ack(msg.mid, msg.qos)

    def publish(self, topic: str, payload: str, retain: bool = False, qos: int = 1) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain)

    def stop(self, timeout: float = 2.0) -> None:
        """Publish `offline` ourselves (a clean disconnect sends no will), then disconnect."""
        self._stopping = True
        if self.connected:
            info = self.client.publish(self.status_topic, "offline", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout)
        self.client.disconnect()
        self.client.loop_stop()


def publish_once(
    cfg: MqttConfig, topic: str, payload: str, client_id: str, timeout: float = 10.0
) -> None:
    """Connect with a clean session, publish at QoS 1, wait for the PUBACK, disconnect.

    Raises ``BrokerUnreachableError`` when the broker cannot be reached, and ``MqttError``
    when it refuses us or does not acknowledge in time (or the TLS files do not load); each
    with a readable reason.
    """
    client = make_client(cfg, client_id, clean=True, manual_ack=False)
    done = threading.Event()
    failure: list[str] = []

    def connected(c: paho.Client, _u: object, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            failure.append(f"broker refused the connection: {rc}")
            done.set()

    client.on_connect = connected
    try:
        client.connect(**connect_kwargs(cfg, clean=True))
    except (OSError, ValueError) as exc:  # ValueError: a host name IDNA cannot encode
        where = f"{cfg.host}:{cfg.port}"
        raise BrokerUnreachableError(f"cannot reach broker {where}: {exc}") from exc
    client.loop_start()
    try:
        try:
            info = client.publish(topic, payload, qos=1)
        except ValueError as exc:  # a topic paho refuses
            raise MqttError(f"cannot publish to {topic!r}: {exc}") from exc

        def published() -> bool:
            try:
                return info.is_published()
            except (RuntimeError, ValueError):  # not sent: the broker hung up (refused us)
                return False

        end = time.monotonic() + timeout
        while not published() and time.monotonic() < end:
            if done.wait(0.05):
                break
        if failure:
            raise MqttError(failure[0])
        if not published():
            raise MqttError(f"broker {cfg.host}:{cfg.port} did not acknowledge in {timeout:g}s")
    finally:
        client.disconnect()
        client.loop_stop()


def watch(
    cfg: MqttConfig,
    topic: str,
    client_id: str,
    seen: Callable[[bytes], bool],
    timeout: float,
    then: Callable[[], None] | None = None,
) -> bool:
    """Subscribe to ``topic`` (clean session), call ``then`` once subscribed (a publish of
    ours whose answer we wait for), and hand each message's payload to ``seen`` until it
    returns True (True) or ``timeout`` seconds pass (False). Raises like ``publish_once``."""
    client = make_client(cfg, client_id, clean=True, manual_ack=False)
    got: queue.Queue[bytes] = queue.Queue()
    subscribed = threading.Event()
    client.on_message = lambda _c, _u, m: got.put(bytes(m.payload))
    client.on_subscribe = lambda *_a: subscribed.set()
    client.on_connect = lambda c, *_a: c.subscribe(topic, qos=1)
    try:
        client.connect(**connect_kwargs(cfg, clean=True))
    except (OSError, ValueError) as exc:
        raise BrokerUnreachableError(f"cannot reach broker {cfg.host}:{cfg.port}: {exc}") from exc
    client.loop_start()
    try:
        if not subscribed.wait(10.0):
            raise MqttError(f"broker {cfg.host}:{cfg.port} did not take our subscription")
        if then is not None:
            then()
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            try:
                if seen(got.get(timeout=min(left, 1.0))):
                    return True
            except queue.Empty:
                continue
        return False
    finally:
        client.disconnect()
        client.loop_stop()


def _quickack(client: paho.Client) -> None:
    """Acknowledge the broker's TCP segments at once. Linux delays an ACK up to 40 ms, and
    with a broker that waits for it before its next small segment (Nagle, Mosquitto's
    default) an alert published right after another arrives 40 ms late. The flag does not
    stick, so it is set again after each read paho tells of (a message, a PUBACK)."""
    flag = getattr(socket, "TCP_QUICKACK", None)
    sock = client.socket()
    if flag is None or not isinstance(sock, socket.socket):
        return  # not Linux, or not a plain or TLS socket (websockets)
    with contextlib.suppress(OSError):  # closed meanwhile: only speed is lost
        sock.setsockopt(socket.IPPROTO_TCP, flag, 1)
