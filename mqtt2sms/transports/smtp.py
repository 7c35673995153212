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
import ssl
import threading
import unicodedata
from collections.abc import Callable
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
        self._conn: smtplib.SMTP | None = None
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
        with self._lock:
            try:
                try:
                    return self._deliver(message, may_retry=self._conn is not None)
                except _Stale:
                    return self._deliver(message, may_retry=False)
            except DeliveryError:
                raise
            except Exception as exc:
                with contextlib.suppress(Exception):
                    self._drop()  # in an unknown state: start again on the next send
                raise self._unexpected(exc) from exc

    def close(self) -> None:
        """Say QUIT and drop the connection, if one is open."""
        with self._lock:
            self._drop(quit=True)

    def probe(self) -> str:
        """Connect, EHLO, STARTTLS, log in and QUIT on a connection of its own."""
        with self._lock:
            try:
                conn = self._open()
            except (smtplib.SMTPException, OSError) as exc:
                raise self._mapped(exc) from exc
            except Exception as exc:
                raise self._unexpected(exc) from exc
            with contextlib.suppress(Exception):
                _quit(conn)
        cfg = self._config
        login = f"logged in as {cfg.username}" if cfg.username else "no login"
        return f"{self._where} {cfg.security}, {login}"

    # -- the shell ---------------------------------------------------------------------

    def _deliver(self, message: Mail, *, may_retry: bool) -> Receipt:
        sender, recipient, data = message.sender, message.recipient, message.data
        try:
            conn = self._conn or self._open()
            self._conn = conn
            self._step = "MAIL"
            code, resp = conn.mail(sender)
            if code == 421 and may_retry:
                # The server hung up on our idle connection (Postfix: "421 4.4.2 ... timeout
                # exceeded"); nothing was tried yet: go again on a new one.
                self._drop()
                raise _Stale
            if code != 250:
                raise smtplib.SMTPResponseException(code, resp)
            self._step = "RCPT"
            code, resp = conn.rcpt(recipient)
            if code not in (250, 251):
                raise smtplib.SMTPResponseException(code, resp)
            self._step = "DATA"
            code, resp = conn.data(data)
            if code != 250:
                raise smtplib.SMTPResponseException(code, resp)
        except smtplib.SMTPServerDisconnected as exc:
            self._drop()
            # A reused connection the server closed while we were idle fails on MAIL: go again.
            # Not after a timeout (the server may be slow, not gone), and not twice.
            if may_retry and self._step == "MAIL" and not isinstance(exc.__context__, TimeoutError):
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

    def _open(self) -> smtplib.SMTP:
        cfg = self._config
        context = self._ssl_context() if cfg.security in ("ssl", "starttls") else None
        self._step = "connect"
        conn: smtplib.SMTP
        if cfg.security == "ssl":
            conn = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout, context=context)
        else:
            conn = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
        try:
            self._step = "EHLO"
            conn.ehlo_or_helo_if_needed()
            if cfg.security == "starttls":
                self._step = "STARTTLS"
                if not conn.has_extn("starttls"):
                    # Never fall back to plaintext: the password would travel in the clear.
                    raise smtplib.SMTPNotSupportedError("server offers no STARTTLS")
                conn.starttls(context=context)
                self._step = "EHLO"
                conn.ehlo_or_helo_if_needed()
            if cfg.username:
                self._step = "AUTH"
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
