"""Cost per alert as the throttle state grows: 0 keys held against 18,000.

The engine runs in-process (real SQLite outbox in a temporary folder, a FakeTransport that
answers at once, the real router and throttle), with one rule keyed per sensor and a 1 h
cooldown, as in the issue's report (2,000 alerts: 21 s with no keys held, 66 s with 18,000).
For each run: CPU per alert (process time / alerts), RSS before and after, and the bytes
the throttle save wrote (the size of the WAL growth per save).

    python bench/scale.py                      # 2,000 alerts, with 0 and 18,000 keys held
    python bench/scale.py --alerts 500 --held 0 5000
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mqtt2sms.config import parse_config
from mqtt2sms.engine import Engine
from mqtt2sms.model import Message
from mqtt2sms.outbox import Outbox
from mqtt2sms.transports.fake import FakeTransport

CONFIG = """
contacts:
  alex: {number: "+1 (555) 123-4567", carrier: tmobile}
defaults: {to: [alex]}
limits: {per_recipient: 0, daily_cap: 0}
rules:
  - {name: sensor, topic: "sensors/+", key: "{{ topic }}", cooldown: 1h}
"""


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(alerts: int, held: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        loaded = parse_config(CONFIG, "bench.yaml", {"STATE_DIRECTORY": tmp})
        box = Outbox(os.path.join(tmp, "outbox.sqlite3"))
        fake = FakeTransport("smtp")
        n = 0

        def new_id() -> str:
            nonlocal n
            n += 1
            return f"b{n}"

        engine = Engine(
            loaded.config,
            box,
            {"smtp": fake},
            lambda t, p, r: None,
            lambda m: None,
            tz=dt.UTC,
            threaded=False,
            new_id=new_id,
        )
        engine.start()
        now = dt.datetime.now(dt.UTC)
        for i in range(held):  # keys held: sensors seen within the cooldown
            engine.submit(Message(f"sensors/held{i}", b"on", now, mid=i % 60000 + 1))
            if i % 500 == 0:
                engine.drain()
        engine.drain()
        time.sleep(1.1)
        engine.drain()  # saved
        fake.sent.clear()
        fake.delivered.clear()
        wal = os.path.join(tmp, "outbox.sqlite3-wal")
        rss0 = rss_mb()
        cpu0 = time.process_time()
        wall0 = time.perf_counter()
        wal0 = os.path.getsize(wal) if os.path.exists(wal) else 0
        for i in range(alerts):
            engine.submit(Message(f"sensors/new{i}", b"on", now, mid=i % 60000 + 1))
            engine.drain()
        cpu = time.process_time() - cpu0
        elapsed_s = time.perf_counter() - wall0
        time.sleep(1.1)
        engine.drain()
        wal1 = os.path.getsize(wal) if os.path.exists(wal) else 0
        rss1 = rss_mb()
        engine.stop(0)
        box.close()
        assert len(fake.delivered) == alerts, (len(fake.delivered), alerts)
        return {
            "held": held,
            "alerts": alerts,
            "cpu_ms_per_alert": cpu / alerts * 1000,
            "wall_s": elapsed_s,
            "rss_before_mb": rss0,
            "rss_after_mb": rss1,
            "wal_growth_kb": (wal1 - wal0) / 1024,
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alerts", type=int, default=2000)
    ap.add_argument("--held", type=int, nargs="*", default=[0, 18000])
    args = ap.parse_args()
    rows = [run(args.alerts, h) for h in args.held]
    print("| keys held | alerts | CPU per alert | time for all | RSS before | RSS after |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['held']:,} | {r['alerts']:,} | {r['cpu_ms_per_alert']:.2f} ms |"
            f" {r['wall_s']:.2f} s | {r['rss_before_mb']:.1f} MB | {r['rss_after_mb']:.1f} MB |"
        )


if __name__ == "__main__":
    main()
