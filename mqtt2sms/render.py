"""Sandboxed Jinja2 for ``message``, ``subject``, ``key`` and ``when``.

Theory of operation
-------------------
A ``Templates`` object is built once per config. It owns one sandboxed environment (an
``ImmutableSandboxedEnvironment``, so a template cannot change ``value_json``, which several
rules share; ``StrictUndefined``; no autoescape) and a cache of compiled sources, so each
template is compiled once. Templates see Home Assistant's names (``Variables``): ``value``,
``value_json`` (undefined when the payload is not JSON), ``topic``, ``topic_parts``,
``retained``, ``rule``, ``now``.

* ``render`` (``message``, ``subject``, ``key``): an undefined value is an error; every failure
  becomes ``TemplateError`` with a short reason, so the caller can fall back to
  ``"<rule>: <payload>"`` and never lose an alert to a typo.
* ``when``: an expression, with or without ``{{ }}`` (a full template with ``{% %}`` works too).
  Touching an undefined value makes it false; other failures raise ``TemplateError``. Truth is
  Python's, except that the strings ``false``, ``off``, ``no``, ``0``, ``none`` and ``""``
  (case-insensitive, stripped) are false, since a rendered ``{{ ... }}`` is a string.
  A sensor that drops out publishes ``null`` or ``unavailable`` (Zigbee2MQTT, Home Assistant),
  so ``when`` has its own environment, whose compiled comparisons and arithmetic forgive them:
  a comparison (``<``, ``<=``, ``>``, ``>=``, ``in``, ``not in``; ``==`` and ``!=`` too when an
  operand is undefined) with an undefined, null or non-numeric operand is false, and arithmetic
  on one gives an undefined value (so the comparison it feeds is false). A string that is a
  number compares as one with a number (``value > 30`` with payload ``31``). Each forgiven
  operation is noted (``notes``), so the router can say once per rule why such a ``when`` was
  false, rather than sending the fallback text every time, a false alarm.

The sandbox refuses private attributes (``''.__class__``) and unsafe callables; ``range`` is
capped by Jinja (``MAX_RANGE``); ``*``, ``**`` and ``%`` refuse results that would be huge; and a
rendered result over ``MAX_OUTPUT`` characters is an error (checked while rendering). Templates
come from the operator's own config file (a payload is data, never a template), so the sandbox
guards against mistakes rather than a determined author: nested loops or a filter such as
``center(10**9)`` can still be slow or large.
"""

from __future__ import annotations

import enum
import functools
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

import jinja2
import jinja2.runtime
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from mqtt2sms.errors import TemplateError

__all__ = [
    "MAX_OUTPUT",
    "NOT_JSON",
    "Templates",
    "Variables",
    "variables",
]

#: The most characters a template may render.
MAX_OUTPUT = 64 * 1024

#: The strings that count as false in ``when`` (after ``strip().lower()``).
_FALSE_STRINGS = frozenset({"", "false", "off", "no", "0", "none"})

#: ``{{ expr }}`` (with optional ``-`` whitespace control) and nothing else around it.
_SINGLE_EXPRESSION_RE = re.compile(r"\A\s*\{\{-?(?P<expr>.*?)-?\}\}\s*\Z", re.DOTALL)
#: A ``%`` conversion with a width or precision taken from the arguments (``%*s``).
_STAR_WIDTH_RE = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(?:\*|\d*\.\*)")
#: The widths and precisions of ``%`` conversions.
_WIDTH_RE = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\d*)(?:\.(\d*))?")


class _NotJson(enum.Enum):
    NOT_JSON = "NOT_JSON"

    def __repr__(self) -> str:
        return "NOT_JSON"


#: ``Variables.value_json`` when the payload is not JSON (templates see it as undefined).
NOT_JSON = _NotJson.NOT_JSON


