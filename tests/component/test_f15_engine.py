"""Issue 15 in the engine, in-process (real SQLite outbox, fake transports and clocks, as in
test_engine.py): a wet leak sensor on a `priority: high` rule texts once per cooldown, across a
restart too; an outbox written by an older version (no digest column) is migrated at open; a
dry run is never counted as sent.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mqtt2sms import elapsed, throttle
from mqtt2sms.outbox import Outbox
from mqtt2sms.transports.base import Receipt

from .test_engine import Rig

LEAK = (
    "rules:\n"
    "  - {name: leak, topic: 'home/+/leak', message: 'Water leak: {{ topic_parts[1] }}',"
    " cooldown: 15m, priority: high}\n"
)


def test_a_repeating_high_priority_text_is_held_across_a_restart(tmp_path: Path) -> None:
    rig = Rig(tmp_path, LEAK)
    rig.send('{"water_leak": true}', "home/basement/leak")
    rig.tick(30)
    rig.send('{"water_leak": true}', "home/basement/leak")
    rig.tick(2)  # saved to the outbox, then read back from it after the restart
    rig.restart()
    rig.tick(30)
    rig.send('{"water_leak": true}', "home/basement/leak")
    assert rig.bodies(rig.smtp) == ["Water leak: basement"]
    assert len(rig.events("suppressed")) == 2
    rig.tick(10)
    rig.send('{"water_leak": true}', "home/attic/leak")  # another key: its own cooldown
    rig.send("{}", "home/basement/leak")  # same text: still held
    assert rig.bodies(rig.smtp) == ["Water leak: basement", "Water leak: attic"]
    rig.tick(15 * 60)
    rig.send("{}", "home/basement/leak")
    assert rig.bodies(rig.smtp)[-1] == "Water leak: basement (+3 more)"
    rig.engine.stop(0)
    rig.outbox.close()


def test_an_older_outbox_gains_the_digest_column_and_its_entries_pass_high(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "outbox.sqlite3")
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE cooldowns (rule TEXT NOT NULL, key TEXT NOT NULL, last_sent REAL NOT NULL,"
        " suppressed INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (rule, key)) WITHOUT ROWID;"
        "INSERT INTO cooldowns VALUES ('leak', 'k', 100.0, 2);"
    )
    db.commit()
    db.close()
    box = Outbox(path)
    assert box.get_cooldown("leak", "k") == (100.0, 2, None)
    entry = throttle.CooldownEntry(elapsed.instant(100.0), 2, None)
    state = throttle.ThrottleState(cooldowns={("leak", "k"): entry})
    # unknown text: a high-priority message passes, as it did before the upgrade
    now = elapsed.instant(130.0)
    assert throttle.check_cooldown(state, "leak", "k", 900, "high", now, text_digest="d").allowed
    box.save_throttle({("leak", "k"): (200.0, 0, "d")}, {}, {})
    box.close()
    again = Outbox(path)
    assert again.get_cooldown("leak", "k") == (200.0, 0, "d")
    again.save_throttle({("leak", "k"): None}, {}, {})
    assert again.get_cooldown("leak", "k") is None
    again.close()


def test_a_dry_run_is_never_counted_as_sent(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.smtp._outcomes = [Receipt("smtp", "m1", "new/1", dry_run=True)]
    rig.send("pretend")
    stats = rig.stats()
    assert (stats["sent_today"], stats["dry_run_today"], stats["last_sent_at"]) == (0, 1, None)
    rig.send("for real")
    stats = rig.stats()
    assert (stats["sent_today"], stats["dry_run_today"]) == (1, 1)
    assert stats["last_sent_at"] is not None
    rig.engine.stop(0)
    rig.outbox.close()
