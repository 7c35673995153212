"""MQTT topic filters, and the rules a message hits.

Theory of operation
-------------------
``topic_matches`` follows MQTT 3.1.1 / 5 (section 4.7): ``+`` matches exactly one level (an
empty one too), ``#`` as the last level matches the rest *including the parent*
(``a/#`` matches ``a``), and a topic starting with ``$`` (``$SYS/...``) is not matched by a
filter whose first level is ``+`` or ``#``. An invalid filter or topic name matches nothing.

``matching`` keeps the broker's answer honest: the daemon publishes its own status, events and
stats under ``base_topic``, so a message under ``<base>/`` never matches a rule (a rule on ``#``
must not text about our own events), except exactly ``<base>/notify``, Home Assistant's notify
entity. ``<base>/ack`` matches nothing here: the daemon handles it before the rules. The topic
``<base>`` itself is not *under* the base and matches as usual.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, TypeVar

__all__ = [
    "HasTopic",
    "filter_covers_base",
    "filter_error",
    "matching",
    "topic_error",
    "topic_matches",
]

#: The longest topic or filter MQTT allows, in UTF-8 bytes.
_MAX_TOPIC_BYTES = 65535


class HasTopic(Protocol):
    """Anything with a ``topic`` filter (a config rule)."""

    @property
    def topic(self) -> str: ...


R = TypeVar("R", bound=HasTopic)


def _common_error(name: str, what: str) -> str | None:
    if not name:
        return f"{what} is empty"
    if "\x00" in name:
        return f"{what} contains a NUL character"
    if len(name.encode("utf-8", errors="surrogatepass")) > _MAX_TOPIC_BYTES:
        return f"{what} is longer than {_MAX_TOPIC_BYTES} bytes"
    return None


def filter_error(filter: str) -> str | None:
    """Check a subscription filter.

    In: the filter (``zigbee2mqtt/+/leak``). Out: ``None`` when it is valid, else what is
    wrong: empty, a NUL character, over 65535 bytes, ``#`` anywhere but as the whole last
    level, or ``+`` not a whole level. Raises nothing.
    """
    problem = _common_error(filter, "topic filter")
    if problem:
        return problem
    levels = filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return "'#' must be the last level, alone in it (such as a/b/#)"
        if "+" in level and level != "+":
            return "'+' must be alone in its level (such as a/+/c)"
    return None


def topic_error(topic: str) -> str | None:
    """Check a topic name (what a message is published to).

    In: the topic. Out: ``None`` when valid, else what is wrong (empty, NUL, too long, or a
    wildcard ``+`` / ``#``, which a topic name cannot hold). Raises nothing.
    """
    problem = _common_error(topic, "topic")
    if problem:
        return problem
    if "+" in topic or "#" in topic:
        return "a topic to publish on may not hold + or #"
    return None


def _levels_match(filter_levels: list[str], topic_levels: list[str]) -> bool:
    """Match split levels; the filter is valid, the ``$`` rule already applied."""
    for i, level in enumerate(filter_levels):
        if level == "#":
            return True  # the rest, including none (the parent)
        if i >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[i]:
            return False
    return len(filter_levels) == len(topic_levels)


def topic_matches(filter: str, topic: str) -> bool:
    """Does the subscription ``filter`` match the topic name ``topic``?

    In: a filter (``+`` and ``#`` allowed) and a topic name. Out: ``True`` when a broker would
    deliver a message on ``topic`` to a subscription on ``filter`` (MQTT semantics, see the
    module docstring); ``False`` when either is invalid. Raises nothing.
    """
    if filter_error(filter) is not None or topic_error(topic) is not None:
        return False
    if topic.startswith("$") and filter[0] in "+#":
        return False
    return _levels_match(filter.split("/"), topic.split("/"))


def _under_base(topic: str, base_topic: str) -> bool:
    return topic.startswith(base_topic + "/")


def matching(rules: Sequence[R], topic: str, base_topic: str) -> list[R]:
    """The rules a message on ``topic`` hits, in rule order.

    In: the rules (anything with a ``topic`` filter), the message's topic, and the daemon's
    ``base_topic``. Out: the rules whose filter matches, except that a topic under
    ``<base_topic>/`` matches none, unless it is exactly ``<base_topic>/notify``.
    Raises nothing.
    """
    if _under_base(topic, base_topic) and topic != f"{base_topic}/notify":
        return []
    return [rule for rule in rules if topic_matches(rule.topic, topic)]


def filter_covers_base(filter: str, base_topic: str) -> bool:
    """Would ``filter`` receive some topic under ``<base_topic>/`` that is not ``notify``?

    Used by ``check`` to warn about a rule such as ``#``, ``+/status``, ``mqtt2sms/#`` or
    ``mqtt2sms/ack``: what it would receive there is ours and never matches a rule.
    In: a filter and the base topic. Out: ``True`` if some topic ``<base>/...`` other than
    ``<base>/notify`` matches it; ``False`` for an invalid filter or base. Raises nothing.
    """
    if filter_error(filter) is not None or topic_error(base_topic) is not None:
        return False
    if base_topic.startswith("$") and filter[0] in "+#":
        return False
    levels = filter.split("/")
    base = base_topic.split("/")
    for i, level in enumerate(base):
        if i >= len(levels):
            return False  # the filter stops above the base
        if levels[i] == "#":
            return True
        if levels[i] != "+" and levels[i] != level:
            return False
    rest = levels[len(base) :]
    if not rest:
        return False  # matches the base itself, which is not under it
    if any(level in ("+", "#") for level in rest):
        return True
    return rest != ["notify"]


def filter_covers(wide: str, narrow: str) -> bool:
    """Whether every topic that ``narrow`` matches is matched by ``wide`` too.

    In: two valid MQTT filters. Out: True when ``wide`` covers ``narrow`` (a filter covers
    itself). A filter starting with a wildcard never covers a ``$`` topic. Raises: nothing.
    """
    if narrow.startswith("$") and wide[:1] in ("+", "#"):
        return False
    return _covers(wide.split("/"), narrow.split("/"))


def _covers(wide: list[str], narrow: list[str]) -> bool:
    i = 0
    while True:
        if i == len(wide):
            return i == len(narrow)
        w = wide[i]
        if w == "#":
            return True
        if i == len(narrow):
            return False
        n = narrow[i]
        if n == "#" or (n == "+" and w != "+") or (w not in ("+", n)):
            return False
        i += 1


def without_overlaps(filters: Iterable[str]) -> list[str]:
    """The filters none of the others covers, sorted: subscribing to these gets every topic
    the whole set gets, each retained message once (a broker sends one copy per matching
    filter of a SUBSCRIBE)."""
    unique = sorted(set(filters))
    return [f for f in unique if not any(g != f and filter_covers(g, f) for g in unique)]