@dataclass(frozen=True)
class Variables:
    """What a template sees (Home Assistant's names). Build it with ``variables()``."""

    value: str
    value_json: object  # NOT_JSON when the payload is not JSON
    topic: str
    topic_parts: tuple[str, ...]
    retained: bool
    rule: str
    now: datetime

    def context(self) -> dict[str, Any]:
        """The Jinja context: every field, without ``value_json`` when it is ``NOT_JSON``."""
        ctx: dict[str, Any] = {
            "value": self.value,
            "topic": self.topic,
            "topic_parts": self.topic_parts,
            "retained": self.retained,
            "rule": self.rule,
            "now": self.now,
        }
        if self.value_json is not NOT_JSON:
            ctx["value_json"] = self.value_json
        return ctx


def variables(
    payload_text: str,
    payload_json: object,
    topic: str,
    retained: bool,
    rule: str,
    now: datetime,
) -> Variables:
    """Build the ``Variables`` of one message for one rule.

    In: the payload as text, the parsed payload (or ``NOT_JSON``), the MQTT topic, the retain
    flag, the rule's name and the local time. Out: ``Variables`` (``topic_parts`` is the topic
    split on ``/``). Raises nothing.
    """
    return Variables(
        value=payload_text,
        value_json=payload_json,
        topic=topic,
        topic_parts=tuple(topic.split("/")),
        retained=retained,
        rule=rule,
        now=now,
    )


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox, plus size checks on the operators that can blow memory up in one step."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(
        self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any
    ) -> Any:
        if operator == "*":
            _check_repeat(left, right)
            _check_repeat(right, left)
        elif operator == "**":
            _check_power(left, right)
        elif operator == "%" and isinstance(left, str):
            _check_format(left)
        return super().call_binop(context, operator, left, right)


#: Where a ``when`` evaluation collects its notes in the Jinja context: not an identifier, so
#: no template can name it.
_NOTES = "mqtt2sms notes"
_ORDERING = {"lt": "<", "lteq": "<=", "gt": ">", "gteq": ">="}
_SYMBOL = {**_ORDERING, "eq": "==", "ne": "!=", "in": "in", "notin": "not in"}
_COMPARE: Mapping[str, Callable[[Any, Any], Any]] = MappingProxyType(
    {
        "eq": operator.eq,
        "ne": operator.ne,
        "lt": operator.lt,
        "lteq": operator.le,
        "gt": operator.gt,
        "gteq": operator.ge,
        "in": lambda a, b: a in b,
        "notin": lambda a, b: a not in b,
    }
)


class _WhenCodeGenerator(CodeGenerator):
    """Compiles every comparison into ``environment.when_compare(context, a, op, b, ...)``."""

    @optimizeconst
    def visit_Compare(self, node: nodes.Compare, frame: Frame) -> None:
        self.write("environment.when_compare(context, ")
        self.visit(node.expr, frame)
        for operand in node.ops:
            self.write(f", {operand.op!r}, ")
            self.visit(operand.expr, frame)
        self.write(")")


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, jinja2.Undefined):
        return "undefined"
    if isinstance(value, str):
        return repr(value if len(value) <= 20 else value[:17] + "...")
    if isinstance(value, int | float):
        return repr(value)
    return type(value).__name__


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_number(value: Any) -> float | None:
    """A string that holds a finite number, as that number."""
    if not isinstance(value, str):
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


class _WhenEnvironment(_Environment):
    """The sandbox of ``when``: null, undefined and non-numeric operands make comparisons false."""

    code_generator_class = _WhenCodeGenerator
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    @staticmethod
    def _note(context: jinja2.runtime.Context, note: str) -> None:
        notes = context.get(_NOTES)
        if isinstance(notes, list) and note not in notes:
            notes.append(note)

    def when_compare(self, context: jinja2.runtime.Context, left: Any, *rest: Any) -> bool:
        """A chain ``a op b op c`` of comparisons: true when every one holds."""
        for i in range(0, len(rest), 2):
            op, right = rest[i], rest[i + 1]
            if not self._compare(context, op, left, right):
                return False
            left = right
        return True

    def _compare(self, context: jinja2.runtime.Context, op: str, left: Any, right: Any) -> bool:
        if isinstance(left, jinja2.Undefined) or isinstance(right, jinja2.Undefined):
            return False  # as an undefined value is everywhere in `when`: silently
        if op in ("eq", "ne"):
            return bool(_COMPARE[op](left, right))
        a, b = left, right
        if op in _ORDERING:
            if _is_number(a) and isinstance(b, str):
                b = _as_number(b)
            elif _is_number(b) and isinstance(a, str):
                a = _as_number(a)
        try:
            return bool(_COMPARE[op](a, b))  # None, or a string that is no number: TypeError
        except TypeError:
            self._note(context, f"{_shown(left)} {_SYMBOL[op]} {_shown(right)} is false")
            return False

    def call_binop(
        self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any
    ) -> Any:
        try:
            return super().call_binop(context, operator, left, right)
        except TypeError:
            if isinstance(left, jinja2.Undefined) or isinstance(right, jinja2.Undefined):
                raise
            note = f"{_shown(left)} {operator} {_shown(right)} is undefined"
            self._note(context, note)
            return self.undefined(note)


