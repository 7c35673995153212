"""What the engine remembers of the messages it was handed, so none is acted on twice.

Theory of operation. Three ways a broker hands us a message again:

- a *redelivery* (``dup``) of a message we did not acknowledge (we were killed, or the
  connection dropped): its texts already written (sent, finished or queued; each is written
  as it finishes) are looked up by packet id and payload digest, and only the others go. The
  look-up covers the broker session the message came in: an *epoch* counts runs and broker
  sessions, and a session the broker did not keep (``Session(present=False)``) starts a new
  one, since packet ids start again at 1 then;
- a *retained copy*: the broker sends a retained message again at every subscribe (every
  reconnect), once per matching filter. One retained message (topic and payload) is acted on
  once until it changes: the digest of the last retained and the last live message on each
  topic is kept (in the outbox, without an fsync) and a retained copy of either is not acted
  on. An empty payload clears a retained message, and the memory of it;
- a message still being handled when the broker sends it again (a reconnect mid-send): the
  engine's flights index catches it before this module is asked.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import replace

from mqtt2sms.model import Message, RetainedSeen
from mqtt2sms.outbox import Outbox
from mqtt2sms.router import Routed


class Seen:
    def __init__(self, outbox: Outbox) -> None:
        """Load from ``outbox`` and start a new epoch (a new run). Raises StorageError."""
        self.outbox = outbox
        self.epoch = int(outbox.get_kv("epoch") or "0") + 1
        self.session_epoch = int(outbox.get_kv("session_epoch") or "0")
        outbox.set_kv({"epoch": str(self.epoch)})
        # topic -> digests of the last retained and the last live message acted on
        self.topics = {
            t: RetainedSeen(r or "", v or "") for t, (r, v) in outbox.load_topics().items()
        }
        self.dirty: set[str] = set()

    def session(self, present: bool) -> None:
        """The broker accepted our connection; unless it kept our session, packet ids start
        again, and what was written under the old ones is never taken for a redelivery.
        Raises StorageError (the new epoch must be on disk before a message of it)."""
        if present:
            return
        self.epoch += 1
        self.session_epoch = self.epoch
        self.outbox.set_kv({"epoch": str(self.epoch), "session_epoch": str(self.session_epoch)})

    def retained_again(self, msg: Message) -> bool:
        """Is ``msg`` a retained copy of what was acted on last on its topic?"""
        if not self.topics.get(msg.topic, RetainedSeen()).repeats(msg):
            return False
        self.note(msg)  # it is what the broker keeps now
        return True

    def handled_before(self, msg: Message) -> list[tuple[str, str]]:
        """(rule, recipient) of each text written for a redelivered ``msg`` before.
        Raises StorageError."""
        if not msg.dup or msg.qos == 0:
            return []
        return self.outbox.handled(msg.mid, msg.digest, self.session_epoch)

    def note(self, msg: Message) -> Callable[[], None]:
        """Remember the message's digest for its topic; return what forgets it again (a
        message whose handling failed is not remembered)."""
        old = self.topics.get(msg.topic)
        new = (old or RetainedSeen()).after(msg)
        if new is None:
            self.topics.pop(msg.topic, None)
        else:
            self.topics[msg.topic] = new
        self.dirty.add(msg.topic)

        def undo() -> None:
            if old is None:
                self.topics.pop(msg.topic, None)
            else:
                self.topics[msg.topic] = old

        return undo

    def save(self) -> None:
        """Write the topics' digests that changed. Raises StorageError."""
        if self.dirty:
            changes: dict[str, tuple[str | None, str | None] | None] = {}
            for t in self.dirty:
                st = self.topics.get(t)
                changes[t] = None if st is None else (st.retained or None, st.live or None)
            self.outbox.save_topics(changes)
            self.dirty.clear()


def without(routed: Routed, done: list[tuple[str, str]]) -> Routed:
    """The routing of a redelivered message less the texts written for it before: the first
    texts of each (rule, recipient), in order (a split text's parts leave in order)."""
    left = collections.Counter(done)
    texts = []
    for t in routed.texts:
        if left[(t.rule, t.recipient)] > 0:
            left[(t.rule, t.recipient)] -= 1
        else:
            texts.append(t)
    ids = {t.id for t in texts}
    events = tuple(ev for ev in routed.events if ev.state != "deferred" or ev.id in ids)
    return replace(routed, texts=tuple(texts), events=events)
