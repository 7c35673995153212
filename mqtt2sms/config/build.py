"""``parse_config``: the whole file at once, the sections in order, the built-in rule."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jinja2
import yaml
import yaml.constructor

from mqtt2sms import system, ways
from mqtt2sms.config.model import (
    DEFAULT_ALERT_TOPIC,
    TRANSPORTS,
    Config,
    HomeAssistant,
    Loaded,
    Rule,
    RuleOptions,
    resolve_recipients,
)
from mqtt2sms.config.reader import (
    _OPTION_KEYS,
    _TOP_KEYS,
    _is_null,
    _kind,
    _Node,
    _Parser,
    _Section,
    default_state_dir,
    file_problem,
)
from mqtt2sms.config.secrets import read_text as _read_text
from mqtt2sms.config.sections import (
    NOT_BUILT,
    REPLY_WAYS,
    _android,
    _check_calls,
    _check_reach,
    _check_replies,
    _contacts,
    _escalations,
    _groups,
    _limits,
    _modem,
    _mqtt,
    _options,
    _rules,
    _smtp,
    _twilio,
    _Use,
)
from mqtt2sms.errors import ConfigError
from mqtt2sms.render import Templates
from mqtt2sms.rules import filter_covers, filter_covers_base


def parse_config(
    text: str,
    path: str,
    env: Mapping[str, str],
    read_file: Callable[[str], str] | None = None,
    *,
    jinja_env: jinja2.Environment | None = None,
    check_file: Callable[[str], str | None] | None = None,
) -> Loaded:
    """Check and read a config file's text.

    ``path`` is only printed in messages (as given). ``env`` supplies ``${VAR}`` and the
    state_dir defaults. ``read_file(path) -> str`` reads ``*_file`` secrets (default: the file
    as UTF-8); one trailing newline of its result is stripped. ``jinja_env`` compiles the
    templates for the check (default: the renderer's own sandbox, render.Templates, the one
    place templates are compiled). ``check_file(path) -> problem | None`` checks each file the
    config names (mqtt.tls files, smtp.ca_certs, modem.device; default: the real file system).

    Returns Loaded (the Config and the warnings, each ``path:line: yaml.path: what``).
    Raises ConfigError with every problem found, each ``path:line: yaml.path: what``.
    """
    try:
        return _parse(text, path, env, read_file, jinja_env, check_file or file_problem)
    except RecursionError:
        # A list or mapping nested thousands deep: no traceback, a config error.
        raise ConfigError([f"{path}:1: YAML nested too deeply"]) from None


def _parse(
    text: str,
    path: str,
    env: Mapping[str, str],
    read_file: Callable[[str], str] | None,
    jinja_env: jinja2.Environment | None,
    check_file: Callable[[str], str | None],
) -> Loaded:
    p = _Parser(path, env, read_file or _read_text, Templates(jinja_env), check_file)
    tz = system.tz_problem(env)
    if tz is not None:
        p.error(None, "$TZ", f"{tz}: quiet hours and the daily cap need the local time")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = " ".join(x for x in (exc.context, exc.problem) if x)
        hint = _syntax_hint(text, line, mark.column + 1 if mark is not None else 1, what)
        raise ConfigError([f"{path}:{line}: YAML syntax error: {what} ({hint})"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}:1: YAML syntax error: {exc}"]) from None

    top = _Section(p, root, "", _TOP_KEYS)
    if root is not None and not _is_null(root) and _kind(root) != "map":
        raise ConfigError(p.sorted_errors())
    node = top.value_node

    p.transports |= {name for name in TRANSPORTS if top.has(name)}
    for name in TRANSPORTS:
        if name in top.items and not top.has(name):
            p.no_section[name] = f"`{name}:` is empty (write `{name}: {{}}` for its defaults)"
    dsec = _Section(p, node("defaults"), "defaults", _OPTION_KEYS)
    defaults, _given = _options(p, dsec, RuleOptions())

    mqtt = _mqtt(p, node("mqtt"))
    smtp = _smtp(p, top.items["smtp"][1]) if top.has("smtp") else None
    cc = defaults.country_code
    twilio = _twilio(p, top.items["twilio"][1], cc) if top.has("twilio") else None
    modem = _modem(p, top.items["modem"][1]) if top.has("modem") else None
    android = _android(p, top.items["android"][1]) if top.has("android") else None

    state_dir = top.opt("state_dir", p.path_value) if top.has("state_dir") else None
    if state_dir is None and not top.has("state_dir"):
        state_dir = default_state_dir(env)
        if state_dir is None:
            p.error(
                root,
                "state_dir",
                "not set, and none of STATE_DIRECTORY, XDG_STATE_HOME, HOME is set",
            )

    contacts = _contacts(p, node("contacts"), defaults.country_code)
    p.known_names = set(contacts)
    groups = _groups(p, node("groups"), contacts)
    p.known_names = set(contacts) | set(groups)
    p.check_names(dsec.value_node("to"), "defaults.to")

    limits = _limits(p, node("limits"))
    ha = _Section(p, node("homeassistant"), "homeassistant", ("discovery", "prefix"))
    homeassistant = HomeAssistant(
        discovery=ha.get("discovery", p.boolean, False),
        prefix=ha.get("prefix", p.topic_name, "homeassistant"),
    )
    alert_topic: str | None = DEFAULT_ALERT_TOPIC
    if "alert_topic" in top.items:
        alert_topic = top.opt("alert_topic", p.topic_name)
    received = top.get("received", p.enum("contacts", "all", "none"), "contacts")
    policy_nodes: dict[str, _Node] = {}
    escalations = _escalations(p, node("escalations"), policy_nodes)

    user_rules, uses = _rules(p, node("rules"), defaults, escalations, dsec.value_node("via"))
    rules = _with_builtins(
        p,
        user_rules,
        alert_topic,
        mqtt.base_topic,
        defaults,
        node("rules"),
        node("alert_topic") or node("mqtt"),
    )
    if any(rule.builtin for rule in rules):
        uses.append(_Use(defaults.to, defaults.via, "defaults.via", dsec.value_node("via")))

    config = Config(
        path=path,
        state_dir=state_dir or "",
        mqtt=mqtt,
        smtp=smtp,
        twilio=twilio,
        modem=modem,
        android=android,
        contacts=contacts,
        groups=groups,
        defaults=defaults,
        limits=limits,
        homeassistant=homeassistant,
        alert_topic=alert_topic,
        rules=tuple(rules),
        received=received,
        escalations=escalations,
    )
    _check_reach(p, config, uses, node("contacts"))
    _check_replies(p, config, policy_nodes)
    _check_calls(p, config, policy_nodes)
    for section in NOT_BUILT:
        if getattr(config, section) is not None:
            p.warn(
                node(section),
                section,
                "this version cannot send through it yet: a text whose `via` reaches it moves "
                "on to the next way out, or fails",
            )
    if not config.contacts:
        p.warn(
            node("contacts"),
            "contacts",
            "no contacts: nobody can be texted, every alert will be rejected",
        )
    elif config.defaults.to and not resolve_recipients(config, config.defaults.to)[0]:
        p.warn(
            node("defaults"),
            "defaults.to",
            "names nobody (empty groups): an alert to a rule without its own `to` reaches "
            "nobody unless its payload names someone",
        )
    reads = any(ways.reads_replies(config, w) for w in ways.NAMES)
    if top.has("received") and received != "none" and not reads:
        p.warn(
            top.key_node("received"),
            "received",
            f"ignored: no way out reads received texts ({REPLY_WAYS})",
        )
    if p.errors:
        raise ConfigError(p.sorted_errors())
    return Loaded(config=config, warnings=p.sorted_warnings())


def _syntax_hint(text: str, line: int, column: int, what: str) -> str:
    """One line on what usually causes a YAML syntax error, with where PyYAML stopped."""
    lines = text.splitlines()
    near = lines[max(0, line - 2) : line]  # the line PyYAML stopped on and the one above
    where = f"line {line}, column {column}"
    tab = next((line - len(near) + 1 + i for i, t in enumerate(near) if "\t" in t), None)
    if tab is not None:
        return f"line {tab} holds a tab: YAML indents with spaces only; stopped at {where}"
    if "flow" in what or "quoted" in what:
        return f"stopped at {where}: check the brackets, braces, quotes and commas there"
    return (
        f"stopped at {where}: indent with spaces, the keys of one section all alike; "
        "the mistake is often on the line above"
    )


def _wholly_under_base(filter: str, base_topic: str) -> bool:
    """Is every topic ``filter`` matches under ``<base>/`` and not ``<base>/notify``?

    Such a filter never matches: a message under the base is the daemon's own (status,
    events, stats, and ``<base>/ack``, read by the daemon itself), except ``<base>/notify``.
    """
    # `<base>/+/#` matches every topic below the base, not the base itself; `<base>/#` is not
    # covered by it (it matches the base too)
    if not filter_covers(f"{base_topic}/+/#", filter):
        return False
    return filter != f"{base_topic}/notify"


def _star_hint(filter: str) -> str | None:
    """A warning for a filter with `*` in it, which MQTT takes literally; None without one."""
    if "*" not in filter:
        return None
    levels = ["+" if level == "*" else level for level in filter.split("/")]
    one = "/".join(levels)
    if one == filter:  # `*` inside a level (`sensor*`): MQTT has no partial-level wildcard
        better = "+ for one whole level or # for everything below (a/+/c, a/#)"
    elif levels[-1] == "+":
        better = f"'{one}' for one level or '{'/'.join([*levels[:-1], '#'])}' for all below"
    else:
        better = f"'{one}'"
    return (
        f"'{filter}': `*` is no MQTT wildcard (it is taken as a plain character, so this "
        f"matches almost nothing); use {better}"
    )


def _with_builtins(
    p: _Parser,
    user_rules: list[Rule],
    alert_topic: str | None,
    base_topic: str,
    defaults: RuleOptions,
    rules_node: _Node | None,
    alert_node: _Node | None = None,
) -> list[Rule]:
    """The user's rules, then the built-in `sms` and `notify` rules they do not replace."""
    notify_topic = f"{base_topic}/notify"
    wanted = [("sms", alert_topic), ("notify", notify_topic)]
    rule_nodes = list(rules_node.value) if isinstance(rules_node, yaml.SequenceNode) else []
    builtins: list[Rule] = []
    for name, topic in wanted:
        if topic is None or any(rule.topic == topic for rule in user_rules):
            continue
        if name == "notify" and topic == alert_topic:
            # Two built-in rules on one topic would text each message twice: `sms` serves both.
            p.warn(
                alert_node,
                "alert_topic",
                f"'{topic}' is also the topic of the built-in `notify` rule (Home Assistant's "
                "notify entity): the built-in `sms` rule alone serves it, so each message is "
                "texted once",
            )
            continue
        if name == "sms" and _wholly_under_base(topic, base_topic):
            p.error(
                alert_node,
                "alert_topic",
                f"'{topic}' lies under mqtt.base_topic '{base_topic}': messages under "
                f"{base_topic}/ never match a rule, so the built-in `sms` rule cannot fire "
                "(choose another alert_topic or base_topic)",
            )
        builtins.append(Rule(name=name, topic=topic, options=defaults, builtin=True))
        for i, rule in enumerate(user_rules):
            if rule.name == name:
                where = rule_nodes[i] if i < len(rule_nodes) else None
                p.error(
                    where,
                    f"rules[{i}].name",
                    f"'{name}' is the name of the built-in rule on {topic}: "
                    "choose another name, or give this rule that topic to replace it",
                )
    for i, rule in enumerate(user_rules):
        star = _star_hint(rule.topic) if rule.topic else None
        if star is not None:
            p.warn(rule_nodes[i] if i < len(rule_nodes) else None, f"rules[{i}].topic", star)
        if rule.topic == notify_topic or not rule.topic:
            continue
        if _wholly_under_base(rule.topic, base_topic):
            where = rule_nodes[i] if i < len(rule_nodes) else None
            p.error(
                where,
                f"rules[{i}].topic",
                f"'{rule.topic}' lies under mqtt.base_topic '{base_topic}': messages under "
                f"{base_topic}/ never match a rule (except notify), so this rule cannot fire",
            )
        elif filter_covers_base(rule.topic, base_topic):
            where = rule_nodes[i] if i < len(rule_nodes) else None
            p.warn(
                where,
                f"rules[{i}].topic",
                f"'{rule.topic}' also covers {base_topic}/: messages under {base_topic}/ "
                f"are the daemon's own (status, events, stats, acknowledgements on "
                f"{base_topic}/ack) and never match a rule, except {base_topic}/notify",
            )
    return user_rules + builtins
