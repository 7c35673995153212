"""The durable outbox: one SQLite row per text (one SMS part to one recipient).

Theory of operation. A healthy alert is sent first and written here only afterwards, as
history (state ``sent``), off the alert's path. A text that cannot leave at once is
committed here (``synchronous=FULL``: it survives a power cut) before its MQTT message is
acknowledged. The row then moves along this table, and nowhere else::

    queued  -> sending                      (a try starts)
    sending -> sent | queued | failed | expired
    queued  -> failed | expired             (dropped by the user; too old)

``queued`` rows carry ``next_at`` (when to try) and ``reason``: ``new`` (never tried),
``transport`` (the way out is down: the transport backs off, not the text), ``retry`` (a
4xx for this text alone), ``quiet`` (quiet hours: keeps its time across restarts).
A row left in ``sending`` by a crash is queued again at the next start.

Times (``created_at``, ``next_at``, ``first_fail_at``, ``finished_at``) are seconds on the
elapsed axis (``elapsed.py``), which does not step with the wall clock; ``hold_until`` is the
wall-clock end of the quiet hours that hold a ``quiet`` row, from which its ``next_at`` is
recomputed at a start, a reload and a clock step. The throttle's per-key state lives in the
``cooldowns`` and ``recent`` tables, one row a key, so a save writes only what changed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import ParamSpec, TypeVar

from mqtt2sms.errors import StorageError, TransitionError
from mqtt2sms.model import Text
from mqtt2sms.texts import TRANSITIONS, Record

_P = ParamSpec("_P")
_R = TypeVar("_R")

OPEN_STATES = ("queued", "sending")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS texts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    alert_id TEXT NOT NULL,
    rule TEXT NOT NULL,
    key TEXT NOT NULL,
    recipient TEXT NOT NULL,
    via TEXT NOT NULL,
    via_index INTEGER NOT NULL DEFAULT 0,
    addresses TEXT NOT NULL,
    body TEXT NOT NULL,
    subject TEXT,
    priority TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT 'new',
    created_at REAL NOT NULL,
    next_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    first_fail_at REAL,
    last_error TEXT,
    finished_at REAL,
    transport TEXT,
    remote_id TEXT,
    mid INTEGER,
    digest TEXT,
    epoch INTEGER
);
CREATE INDEX IF NOT EXISTS texts_open ON texts(next_at) WHERE state IN ('queued', 'sending');
CREATE INDEX IF NOT EXISTS texts_open_age ON texts(created_at)
    WHERE state IN ('queued', 'sending');
CREATE INDEX IF NOT EXISTS texts_finished ON texts(finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS texts_epoch ON texts(epoch, mid);
CREATE INDEX IF NOT EXISTS texts_awaiting_report ON texts(transport, finished_at)
    WHERE state = 'sent' AND remote_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cooldowns (
    rule TEXT NOT NULL,
    key TEXT NOT NULL,
    last_sent REAL NOT NULL,
    suppressed INTEGER NOT NULL DEFAULT 0,
    digest TEXT,
    PRIMARY KEY (rule, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS recent (recipient TEXT PRIMARY KEY, times TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS incidents (
    code TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    ended_e REAL,
    data TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS topics (
    topic TEXT PRIMARY KEY,
    retained TEXT,
    live TEXT
) WITHOUT ROWID;
"""

# Columns added after the first release: (name, declaration), added to an older file at open.
_ADDED_COLUMNS = (("hold_until", "REAL"), ("arrival", "REAL"), ("incident", "TEXT"))
# Likewise for the cooldowns: the digest of the text that started a cooldown (None: unknown).
_ADDED_COOLDOWN_COLUMNS = (("digest", "TEXT"),)


def ts(t: dt.datetime) -> float:
    return t.timestamp()


