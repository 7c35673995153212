"""The e-mail way out: one text, one mail to a carrier's email-to-SMS gateway.

``build_email`` is pure. ``SmtpTransport`` keeps one connection open and reuses it; this
module is the one place where smtplib, ssl and socket errors become ``DeliveryError``:

- connection refused, timeout, TLS (certificates are always verified), EHLO, no STARTTLS,
  disconnect, 421 to anything, 4xx/5xx to MAIL FROM: ``TemporaryDeliveryError`` scope
  ``"transport"``; a refused login or no AUTH offered: the same with ``auth=True``;
- 4xx to RCPT or DATA: ``TemporaryDeliveryError`` scope ``"text"``;
- 5xx to RCPT or DATA: ``PermanentDeliveryError``;
- anything else that goes wrong in here (a host name IDNA cannot encode, a bug):
  ``TemporaryDeliveryError`` scope ``"transport"`` saying "unexpected"; no exception of
  another kind leaves ``send`` or ``probe``.

A reused connection that fails on its first command (MAIL) because the server closed it while
we were idle (Postfix says ``421 4.4.2 ... timeout exceeded`` and hangs up, sooner than our own
idle close) is not a failure: the text goes again at once on a new connection, once.

After a transport-scope error the connection is dropped, so the next send reconnects;
after a text-scope or permanent one it is reset (RSET) and kept.

``smtp.timeout`` bounds a whole send (connect, greeting, EHLO, STARTTLS and its handshake,
AUTH, MAIL, RCPT, DATA and the final reply; the one retry on a stale connection included), and
``probe`` and ``close`` each the same way: a per-read timeout starts again with every byte, so
a server that drips its reply a byte at a time would hold the send, and every text behind it,
as long as it liked. Each blocking step gets only the time left, and a watchdog thread shuts
the socket down when none is; that is a ``TemporaryDeliveryError`` scope ``"transport"``
("timed out"), and the connection is discarded.

The login is our own AUTH exchange (CRAM-MD5, PLAIN or LOGIN, in smtplib's order of
preference), because smtplib encodes credentials as ASCII: RFC 4616 (PLAIN) and the
practice of LOGIN and CRAM-MD5 are UTF-8, so ``password: "pässwört"`` works.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import quopri
import re
import smtplib
import socket
import ssl
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr, getaddresses, parseaddr

from ..config import SmtpConfig
from ..errors import DeliveryError, PermanentDeliveryError, TemporaryDeliveryError
from .base import OutgoingText, Receipt

# An RFC 5321 mailbox, ASCII only: a dot-atom local part and a domain of LDH labels.
_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
)
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]")
_REPLY_LIMIT = 200


def _clean_header(value: str) -> str:
    """One header line: control characters, line and paragraph separators become spaces."""
    out = []
    for ch in value:
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Zl", "Zp"):
            out.append(" ")
        elif cat == "Cs":  # a lone surrogate cannot be encoded at all
            out.append("\ufffd")
        else:
            out.append(ch)
    return " ".join("".join(out).split())


def _clean_body(value: str) -> str:
    """The body keeps its line breaks and tabs; other control characters are dropped."""
    lines = value.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(
        "".join(ch for ch in line if ch == "\t" or unicodedata.category(ch) not in ("Cc", "Cs"))
        for line in lines
    )


def _strict_address(value: str) -> str | None:
    value = "".join(ch for ch in value if unicodedata.category(ch) != "Cc").strip()
    return value if _ADDRESS.fullmatch(value) else None


def parse_from(from_addr: str) -> tuple[str, str]:
    """Split ``smtp.from`` (``a@b`` or ``Name <a@b>``) into (display name, address).

    Raises ``ValueError`` when it does not hold exactly one plain ASCII address.
    """
    value = _clean_header(from_addr)
    name, addr = parseaddr(value)
    checked = _strict_address(addr)
    if checked is None or len(getaddresses([value])) != 1:
        raise ValueError(f"not a single e-mail address: {from_addr!r}")
    return name, checked


@dataclass(frozen=True)
class Mail:
    """A built mail: its headers in order, and the bytes that go after DATA (CRLF lines)."""

    sender: str
    recipient: str
    headers: tuple[tuple[str, str], ...]
    data: bytes

    def as_bytes(self) -> bytes:
        return self.data

    def items(self) -> tuple[tuple[str, str], ...]:
        return self.headers

    def __contains__(self, name: object) -> bool:
        return any(k.lower() == str(name).lower() for k, _ in self.headers)

    def __getitem__(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def _header_line(name: str, value: str) -> str:
    """``Name: value``, RFC 2047-encoded when not ASCII and folded when long."""
    if value.isascii() and len(name) + 2 + len(value) <= 78:
        return f"{name}: {value}"
    charset = "us-ascii" if value.isascii() else "utf-8"
    encoded = Header(value, charset, header_name=name).encode(linesep="\r\n")
    return f"{name}: {encoded}"


def build_email(text: OutgoingText, from_addr: str, now: datetime, domain: str) -> Mail:
    """Build the mail for one text; pure.

    ``from_addr`` is ``smtp.from``; ``now`` (timezone-aware) becomes ``Date``; ``domain`` is the
    right-hand side of ``Message-ID`` (``<text.id@domain>``, the same on every retry). Headers
    are From, one To, Date, Message-ID, and Subject only when ``text.subject`` has something in
    it; CR, LF and other control characters in any header value become spaces. The body is
    plain UTF-8 text: 7bit when it is ASCII, else quoted-printable. The bytes are written
    directly (the ``email`` package's header registry costs a millisecond per mail).

    Raises ``PermanentDeliveryError`` when ``text.address`` is not one valid address, and
    ``TemporaryDeliveryError(scope="transport")`` when ``from_addr`` is not (a config fault
    of the way out, not of the text).
    """
    to = _strict_address(text.address)
    if to is None:
        raise PermanentDeliveryError(f"not a single e-mail address: {text.address!r}")
    try:
        name, sender = parse_from(from_addr)
    except ValueError as exc:
        raise TemporaryDeliveryError(f"smtp.from: {exc}", scope="transport") from exc
    msg_id = _ID_UNSAFE.sub("-", text.id).strip(".") or "text"
    msg_domain = _ID_UNSAFE.sub("-", domain).strip(".") or "localhost"
    body = _clean_body(text.body)
    ascii_ok = body.isascii() and all(len(line) <= 990 for line in body.split("\n"))
    headers: list[tuple[str, str]] = [
        ("From", formataddr((name, sender), charset="utf-8") if name else sender),
        ("To", to),
        ("Date", format_datetime(now)),
        ("Message-ID", f"<{msg_id}@{msg_domain}>"),
    ]
    subject = _clean_header(text.subject or "")
    if subject:
        headers.append(("Subject", subject))
    headers += [
        ("MIME-Version", "1.0"),
        ("Content-Type", 'text/plain; charset="utf-8"'),
        ("Content-Transfer-Encoding", "7bit" if ascii_ok else "quoted-printable"),
    ]
    if ascii_ok:
        payload = body.encode("ascii")
    else:
        payload = quopri.encodestring(body.encode("utf-8", "replace"))
    payload = payload.rstrip(b"\n").replace(b"\n", b"\r\n") + b"\r\n"
    head = "\r\n".join(_header_line(k, v) for k, v in headers)
    return Mail(sender, to, tuple(headers), head.encode("ascii") + b"\r\n\r\n" + payload)


def _local_now() -> datetime:
    return datetime.now().astimezone()


class _Stale(Exception):
    """A reused connection turned out to be closed; reconnect once and retry."""


class _Deadline:
    """The time one send (or probe, or close) may take: ``smtp.timeout``, all steps together.

    ``bound`` gives the next blocking step only the time left (``TimeoutError`` once there is
    none), and the transport's ``_Watchdog`` shuts the watched connection's socket down when
    the time is up, so a read or write in progress ends at once (a reply dripped a byte at a
    time included).
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.passed = False
        self.end_at = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._conn: _Connection | None = None
        self._over = False

    def watch(self, conn: _Connection) -> None:
        """The connection this deadline bounds, and whose socket the watchdog shuts down."""
        conn.deadline = self
        with self._lock:
            self._conn = conn

    def left(self) -> float:
        """Seconds left; raises ``TimeoutError`` when there are none."""
        left = self.end_at - time.monotonic()
        if left <= 0 or self.passed:
            self.passed = True
            raise TimeoutError(f"the send took more than {self.seconds:g}s")
        return left

    def check(self) -> None:
        """After a reply: raises ``TimeoutError`` when the time ran out while it was read.

        The reply may then be cut short, and smtplib takes ``250`` with the rest missing for a
        whole ``250``: what it says cannot be trusted.
        """
        if self.passed:
            raise TimeoutError(f"the send took more than {self.seconds:g}s")

    def bound(self, conn: smtplib.SMTP) -> None:
        """Before a blocking step: its socket may wait only for the time left."""
        left = self.left()
        if conn.sock is not None:
            conn.sock.settimeout(left)

    def end(self) -> None:
        """The send is over: the watchdog must not touch the connection any more."""
        with self._lock:
            self._over = True

    def expire(self) -> None:
        """The time is up: shut the socket down (called by the watchdog)."""
        with self._lock:
            if self._over:
                return
            self.passed = True
            sock = self._conn.sock if self._conn is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    # socket.socket's own shutdown: an SSLSocket's would drop its TLS state
                    # under the thread reading from it.
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Watchdog:
    """One thread per transport that expires the deadline under way when its time is up.

    A timer thread per send would cost about 0.15 ms of CPU a text; this one is started on the
    first send, wakes at most once per ``smtp.timeout`` while texts go (a new deadline always
    ends after the one it waits for), and ends after ``_WATCHDOG_IDLE`` seconds without one.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._current: _Deadline | None = None
        self._thread: threading.Thread | None = None
        self._idle = False  # waiting with no deadline: a new one must wake it

    def arm(self, deadline: _Deadline) -> None:
        with self._cond:
            self._current = deadline
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="mqtt2sms-smtp-deadline", daemon=True
                )
                self._thread.start()
            elif self._idle:
                self._cond.notify()

    def disarm(self, deadline: _Deadline) -> None:
        deadline.end()
        with self._cond:
            if self._current is deadline:
                self._current = None

    def _run(self) -> None:
        with self._cond:
            while True:
                deadline = self._current
                if deadline is None:
                    self._idle = True
                    woken = self._cond.wait(_WATCHDOG_IDLE)
                    self._idle = False
                    if not woken and self._current is None:
                        self._thread = None
                        return
                    continue
                left = deadline.end_at - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                self._current = None
                deadline.expire()


_WATCHDOG_IDLE = 60.0


class _Connection(smtplib.SMTP):
    """``smtplib.SMTP`` that lives within the deadline it is watched by (``deadline``, set
    anew for each send on a kept connection).

    Its socket is made (and for ``security: ssl`` wrapped) in the time left, and after every
    reply the socket may wait only for the time left: so a TLS handshake after STARTTLS, which
    CPython's ssl module bounds as a whole by the socket's timeout, ends with the deadline too.
    """

    def __init__(self, tls: ssl.SSLContext | None, local_hostname: str | None) -> None:
        super().__init__(local_hostname=local_hostname)  # no host: connect() comes later
        self.deadline: _Deadline | None = None
        self._tls = tls

    def _left(self) -> float:
        if self.deadline is None:
            raise RuntimeError("an SMTP connection outside a deadline")
        return self.deadline.left()

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        self._host = host  # what starttls checks the certificate against (SMTP(host) sets it)
        sock = socket.create_connection((host, port), self._left(), self.source_address)
        if self._tls is None:
            return sock
        try:
            sock.settimeout(self._left())
            return self._tls.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise

    def getreply(self) -> tuple[int, bytes]:
        reply = super().getreply()
        if self.deadline is not None and self.sock is not None:
            self.sock.settimeout(max(self.deadline.end_at - time.monotonic(), 0.001))
        return reply


class SmtpTransport:
    """One SMTP server, one connection kept open between sends; see the module docstring.

    ``send``, ``close`` and ``probe`` may be called from different threads; they take turns.
    """

    name = "smtp"

    def __init__(self, config: SmtpConfig, *, clock: Callable[[], datetime] | None = None) -> None:
        if config.security not in ("starttls", "ssl", "none"):
            raise ValueError(f"smtp.security: {config.security!r}")  # config.py checks it first
        self._config = config
        self._clock = clock or _local_now
        self._where = f"{config.host}:{config.port}"
        try:
            self._domain = parse_from(config.from_addr)[1].rpartition("@")[2]
        except ValueError:
            self._domain = "localhost"  # build_email reports the bad from on every send
        self._conn: _Connection | None = None
        self._deadline: _Deadline | None = None  # of the send, probe or close under way
        self._watchdog = _Watchdog()
        self._local_name: str | None = None  # what EHLO says we are
        self._context: ssl.SSLContext | None = None
        self._step = "connect"
        self._lock = threading.Lock()

    def send(self, text: OutgoingText) -> Receipt:
        """Mail ``text`` to its gateway address; see the module docstring for the errors."""
        try:
            message = build_email(text, self._config.from_addr, self._clock(), self._domain)
        except DeliveryError:
            raise
        except Exception as exc:
            self._step = "building the mail"
            raise self._unexpected(exc) from exc
        with self._lock, self._bounded(drop=True) as deadline:
            try:
                if self._conn is not None:
                    deadline.watch(self._conn)
                try:
                    return self._deliver(message, may_retry=self._conn is not None)
                except _Stale:
                    return self._deliver(message, may_retry=False)
            except DeliveryError:
                raise
            except Exception as exc:
                with contextlib.suppress(Exception):
                    self._drop()  # in an unknown state: start again on the next send
                raise (self._mapped(exc) if deadline.passed else self._unexpected(exc)) from exc

    def close(self) -> None:
        """Say QUIT and drop the connection, if one is open."""
        with self._lock:
            conn = self._conn
            if conn is None:
                return
            with self._bounded(drop=False) as deadline:
                deadline.watch(conn)
                with contextlib.suppress(OSError):
                    deadline.bound(conn)
                self._drop(quit=True)

    def probe(self) -> str:
        """Connect, EHLO, STARTTLS, log in and QUIT on a connection of its own."""
        with self._lock, self._bounded(drop=False) as deadline:
            try:
                conn = self._open(deadline)
            except (smtplib.SMTPException, OSError) as exc:
                raise self._mapped(exc) from exc
            except Exception as exc:
                raise (self._mapped(exc) if deadline.passed else self._unexpected(exc)) from exc
            try:
                deadline.bound(conn)
                _quit(conn)
            except Exception:  # out of time (or a bug): close it without a goodbye
                conn.close()
        cfg = self._config
        login = f"logged in as {cfg.username}" if cfg.username else "no login"
        return f"{self._where} {cfg.security}, {login}"

    # -- the shell ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _bounded(self, *, drop: bool) -> Iterator[_Deadline]:
        """One deadline of ``smtp.timeout`` for what runs inside; with ``drop``, a kept
        connection that was still in use when it passed is discarded."""
        deadline = self._deadline = _Deadline(self._config.timeout)
        self._watchdog.arm(deadline)
        try:
            yield deadline
        finally:
            self._watchdog.disarm(deadline)
            self._deadline = None
            if drop and deadline.passed:
                with contextlib.suppress(Exception):
                    self._drop()

    def _at(self, step: str, conn: smtplib.SMTP) -> None:
        """The next step, given only the time left of the deadline."""
        self._step = step
        if self._deadline is not None:
            self._deadline.bound(conn)

    def _deliver(self, message: Mail, *, may_retry: bool) -> Receipt:
        sender, recipient, data = message.sender, message.recipient, message.data
        try:
            conn = self._conn or self._open(self._deadline_now())
            self._conn = conn
            self._at("MAIL", conn)
            code, resp = conn.mail(sender)
            if code == 421 and may_retry:
                # The server hung up on our idle connection (Postfix: "421 4.4.2 ... timeout
                # exceeded"); nothing was tried yet: go again on a new one.
                self._drop()
                raise _Stale
            if code != 250:
                raise smtplib.SMTPResponseException(code, resp)
            self._at("RCPT", conn)
            code, resp = conn.rcpt(recipient)
            if code not in (250, 251):
                raise smtplib.SMTPResponseException(code, resp)
            self._at("DATA", conn)
            code, resp = conn.data(data)
            self._deadline_now().check()  # a "250" cut short by the deadline is no 250
            if code != 250:
                raise smtplib.SMTPResponseException(code, resp)
        except smtplib.SMTPServerDisconnected as exc:
            self._drop()
            # A reused connection the server closed while we were idle fails on MAIL: go again.
            # Not after a timeout (the server may be slow, not gone), and not twice.
            timed_out = isinstance(exc.__context__, TimeoutError) or self._passed()
            if may_retry and self._step == "MAIL" and not timed_out:
                raise _Stale from exc
            raise self._mapped(exc) from exc
        except (smtplib.SMTPException, OSError) as exc:
            err = self._mapped(exc)
            if isinstance(err, TemporaryDeliveryError) and err.scope == "transport":
                self._drop()
            else:
                self._reset()
            raise err from exc
        return Receipt(self.name, str(message["Message-ID"]), f"{code} {_reply(resp)}")

    def _deadline_now(self) -> _Deadline:
        if self._deadline is None:  # every caller runs under _bounded
            raise RuntimeError("an SMTP step outside a deadline")
        return self._deadline

    def _passed(self) -> bool:
        return self._deadline is not None and self._deadline.passed

    def _open(self, deadline: _Deadline) -> _Connection:
        cfg = self._config
        context = self._ssl_context() if cfg.security in ("ssl", "starttls") else None
        self._step = "connect"
        conn = _Connection(context if cfg.security == "ssl" else None, self._local_name)
        self._local_name = conn.local_hostname  # socket.getfqdn() once, not per connection
        deadline.watch(conn)
        try:
            code, reply = conn.connect(cfg.host, cfg.port)
            if code != 220:
                raise smtplib.SMTPConnectError(code, reply)
            self._at("EHLO", conn)
            conn.ehlo_or_helo_if_needed()
            if cfg.security == "starttls":
                self._at("STARTTLS", conn)
                if not conn.has_extn("starttls"):
                    # Never fall back to plaintext: the password would travel in the clear.
                    raise smtplib.SMTPNotSupportedError("server offers no STARTTLS")
                conn.starttls(context=context)
                self._at("EHLO", conn)
                conn.ehlo_or_helo_if_needed()
            if cfg.username:
                self._at("AUTH", conn)
                if not conn.has_extn("auth"):
                    if cfg.security == "none" and conn.has_extn("starttls"):
                        raise smtplib.SMTPNotSupportedError(
                            "the server offers AUTH only after STARTTLS: set `security: starttls`"
                        )
                    raise smtplib.SMTPNotSupportedError("the server offers no AUTH")
                _login(conn, cfg.username, cfg.password or "")
        except BaseException:
            conn.close()
            raise
        return conn

    def _ssl_context(self) -> ssl.SSLContext:
        if self._context is None:
            self._step = "TLS setup"
            # Verified always; ca_certs replaces the system's trust store (a local relay).
            self._context = ssl.create_default_context(cafile=self._config.ca_certs)
        return self._context

    def _reset(self) -> None:
        if self._conn is None:
            return
        try:
            self._at(self._step, self._conn)
            code, _ = self._conn.rset()
        except (smtplib.SMTPException, OSError):
            code = 0
        if code != 250:
            self._drop()

    def _drop(self, *, quit: bool = False) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            if quit:
                _quit(conn)
            else:
                conn.close()

    def _mapped(self, exc: BaseException) -> DeliveryError:
        """The one translation of smtplib / ssl / socket errors."""
        step = self._step
        if isinstance(exc, smtplib.SMTPSenderRefused):
            step = "MAIL"
        elif isinstance(exc, smtplib.SMTPRecipientsRefused):
            step = "RCPT"
            code, resp = next(iter(exc.recipients.values()), (0, b""))
            exc = smtplib.SMTPResponseException(code, resp)
        elif isinstance(exc, smtplib.SMTPDataError):
            step = "DATA"

        def err(what: str, *, auth: bool = False) -> TemporaryDeliveryError:
            return TemporaryDeliveryError(
                self._redact(f"smtp {self._where}: {what} ({step})"), scope="transport", auth=auth
            )

        if self._passed():  # the watchdog shut the socket: whatever broke, it was time
            return err(f"timed out after {self._config.timeout:g}s")
        if isinstance(exc, smtplib.SMTPServerDisconnected) and isinstance(
            exc.__context__, TimeoutError
        ):
            exc = exc.__context__  # smtplib reports a read timeout as a disconnect
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return err(f"connection closed: {exc}" if str(exc) else "connection closed")
        if isinstance(exc, smtplib.SMTPResponseException):
            code = exc.smtp_code
            what = f"{code} {_reply(exc.smtp_error)}"
            if step == "AUTH" and code != 421:
                return err(f"login as {self._config.username} refused: {what}", auth=True)
            if step in ("RCPT", "DATA") and code != 421:
                message = self._redact(f"smtp {self._where}: {what} ({step})")
                if 400 <= code < 500:
                    return TemporaryDeliveryError(message, scope="text")
                if 500 <= code < 600:
                    return PermanentDeliveryError(message)
            return err(what)
        if isinstance(exc, smtplib.SMTPException):  # NotSupported, no AUTH method, ...
            if step == "AUTH":
                return err(f"cannot log in as {self._config.username}: {exc}", auth=True)
            return err(str(exc) or type(exc).__name__)
        if isinstance(exc, ssl.SSLCertVerificationError):
            return err(f"TLS certificate not trusted: {exc.verify_message}")
        if isinstance(exc, ssl.SSLError):
            return err(f"TLS: {exc.reason or exc}")
        if isinstance(exc, TimeoutError):
            return err(f"timed out after {self._config.timeout:g}s")
        if isinstance(exc, OSError):
            what = exc.strerror or str(exc) or type(exc).__name__
            return err(f"{what}: {exc.filename}" if exc.filename else what)
        return err(repr(exc))

    def _unexpected(self, exc: BaseException) -> TemporaryDeliveryError:
        """Whatever the mapping above does not know: still ours, with its type and step."""
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return TemporaryDeliveryError(
            self._redact(f"smtp {self._where}: unexpected error ({self._step}): {what}"),
            scope="transport",
            auth=self._step == "AUTH",
        )

    def _redact(self, message: str) -> str:
        """Never let the password (plain or base64, as AUTH sends it) reach a message."""
        password = self._config.password
        if not password:
            return message
        user = self._config.username or ""
        secrets = {
            password,
            base64.b64encode(password.encode()).decode(),
            base64.b64encode(f"\0{user}\0{password}".encode()).decode(),
        }
        for secret in sorted(secrets, key=len, reverse=True):
            message = message.replace(secret, "***")
        return message


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _login(conn: smtplib.SMTP, user: str, password: str) -> None:
    """AUTH with UTF-8 credentials; raises the smtplib errors ``login`` would."""
    offered = conn.esmtp_features.get("auth", "").upper().split()
    secret = password.encode("utf-8")
    for mechanism in ("CRAM-MD5", "PLAIN", "LOGIN"):
        if mechanism not in offered:
            continue
        if mechanism == "CRAM-MD5":
            code, resp = conn.docmd("AUTH", "CRAM-MD5")
            if code == 334:
                challenge = base64.b64decode(resp)
                digest = hmac.new(secret, challenge, "md5").hexdigest()
                code, resp = conn.docmd(_b64(f"{user} {digest}".encode()))
        elif mechanism == "PLAIN":
            token = b"\0" + user.encode("utf-8") + b"\0" + secret
            code, resp = conn.docmd("AUTH", "PLAIN " + _b64(token))
        else:
            code, resp = conn.docmd("AUTH", "LOGIN " + _b64(user.encode("utf-8")))
            if code == 334:
                code, resp = conn.docmd(_b64(secret))
        if code in (235, 503):  # 503: already authenticated
            return
        raise smtplib.SMTPAuthenticationError(code, resp)
    raise smtplib.SMTPException(
        f"no AUTH method we know (CRAM-MD5, PLAIN, LOGIN) among {' '.join(offered) or 'none'}"
    )


def _quit(conn: smtplib.SMTP) -> None:
    try:
        conn.quit()
    except (smtplib.SMTPException, OSError):
        conn.close()


def _reply(resp: bytes | str) -> str:
    text = resp.decode("utf-8", "replace") if isinstance(resp, bytes) else resp
    text = " ".join(text.split())
    return text if len(text) <= _REPLY_LIMIT else text[: _REPLY_LIMIT - 3] + "..."
