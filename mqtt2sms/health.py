"""`mqtt2sms health`: what the watchdog sees, for a container's HEALTHCHECK.

Theory of operation: the daemon's main loop, where it feeds the systemd watchdog, hands
a :class:`Recorder` what it knows each tick (is the sender alive, is it wedged, is the broker
connected); the recorder keeps when the broker went away and writes a :class:`Snapshot` to
``<state_dir>/health.json`` when something changed, or every ``EVERY`` seconds otherwise (a
file rewritten every 5 s would wear a Raspberry Pi's SD card for nothing). The command, run
in another process (``docker exec``, a HEALTHCHECK), reads the file and asks :func:`verdict`.

Times are ``time.monotonic()``: CLOCK_MONOTONIC is system-wide on Linux, so two processes,
in a container or not, read the same clock, and it never steps when NTP fixes a Pi's wall
clock. The wall-clock time in the file is for a person only.

A file can outlive its run. The daemon writes it as soon as it is up (not a tick later), marks
it ``stopped`` at a clean exit, and names its pid with the process's start time (field 22 of
``/proc/PID/stat``) and its pid namespace: the command believes a file only while that pid,
started then, is alive (``os.kill(pid, 0)``), which a kill -9 or a reused pid ends at once.
Read from another pid namespace (the host looking into a container's volume), the pid means
nothing and only the file's age counts.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass

EVERY = 30.0  # seconds between writes when nothing changes


@dataclass(frozen=True)
class Snapshot:
    """The daemon's health at ``mono`` (CLOCK_MONOTONIC seconds)."""

    pid: int
    mono: float
    wall: str  # ISO 8601 UTC, for a person
    sender_alive: bool
    sender_heartbeat: float  # monotonic: the sender's last sign of life
    watchdog_ok: bool  # the watchdog's own view: both loops alive, the sender not wedged
    broker_connected: bool
    broker_down_since: float | None  # monotonic; None while connected
    # Added later (a file without them still reads): a clean exit's mark, and what tells
    # the writer's process from another one that got its pid.
    stopped: bool = False
    pid_start: int | None = None  # field 22 of /proc/PID/stat: clock ticks after boot
    pid_ns: str | None = None  # readlink of /proc/self/ns/pid, e.g. "pid:[4026531836]"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> Snapshot:
        """Raises ValueError on anything that is not a snapshot."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        later = {"stopped", "pid_start", "pid_ns"}
        if not names - later <= set(data) <= names:
            raise ValueError(f"fields {sorted(set(data) ^ names)} missing or unexpected")
        try:
            return cls(
                pid=int(data["pid"]),
                mono=float(data["mono"]),
                wall=str(data["wall"]),
                sender_alive=bool(data["sender_alive"]),
                sender_heartbeat=float(data["sender_heartbeat"]),
                watchdog_ok=bool(data["watchdog_ok"]),
                broker_connected=bool(data["broker_connected"]),
                broker_down_since=(
                    None if data["broker_down_since"] is None else float(data["broker_down_since"])
                ),
                stopped=bool(data.get("stopped", False)),
                pid_start=None if data.get("pid_start") is None else int(data["pid_start"]),
                pid_ns=None if data.get("pid_ns") is None else str(data["pid_ns"]),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad field: {exc}") from exc


@dataclass(frozen=True)
class Limits:
    stale: float = 120.0  # the file is older than this: the main loop is not running
    broker_down: float = 300.0  # the broker has been unreachable this long
    stuck: float = 60.0  # only for the wording: a sender silent this long is called stuck


def verdict(
    snap: Snapshot, now: float, limits: Limits, *, running: bool = True
) -> tuple[bool, str]:
    """Is the daemon healthy at monotonic time ``now``? Returns (ok, a one-line reason).

    ``running``: whether the process the snapshot names is alive (``process_running``).
    Pure: ``now``, ``limits`` and ``running`` come in; nothing is read.
    """
    if snap.stopped:
        return False, f"the daemon (pid {snap.pid}) stopped at {snap.wall}"
    if not running:
        return False, f"the daemon (pid {snap.pid}) is not running"
    age = now - snap.mono
    if age > limits.stale:
        return False, f"no health report for {age:.0f}s (pid {snap.pid}): the daemon is not running"
    if not snap.sender_alive:
        return False, "the sender has stopped"
    if not snap.watchdog_ok:
        busy = now - snap.sender_heartbeat
        if busy > limits.stuck:
            return False, f"the sender is stuck (no sign of life for {busy:.0f}s)"
        return False, "the watchdog is not fed (the MQTT loop has stopped?)"
    if not snap.broker_connected:
        since = snap.broker_down_since if snap.broker_down_since is not None else snap.mono
        down = now - since
        if down > limits.broker_down:
            return False, f"the broker has been unreachable for {down:.0f}s"
        return True, f"ok, but the broker is unreachable (for {down:.0f}s)"
    return True, "ok: sender alive, broker connected"


def write(path: str, snap: Snapshot) -> None:
    """Replace ``path`` atomically: a reader sees the old snapshot or the new one."""
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".health.", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(snap.to_json())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _proc_start(pid: int) -> int | None:
    """The start time of ``pid`` (clock ticks after boot), or None if it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        # the command name (field 2) is in parentheses and may hold spaces and ")"
        return int(stat[stat.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _pid_ns() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def process_running(snap: Snapshot) -> bool:
    """Is the process ``snap`` names alive: the same pid, started at the same time?

    True when it cannot be told (the file was written in another pid namespace, or by a
    version that did not say). Reads /proc and sends signal 0; raises nothing.
    """
    if snap.pid <= 0:
        return False
    if snap.pid_ns is not None and snap.pid_ns != _pid_ns():
        return True  # another namespace: the pid is not ours to look up
    try:
        os.kill(snap.pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass  # EPERM: it exists, as another user
    if snap.pid_start is not None:
        started = _proc_start(snap.pid)
        if started is not None and started != snap.pid_start:
            return False  # the pid was reused by another process
    return True


def read(path: str) -> Snapshot:
    """Raises OSError or ValueError."""
    with open(path, encoding="utf-8") as f:
        return Snapshot.from_json(f.read())


class Recorder:
    """Kept by the daemon: turns what it sees each tick into a snapshot on disk."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._down_since: float | None = time.monotonic()  # not connected yet at start
        self._last: Snapshot | None = None
        self._pid_start = _proc_start(os.getpid())
        self._pid_ns = _pid_ns()

    def tick(
        self,
        sender_alive: bool,
        heartbeat: float,
        fed: bool,
        connected: bool,
        *,
        force: bool = False,
    ) -> None:
        """Never raises: a full disk must not stop the daemon (the file just goes stale).
        ``force``: write even if nothing changed (the first report of a run)."""
        now = time.monotonic()
        if connected:
            self._down_since = None
        elif self._down_since is None:
            self._down_since = now
        snap = Snapshot(
            pid=os.getpid(),
            mono=now,
            wall=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            sender_alive=sender_alive,
            sender_heartbeat=heartbeat,
            watchdog_ok=fed,
            broker_connected=connected,
            broker_down_since=self._down_since,
            pid_start=self._pid_start,
            pid_ns=self._pid_ns,
        )
        last = self._last
        if (
            not force
            and last is not None
            and now - last.mono < EVERY
            and (last.sender_alive, last.watchdog_ok, last.broker_connected)
            == (sender_alive, fed, connected)
        ):
            return
        try:
            write(self.path, snap)
        except OSError:
            return
        self._last = snap

    def stopped(self) -> None:
        """A clean exit: the file says so, and the command says unhealthy at once. Never
        raises."""
        last = self._last
        if last is None:
            return
        with contextlib.suppress(OSError):
            write(self.path, dataclasses.replace(last, mono=time.monotonic(), stopped=True))


def command(state_dir: str, limits: Limits) -> int:
    """Print the verdict; exit 0 when healthy, 1 when not (a HEALTHCHECK's contract)."""
    path = os.path.join(state_dir, "health.json")
    try:
        snap = read(path)
    except FileNotFoundError:
        print(f"unhealthy: no {path} (the daemon has not started)", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"unhealthy: cannot read {path}: {exc}", file=sys.stderr)
        return 1
    ok, reason = verdict(snap, time.monotonic(), limits, running=process_running(snap))
    print(f"{'healthy' if ok else 'unhealthy'}: {reason} (reported {snap.wall})")
    return 0 if ok else 1


def _seconds(text: str) -> float:
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (30s, 5m, 300)") from None


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--broker-down",
        type=_seconds,
        default=Limits.broker_down,
        metavar="TIME",
        help="unhealthy when the broker has been unreachable this long (default 5m)",
    )
    p.add_argument(
        "--stale",
        type=_seconds,
        default=Limits.stale,
        metavar="TIME",
        help="unhealthy when the daemon has not reported for this long (default 2m)",
    )


def limits_of(args: argparse.Namespace) -> Limits:
    return Limits(stale=args.stale, broker_down=args.broker_down)