def from_ts(x: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(x, dt.UTC)


Row = Record  # a row is a text's one record (texts.py)

_FIELDS = tuple(f.name for f in dataclasses.fields(Record))
_COLUMNS = ", ".join(_FIELDS)


def _row(r: tuple[object, ...]) -> Record:
    d = dict(zip(_FIELDS, r, strict=True))
    d["via"] = tuple(json.loads(str(d["via"])))
    d["addresses"] = json.loads(str(d["addresses"]))
    return Record(**d)  # type: ignore[arg-type]


def _as_record(item: Record | tuple[Text, Mapping[str, object]]) -> Record:
    if isinstance(item, Record):
        return item
    text, fields = item
    return Record.of(text, **{"state": "queued", **fields})


OutboxError = TransitionError  # the name the CLI and older tests use


class Outbox:
    """The SQLite file ``<state_dir>/outbox.sqlite3``. One connection per user of it."""

    def __init__(self, path: str) -> None:
        self.path = path
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, mode=0o700, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA busy_timeout=10000")
        self.db.execute("PRAGMA cache_size=-512")  # KiB: the hot rows are few; RSS matters
        # the WAL is copied back (with fsyncs) by `checkpoint` while the engine is idle; the
        # automatic one, inside a commit on an alert's path, is only the bound (16 MB)
        self.db.execute("PRAGMA wal_autocheckpoint=4000")
        self.db.executescript(_SCHEMA)
        have = {str(r[1]) for r in self.db.execute("PRAGMA table_info(texts)")}
        for name, decl in _ADDED_COLUMNS:
            if name not in have:
                self.db.execute(f"ALTER TABLE texts ADD COLUMN {name} {decl}")
        have = {str(r[1]) for r in self.db.execute("PRAGMA table_info(cooldowns)")}
        for name, decl in _ADDED_COOLDOWN_COLUMNS:
            if name not in have:
                self.db.execute(f"ALTER TABLE cooldowns ADD COLUMN {name} {decl}")

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def _tx(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction. ``durable=False`` commits without an fsync: it survives the process
        being killed (the OS has the WAL pages), only a power cut can lose it."""
        db = self.db
        if not durable:
            db.execute("PRAGMA synchronous=NORMAL")
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            if not durable:
                db.execute("PRAGMA synchronous=FULL")

    # -- writing ---------------------------------------------------------------------------

    def _insert(self, records: Iterable[Record], durable: bool = True) -> None:
        with self._tx(durable) as db:
            _insert_into(db, records)

    def enqueue(self, items: Sequence[Record | tuple[Text, Mapping[str, object]]]) -> None:
        """Commit texts that could not leave at once (durable before the MQTT ack). An item
        is a record, or a routed text with the fields to set (state ``queued`` unless said)."""
        self._insert(_as_record(i) for i in items)

    def record(self, items: Sequence[Record | tuple[Text, Mapping[str, object]]]) -> None:
        """Write finished texts (sent at once, or failed) as history, without an fsync.

        Recognising a redelivery after a crash needs this record, and an alert's path needs
        no fsync: only a power cut can lose it, and then the worst case is one duplicate."""
        self._insert((_as_record(i) for i in items), durable=False)

    def update(self, text_id: str, new_state: str, **fields: object) -> None:
        """Move a row along the state table; raises TransitionError for a transition it forbids.

        The check and the write are one transaction, so the daemon and a `queue` command
        cannot both move the same row."""
        sources = [s for s, targets in TRANSITIONS.items() if new_state in targets]
        sets = "".join(f", {k} = :{k}" for k in fields)
        marks = ", ".join(f":src{i}" for i in range(len(sources)))
        sql = f"UPDATE texts SET state = :state{sets} WHERE id = :id AND state IN ({marks})"
        params = {"state": new_state, "id": text_id, **fields}
        params.update({f"src{i}": src for i, src in enumerate(sources)})
        with self._tx() as db:
            if db.execute(sql, params).rowcount == 1:
                return
            cur = db.execute("SELECT state FROM texts WHERE id = ?", (text_id,)).fetchone()
        if cur is None:
            raise TransitionError(f"no text {text_id}")
        raise TransitionError(f"text {text_id}: {cur[0]} -> {new_state} is not allowed")

    def requeue_on_start(self, now: dt.datetime, sending: bool = True) -> int:
        """After a start (``sending``: rows a crash left `sending` are queued again) or a
        reload (not ``sending``: those rows are being sent right now): every text waiting on
        a retry backoff is tried at once (quiet-hours deferrals keep their time)."""
        with self._tx():
            c = self.db.execute(
                "UPDATE texts SET state = 'queued', next_at = ? WHERE (? AND state = 'sending')"
                " OR (state = 'queued' AND reason IN ('retry', 'transport') AND next_at > ?)",
                (ts(now), int(sending), ts(now)),
            )
        return c.rowcount

    def release(self, now: float) -> int:
        """Texts held for a way out that backs off are due at ``now`` (it works again)."""
        with self._tx():
            c = self.db.execute(
                "UPDATE texts SET next_at = ? WHERE state = 'queued' AND reason = 'transport'"
                " AND next_at > ?",
                (now, now),
            )
        return c.rowcount

    def retry_now(self, text_id: str, now: dt.datetime) -> None:
        """`queue retry ID`: an open text is tried now; a failed or expired one starts over."""
        row = self.get(text_id)
        if row is None:
            raise TransitionError(f"no text {text_id}")
        if row.state in OPEN_STATES:
            with self._tx():
                self.db.execute(
                    "UPDATE texts SET next_at = ?, reason = 'new' WHERE id = ?", (ts(now), text_id)
                )
            return
        if row.state == "sent":
            raise TransitionError(f"text {text_id} was sent already")
        self.update(
            text_id,
            "queued",
            next_at=ts(now),
            created_at=ts(now),
            reason="new",
            attempts=0,
            via_index=0,
            first_fail_at=None,
            finished_at=None,
        )

    def prune(self, before: dt.datetime) -> int:
        with self._tx():
            c = self.db.execute(
                "DELETE FROM texts WHERE finished_at IS NOT NULL AND finished_at < ?",
                (ts(before),),
            )
        return c.rowcount

    def expire(self, created_before: dt.datetime, now: dt.datetime) -> list[Record]:
        """Expire open texts created before ``created_before``; return them as they were.

        A text held by quiet hours is not aged while held: its age counts from the end of
        the window (the engine sets ``created_at`` then)."""
        rows = [
            _row(r)
            for r in self.db.execute(
                f"SELECT {_COLUMNS} FROM texts INDEXED BY texts_open_age"
                " WHERE state IN ('queued', 'sending') AND created_at < ? AND reason != 'quiet'"
                " ORDER BY seq",
                (ts(created_before),),
            )
        ]
        if rows:
            with self._tx():
                self.db.executemany(
                    "UPDATE texts SET state = 'expired', finished_at = ?,"
                    " last_error = coalesce(last_error, 'expired') WHERE id = ?",
                    [(ts(now), r.id) for r in rows],
                )
        return rows

    def reschedule_held(self, e_now: float, wall_now: float, until: float | None) -> int:
        """Quiet-hours rows: due at ``e_now`` plus what is left of their wall-clock hold.

        ``until`` (a wall time) replaces every row's ``hold_until`` when given (the quiet
        hours changed at a reload); a hold already over is due now."""
        with self._tx():
            if until is not None:
                self.db.execute(
                    "UPDATE texts SET hold_until = ? WHERE state = 'queued' AND reason = 'quiet'",
                    (until,),
                )
            c = self.db.execute(
                "UPDATE texts SET next_at = ? + max(0, coalesce(hold_until, 0) - ?)"
                " WHERE state = 'queued' AND reason = 'quiet'",
                (e_now, wall_now),
            )
        return c.rowcount

    def load_throttle(
        self,
    ) -> tuple[dict[tuple[str, str], tuple[float, int]], dict[str, tuple[float, ...]]]:
        """The per-key throttle state: (rule, key) -> (last_sent, suppressed), and
        recipient -> acceptance instants (elapsed axis). The engine reads cooldowns one key at
        a time (``get_cooldown``); this reads them all, for inspection."""
        cooldowns = {
            (str(r), str(k)): (float(t), int(n))
            for r, k, t, n in self.db.execute(
                "SELECT rule, key, last_sent, suppressed FROM cooldowns"
            )
        }
        return cooldowns, self.load_recent()

    def load_recent(self) -> dict[str, tuple[float, ...]]:
        """Recipient -> the instants of its texts inside the rate window (elapsed axis)."""
        recent: dict[str, tuple[float, ...]] = {}
        for name, times in self.db.execute("SELECT recipient, times FROM recent"):
            try:
                recent[str(name)] = tuple(float(x) for x in json.loads(str(times)))
            except (ValueError, TypeError):
                continue
        return recent

    def get_cooldown(self, rule: str, key: str) -> tuple[float, int, str | None] | None:
        """(last_sent, suppressed, the digest of the text that started it), or None."""
        r = self.db.execute(
            "SELECT last_sent, suppressed, digest FROM cooldowns WHERE rule = ? AND key = ?",
            (rule, key),
        ).fetchone()
        return None if r is None else (float(r[0]), int(r[1]), None if r[2] is None else str(r[2]))

    def cooldown_keys(self) -> list[tuple[str, str]]:
        return [(str(r), str(k)) for r, k in self.db.execute("SELECT rule, key FROM cooldowns")]

    def prune_cooldowns(self, rules: Iterable[str], before: float) -> int:
        """Forget the cooldowns of rules that are gone, and those last sent before ``before``
        with nothing suppressed since (a text with " (+N more)" still owes its count)."""
        names = list(rules)
        marks = ", ".join("?" for _ in names) or "NULL"
        with self._tx(durable=False):
            c = self.db.execute(
                f"DELETE FROM cooldowns WHERE rule NOT IN ({marks})"
                " OR (suppressed = 0 AND last_sent < ?)",
                (*names, before),
            )
        return c.rowcount

    def save_throttle(
        self,
        cooldowns: Mapping[tuple[str, str], tuple[float, int, str | None] | None],
        recent: Mapping[str, tuple[float, ...] | None],
        kv: Mapping[str, str],
    ) -> None:
        """Write what changed (None deletes; a cooldown is (last_sent, suppressed, digest)),
        with the counters, in one transaction without an fsync: a kill loses nothing, a
        power cut at most the last second's counts."""
        with self._tx(durable=False) as db:
            gone = [k for k, v in cooldowns.items() if v is None]
            if gone:
                db.executemany("DELETE FROM cooldowns WHERE rule = ? AND key = ?", gone)
            db.executemany(
                "INSERT INTO cooldowns (rule, key, last_sent, suppressed, digest)"
                " VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(rule, key) DO UPDATE SET last_sent = excluded.last_sent,"
                " suppressed = excluded.suppressed, digest = excluded.digest",
                [(r, k, *v) for (r, k), v in cooldowns.items() if v is not None],
            )
            db.executemany(
                "DELETE FROM recent WHERE recipient = ?",
                [(n,) for n, v in recent.items() if not v],
            )
            db.executemany(
                "INSERT INTO recent (recipient, times) VALUES (?, ?) ON CONFLICT(recipient)"
                " DO UPDATE SET times = excluded.times",
                [(n, json.dumps(list(v))) for n, v in recent.items() if v],
            )
            db.executemany(
                "INSERT INTO kv (k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                list(kv.items()),
            )

    # -- reading ---------------------------------------------------------------------------

    def due(self, now: dt.datetime, limit: int = 200) -> list[Record]:
        """Queued rows whose time has come, in queue order: the order their messages arrived
        (``arrival``, set by the engine: rows of a message whose first try was still out when
        later ones were committed come after them in ``seq``), else ``seq``."""
        return [
            _row(r)
            for r in self.db.execute(
                f"SELECT {_COLUMNS} FROM texts INDEXED BY texts_open"
                " WHERE state IN ('queued', 'sending') AND next_at <= ? AND state = 'queued'"
                " ORDER BY arrival, seq LIMIT ?",
                (ts(now), limit),
            )
        ]

    def next_due(self, after: float | None = None) -> float | None:
        """The earliest ``next_at`` of an open row (later than ``after`` when given)."""
        r = self.db.execute(
            "SELECT min(next_at) FROM texts WHERE state IN ('queued', 'sending') AND next_at > ?",
            (-1e300 if after is None else after,),
        ).fetchone()
        return None if r is None or r[0] is None else float(r[0])

    def awaiting_reports(self, transport: str, since: float, limit: int = 100) -> list[str]:
        """Remote ids of texts ``transport`` took since ``since`` with no final report yet."""
        return [
            str(r[0])
            for r in self.db.execute(
                "SELECT remote_id FROM texts INDEXED BY texts_awaiting_report"
                " WHERE state = 'sent' AND remote_id IS NOT NULL AND transport = ?"
                " AND finished_at >= ? ORDER BY finished_at LIMIT ?",
                (transport, since, limit),
            )
        ]

    def by_remote(self, transport: str, remote_id: str) -> Record | None:
        r = self.db.execute(
            f"SELECT {_COLUMNS} FROM texts INDEXED BY texts_awaiting_report"
            " WHERE state = 'sent' AND remote_id IS NOT NULL AND transport = ? AND remote_id = ?",
            (transport, remote_id),
        ).fetchone()
        return None if r is None else _row(r)

    def get(self, text_id: str) -> Record | None:
        r = self.db.execute(f"SELECT {_COLUMNS} FROM texts WHERE id = ?", (text_id,)).fetchone()
        return None if r is None else _row(r)

    def open_rows(self) -> list[Record]:
        return [
            _row(r)
            for r in self.db.execute(
                f"SELECT {_COLUMNS} FROM texts INDEXED BY texts_open"
                " WHERE state IN ('queued', 'sending') ORDER BY seq"
            )
        ]

    def recent(self, limit: int = 50) -> list[Record]:
        return [
            _row(r)
            for r in self.db.execute(
                f"SELECT {_COLUMNS} FROM texts ORDER BY seq DESC LIMIT ?", (limit,)
            )
        ]

    def queued_count(self) -> int:
        r = self.db.execute(
            "SELECT count(*) FROM texts WHERE state IN ('queued', 'sending')"
        ).fetchone()
        return int(r[0])

    def handled(self, mid: int, digest: str, since_epoch: int) -> list[tuple[str, str]]:
        """(rule, recipient) of each text already written for the message with packet id
        ``mid`` and ``digest``, when the newest message written with that id since run
        ``since_epoch`` (the start of the broker session) is that one; else nothing.

        A redelivered message is the newest use of its packet id (the broker reuses an id
        only once the message is acknowledged), so older messages that had the same id and
        payload are never taken for it."""
        r = self.db.execute(
            "SELECT alert_id, digest FROM texts WHERE mid = ? AND epoch >= ?"
            " ORDER BY seq DESC LIMIT 1",
            (mid, since_epoch),
        ).fetchone()
        if r is None or str(r[1]) != digest:
            return []
        return [
            (str(rule), str(rcpt))
            for rule, rcpt in self.db.execute(
                "SELECT rule, recipient FROM texts WHERE alert_id = ? AND mid = ? ORDER BY seq",
                (r[0], mid),
            )
        ]

    def load_topics(self) -> dict[str, tuple[str | None, str | None]]:
        """Topic -> (digest of the last retained message acted on, of the last live one)."""
        return {
            str(t): (None if r is None else str(r), None if v is None else str(v))
            for t, r, v in self.db.execute("SELECT topic, retained, live FROM topics")
        }

    def save_topics(self, changes: Mapping[str, tuple[str | None, str | None] | None]) -> None:
        """Write the topics' digests that changed (None deletes), without an fsync."""
        with self._tx(durable=False) as db:
            db.executemany(
                "DELETE FROM topics WHERE topic = ?", [(t,) for t, v in changes.items() if not v]
            )
            db.executemany(
                "INSERT INTO topics (topic, retained, live) VALUES (?, ?, ?)"
                " ON CONFLICT(topic) DO UPDATE SET retained = excluded.retained,"
                " live = excluded.live",
                [(t, v[0], v[1]) for t, v in changes.items() if v],
            )

    # -- incidents (incidents.py decides; each is one row of JSON, its code the key) --------

    def incidents(self, open_only: bool = True) -> list[str]:
        """The stored incidents (JSON, ``incidents.from_json`` reads them), oldest first."""
        where = " WHERE state IN ('open', 'acked')" if open_only else ""
        sql = f"SELECT data FROM incidents{where} ORDER BY json_extract(data, '$.opened_e')"
        return [str(r[0]) for r in self.db.execute(sql)]

    def incident_codes(self) -> set[str]:
        """Every code the outbox remembers (open, or ended within ``limits.keep``)."""
        return {str(r[0]) for r in self.db.execute("SELECT code FROM incidents")}

    def save_incident(
        self,
        code: str,
        state: str,
        ended_e: float | None,
        data: str,
        texts: Sequence[Record] = (),
        drop_waiting: str | None = None,
    ) -> list[tuple[str, str]]:
        """In one durable transaction: write the incident, drop its texts still waiting
        (``drop_waiting``: the reason; they become ``failed``, never sent) and queue its new
        ``texts``. Returns the (way out, remote id) of its texts a phone gateway may still
        hold, to be cancelled there."""
        held: list[tuple[str, str]] = []
        with self._tx() as db:
            db.execute(
                "INSERT INTO incidents (code, state, ended_e, data) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(code) DO UPDATE SET state = excluded.state,"
                " ended_e = excluded.ended_e, data = excluded.data",
                (code, state, ended_e, data),
            )
            if drop_waiting is not None:
                db.execute(
                    "UPDATE texts SET state = 'failed', last_error = ?, finished_at = next_at"
                    " WHERE incident = ? AND state = 'queued'",
                    (drop_waiting, code),
                )
                held = [
                    (str(t), str(r))
                    for t, r in db.execute(
                        "SELECT transport, remote_id FROM texts WHERE incident = ?"
                        " AND state = 'sent' AND remote_id IS NOT NULL",
                        (code,),
                    )
                ]
            _insert_into(db, texts)
        return held

    def prune_incidents(self, before: float) -> int:
        """Forget incidents that ended before ``before`` (elapsed): their codes are free."""
        with self._tx():
            c = self.db.execute(
                "DELETE FROM incidents WHERE ended_e IS NOT NULL AND ended_e < ?", (before,)
            )
        return c.rowcount

    def checkpoint(self) -> None:
        """Copy the WAL back into the database (PASSIVE: never waits for a reader)."""
        self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def data_version(self) -> int:
        """Changes when another connection (the `queue` command) commits."""
        return int(self.db.execute("PRAGMA data_version").fetchone()[0])

    def get_kv(self, k: str) -> str | None:
        r = self.db.execute("SELECT v FROM kv WHERE k = ?", (k,)).fetchone()
        return None if r is None else str(r[0])

    def set_kv(self, items: dict[str, str], durable: bool = True) -> None:
        with self._tx(durable):
            self.db.executemany(
                "INSERT INTO kv (k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                list(items.items()),
            )


def _insert_into(db: sqlite3.Connection, records: Iterable[Record]) -> None:
    names = [f for f in _FIELDS if f != "seq"]
    sql = (
        f"INSERT OR IGNORE INTO texts ({', '.join(names)})"
        f" VALUES ({', '.join(':' + n for n in names)})"
    )
    rows = []
    for rec in records:
        d = {n: getattr(rec, n) for n in names}
        d["via"] = json.dumps(list(rec.via))
        d["addresses"] = json.dumps(dict(rec.addresses))
        rows.append(d)
    db.executemany(sql, rows)


def _translating(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """The one boundary where SQLite's and the OS's errors become ``StorageError``."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return fn(*args, **kwargs)
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(str(exc) or type(exc).__name__) from exc

    return wrapper


# every public method (and opening the file) raises StorageError, never a library error
for _name, _member in list(vars(Outbox).items()):
    if callable(_member) and (_name == "__init__" or not _name.startswith("_")):
        setattr(Outbox, _name, _translating(_member))
