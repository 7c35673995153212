"""Soak: a steady stream of alerts while the daemon is SIGKILLed and the SMTP server drops out.

Mosquitto (persistence on) and an SMTP sink (its own process) on 127.0.0.1; the daemon
(`python -m mqtt2sms run`, persistent session, short retries). A publisher sends `--rate`
alerts per second at QoS 1, each with a unique sequence number, for `--seconds`. Meanwhile
the daemon is killed with SIGKILL `--kills` times at random moments and restarted after a
short pause, and the sink now and then stops for a few seconds, or answers 451 (try again)
or 421 (closing) to DATA for a while. At the end the queue is given `--drain` seconds to
empty, and the script prints how many alerts were published (acknowledged by the broker),
delivered (unique sequence numbers the sink received), lost and duplicated.

    python bench/soak.py                         # 120 s, 12 kills
    python bench/soak.py --seconds 60 --kills 10 --seed 1
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, Mosquitto, SinkProc, machine, mqtt_client, payload, port_open, wait_for


class Daemon:
    def __init__(self, work: Path, broker_port: int, smtp_port: int) -> None:
        self.work = work
        self.state = work / "state"
        self.state.mkdir(parents=True)
        self.config = work / "config.yaml"
        self.config.write_text(
            textwrap.dedent(
                f"""\
                mqtt: {{host: 127.0.0.1, port: {broker_port}, client_id: mqtt2sms-soak}}
                smtp:
                  host: 127.0.0.1
                  port: {smtp_port}
                  security: none
                  from: alerts@example.org
                  timeout: 5s
                contacts:
                  alex: {{number: "+1 (555) 123-4567", carrier: tmobile}}
                defaults: {{to: [alex]}}
                limits:
                  per_recipient: 0
                  daily_cap: 0
                  retry: {{first: 0.2s, max: 2s}}
                alert_topic: null
                rules:
                  - {{name: soak, topic: "bench/#", to: [alex]}}
                """
            )
        )
        self.log = work / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        env = {**os.environ, "STATE_DIRECTORY": str(self.state), "PYTHONUNBUFFERED": "1"}
        env.pop("NOTIFY_SOCKET", None)
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mqtt2sms", "run", "-c", str(self.config)],
                cwd=self.work,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=logf,
            )
        self.starts += 1

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                return None
        return self.proc.returncode


class Publisher(threading.Thread):
    def __init__(self, port: int, rate: float, seconds: float) -> None:
        super().__init__(name="publisher", daemon=True)
        self.client = mqtt_client(port, f"soak-pub-{os.getpid()}")
        self.rate = rate
        self.seconds = seconds
        self.infos: dict[int, Any] = {}

    def run(self) -> None:
        start = time.monotonic()
        n = int(self.rate * self.seconds)
        for seq in range(1, n + 1):
            delay = start + (seq - 1) / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.infos[seq] = self.client.publish("bench/soak", payload(seq), qos=1)

    def published(self, timeout: float = 30) -> set[int]:
        """Sequence numbers the broker acknowledged (PUBACK)."""
        deadline = time.monotonic() + timeout
        for info in self.infos.values():
            left = deadline - time.monotonic()
            if left > 0 and not info.is_published():
                with contextlib.suppress(RuntimeError, ValueError):
                    info.wait_for_publish(left)
        return {seq for seq, info in self.infos.items() if info.is_published()}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def schedule(
    rng: random.Random, seconds: float, kills: int, outages: int
) -> list[tuple[float, str]]:
    """(time, action) pairs: `kill` moments at least 1.5 s apart, and sink outages."""
    kill_times: list[float] = []
    for _ in range(10_000):
        if len(kill_times) == kills:
            break
        t = rng.uniform(2.0, max(3.0, seconds - 2.0))
        if all(abs(t - k) >= 1.5 for k in kill_times):
            kill_times.append(t)
    events = [(t, "kill") for t in kill_times]
    modes = ["stop", "451", "421"]
    if outages:
        span = seconds / outages
        for i in range(outages):
            t = i * span + rng.uniform(0.2, 0.6) * span
            events.append((t, f"sink-{modes[i % 3]}"))
    return sorted(events)


def main() -> int:
    ap = argparse.ArgumentParser(
        description="Soak: SIGKILLs and SMTP outages under a steady stream of alerts.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent(__doc__ or "").split("\n\n", 1)[1],
    )
    ap.add_argument("--seconds", type=float, default=120.0, help="how long alerts are published")
    ap.add_argument("--rate", type=float, default=20.0, help="alerts per second")
    ap.add_argument("--kills", type=int, default=12, help="SIGKILLs of the daemon")
    ap.add_argument("--outages", type=int, default=0, help="SMTP outages (default: seconds/15)")
    ap.add_argument("--outage-seconds", type=float, default=4.0, help="length of each outage")
    ap.add_argument("--drain", type=float, default=120.0, help="max seconds to wait at the end")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    ap.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else random.randrange(1_000_000)
    rng = random.Random(seed)
    outages = a.outages or max(1, int(a.seconds // 15))
    plan = schedule(rng, a.seconds, a.kills, outages)

    with tempfile.TemporaryDirectory(prefix="mqtt2sms-soak-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "mosquitto", persistence=True)
        broker.start()
        sink = SinkProc(work)
        sink.start()
        daemon = Daemon(work / "daemon", broker.port, sink.port)
        daemon.start()
        pub: Publisher | None = None
        kills = 0
        sink_events: list[str] = []
        exit_code: int | None = None
        log_tail = ""
        try:
            time.sleep(1.0)  # let the first start subscribe (its session then persists)
            pub = Publisher(broker.port, a.rate, a.seconds)
            t0 = time.monotonic()
            pub.start()
            restore: list[tuple[float, str]] = []
            pending = list(plan)
            while pending or restore:
                now = time.monotonic() - t0
                for item in sorted(restore):
                    if item[0] <= now:
                        restore.remove(item)
                        if item[1] == "sink-start":
                            sink.start()
                        else:
                            sink.set_mode("ok")
                if pending and pending[0][0] <= now:
                    _t, action = pending.pop(0)
                    if action == "kill":
                        daemon.kill()
                        kills += 1
                        time.sleep(rng.uniform(0.2, 1.5))
                        daemon.start()
                    elif action == "sink-stop":
                        sink.stop()
                        sink_events.append("stopped")
                        restore.append((now + a.outage_seconds, "sink-start"))
                    else:
                        code = action.split("-")[1]
                        sink.set_mode(code)
                        sink_events.append(f"answered {code}")
                        restore.append((now + a.outage_seconds, "sink-ok"))
                time.sleep(0.02)
            pub.join(a.seconds + 30)
            published = pub.published()
            if not port_open(sink.port):
                sink.start()
            sink.set_mode("ok")
            print(f"published {len(published)}; draining (at most {a.drain:g} s) ...", flush=True)

            def drained() -> bool:
                return published <= {seq for _t, seq, _s in sink.received()}

            try:
                wait_for(drained, a.drain, "the queue to drain")
            except TimeoutError as exc:
                print(exc, flush=True)
            time.sleep(2.0)  # late duplicates
            exit_code = daemon.stop()
        finally:
            daemon.kill()
            if pub is not None:
                pub.close()
            sink.stop()
            broker.stop()
            log_text = daemon.log.read_text(errors="replace") if daemon.log.exists() else ""
            log_tail = "\n".join(
                line for line in log_text.splitlines() if "Traceback" in line or "ERROR" in line
            )
        counts = Counter(seq for _t, seq, _s in sink.received())

    delivered = {s for s in counts if s in published}
    lost = sorted(published - delivered)
    dup_seqs = [s for s, c in counts.items() if c > 1]
    extra = sum(c - 1 for c in counts.values() if c > 1)
    rows = [
        ("alerts published (PUBACK from the broker)", str(len(published))),
        ("delivered (unique seqs at the sink)", str(len(delivered))),
        ("lost (published, never received)", str(len(lost))),
        ("duplicated (seqs received more than once)", f"{len(dup_seqs)} ({extra} extra mails)"),
        ("SIGKILLs", str(kills)),
        ("duplicates per kill", f"{extra / kills:.2f}" if kills else "-"),
        ("SMTP outages", f"{len(sink_events)} × {a.outage_seconds:g} s: {', '.join(sink_events)}"),
        ("daemon exit code at the end (SIGTERM)", str(exit_code)),
    ]
    table = "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
    print(table)
    if lost:
        print("lost seqs:", lost[:50], "..." if len(lost) > 50 else "")
    errors = len(log_tail.splitlines()) if log_tail else 0
    print(f"daemon log: {errors} ERROR/Traceback line(s)")
    if log_tail:
        print(log_tail[-4000:])
    if not a.no_doc:
        from e2e import write_section

        m = machine()
        cmd = " ".join(["python", "bench/soak.py", *sys.argv[1:]])
        body = (
            f"- machine: {m['cpus']} × {m['model']}, Python {m['python']};"
            f" load average at the end {m['load']}\n"
            f"- mqtt2sms tree: {m['rev']}\n"
            f"- versions: paho-mqtt {m['paho']}, Mosquitto {m['mosquitto']},"
            f" mqtt2sms {m['mqtt2sms']}\n"
            f"- command: `{cmd}` (seed {seed}): {a.rate:g} alerts/s for {a.seconds:g} s\n"
            f"- date: {m['date']}\n\n{table}\n\n"
            f"Daemon log: {errors} ERROR or Traceback line(s) (the outages log errors by design)."
            + (f"\n\nLost seqs: {lost[:50]}" if lost else "")
            + "\n"
        )
        write_section(ROOT / "docs" / "benchmarks.md", "soak", body)
        print("docs/benchmarks.md updated")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