def _check_repeat(seq: Any, count: Any) -> None:
    if (
        isinstance(seq, str | bytes | list | tuple)
        and isinstance(count, int)
        and len(seq) * count > MAX_OUTPUT
    ):
        raise SecurityError(f"result of * would be longer than {MAX_OUTPUT}")


def _check_power(base: Any, exponent: Any) -> None:
    if (
        isinstance(base, int)
        and isinstance(exponent, int)
        and abs(base) > 1
        and exponent > 0
        and abs(base).bit_length() * exponent > MAX_OUTPUT * 8
    ):
        raise SecurityError("result of ** would be too large")


def _check_format(fmt: str) -> None:
    if _STAR_WIDTH_RE.search(fmt):
        raise SecurityError("'*' widths are not allowed in % formatting")
    for width, precision in _WIDTH_RE.findall(fmt):
        if any(n and int(n) > MAX_OUTPUT for n in (width, precision)):
            raise SecurityError(f"% formatting width over {MAX_OUTPUT}")


def _describe(exc: Exception) -> str:
    """The short reason of a template failure."""
    if isinstance(exc, UndefinedError):
        return f"undefined: {exc.message}"
    if isinstance(exc, SecurityError):
        return f"not allowed: {exc}"
    if isinstance(exc, TemplateSyntaxError):
        return f"syntax error (line {exc.lineno}): {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def _truthy(result: object) -> bool:
    """Truth of a ``when`` result; a ``StrictUndefined`` raises its error (undefined or unsafe)."""
    if isinstance(result, str):
        return result.strip().lower() not in _FALSE_STRINGS
    return bool(result)


class Templates:
    """Compiled templates and expressions for one config, with one sandboxed environment.

    Not shared between configs: a reload builds a new one. The caches are plain dicts that only
    grow (sources come from the config): used from two threads, a source is at worst compiled
    twice.
    """

    def __init__(self, env: jinja2.Environment | None = None) -> None:
        # ``env`` replaces the sandbox (config checks in tests, with filters of their own).
        self._env: jinja2.Environment = env or _Environment(
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
        )
        self._when_env = _WhenEnvironment(
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
        )
        self._templates: dict[str, jinja2.Template] = {}
        self._when_templates: dict[str, jinja2.Template] = {}
        self._conditions: dict[str, Callable[[dict[str, Any]], object]] = {}
        self._said: set[tuple[str, str]] = set()

    # ------------------------------------------------------------------ compiling

    def _template(self, src: str, *, when: bool = False) -> jinja2.Template:
        cache, env = (
            (self._when_templates, self._when_env) if when else (self._templates, self._env)
        )
        compiled = cache.get(src)
        if compiled is None:
            try:
                compiled = env.from_string(src)
            except Exception as exc:
                raise TemplateError(_describe(exc)) from exc
            cache[src] = compiled
        return compiled

    def _condition(self, src: str) -> Callable[[dict[str, Any]], object]:
        """``src`` as a function of the context: an expression, or a rendered template."""
        compiled = self._conditions.get(src)
        if compiled is not None:
            return compiled
        match = _SINGLE_EXPRESSION_RE.match(src)
        expression = match.group("expr") if match else src
        if "{{" in expression or "{%" in expression or (match and "}}" in expression):
            # A template with {% %}, or "{{ a }} and {{ b }}", which only looks like one
            # expression: render it and judge the text.
            compiled = functools.partial(self._stream, self._template(src, when=True))
        elif not expression.strip():
            raise TemplateError("empty expression")
        else:
            try:
                compiled = self._when_env.compile_expression(expression, undefined_to_none=False)
            except Exception as exc:
                raise TemplateError(_describe(exc)) from exc
        self._conditions[src] = compiled
        return compiled

    def check_template(self, src: str) -> str | None:
        """Compile a template (``message``, ``subject``, ``key``) and cache it.

        In: the source. Out: ``None`` when it compiles, else the reason (a syntax error with its
        line). Raises nothing.
        """
        try:
            self._template(src)
        except TemplateError as exc:
            return str(exc)
        return None

    def check_expression(self, src: str) -> str | None:
        """Compile a ``when`` expression (with or without ``{{ }}``) and cache it.

        In: the source. Out: ``None`` when it compiles, else the reason. Raises nothing.
        """
        try:
            self._condition(src)
        except TemplateError as exc:
            return str(exc)
        return None

    # ------------------------------------------------------------------ evaluating

    def _stream(self, template: jinja2.Template, ctx: dict[str, Any]) -> str:
        """Render with the output cap checked as the output grows."""
        chunks: list[str] = []
        size = 0
        for chunk in template.generate(ctx):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise SecurityError(f"output longer than {MAX_OUTPUT} characters")
            chunks.append(chunk)
        return "".join(chunks)

    def when(self, src: str, v: Variables, notes: list[str] | None = None) -> bool:
        """Evaluate a ``when`` expression for one message.

        In: the expression (``value_json.water_leak`` or ``{{ value_json.water_leak }}``, or a
        template with ``{% %}``), the message's ``Variables``, and optionally a list that gets
        a note for each comparison or arithmetic a null or non-numeric operand made false or
        undefined (``"null > 30 is false"``). Out: its truth: Python's, but the strings
        ``false``, ``off``, ``no``, ``0``, ``none`` and ``""`` (any case, stripped) are false; a
        result or operand that is undefined makes it false, and so does a comparison with an
        undefined, null or non-numeric operand (see the module docstring).
        Raises: ``TemplateError`` with a short reason on a syntax error or any other failure.
        """
        condition = self._condition(src)
        ctx = v.context()
        ctx[_NOTES] = [] if notes is None else notes
        try:
            return _truthy(condition(ctx))
        except UndefinedError:
            return False
        except Exception as exc:
            raise TemplateError(_describe(exc)) from exc

    def first_time(self, rule: str, kind: str) -> bool:
        """True the first time this ``(rule, kind)`` is asked about, then False.

        For problems that would repeat with every message (a ``when`` false because a sensor
        publishes ``null``): the log says them once per rule and config. Raises nothing.
        """
        if (rule, kind) in self._said:
            return False
        self._said.add((rule, kind))
        return True

    def render(self, src: str, v: Variables) -> str:
        """Render a template (``message``, ``subject``, ``key``) for one message.

        In: the source and the message's ``Variables``. Out: the rendered text (at most
        ``MAX_OUTPUT`` characters; no trailing newline).
        Raises: ``TemplateError`` on any failure: a syntax error, an undefined value (the
        reason names it), a sandbox refusal, an output over ``MAX_OUTPUT``, or any exception
        the template raised. Nothing else.
        """
        template = self._template(src)
        try:
            return self._stream(template, v.context())
        except Exception as exc:
            raise TemplateError(_describe(exc)) from exc

    @staticmethod
    def default_message(v: Variables) -> str:
        """The message of a rule without ``message``.

        In: the message's ``Variables``. Out: ``value_json["message"]`` when the payload is a
        JSON object whose ``message`` is a string, else ``value``. Raises nothing.
        """
        if isinstance(v.value_json, dict):
            message = v.value_json.get("message")
            if isinstance(message, str):
                return message
        return v.value
