"""Prometheus 3 pitfalls in PromQL: queries that mean one thing on Prometheus 2 and another on 3
(prometheus docs/migration.md), flagged by `meshobs check` for rules and dashboards alike.

- `le` / `quantile` values are normalized to float form when scraped (`le="1"` becomes
  `le="1.0"`), so a literal in any other form stops matching;
- `.` in a regex matches a newline too, so a regex reading lines (`(.*)\\n.*` for the first
  line) captures across them;
- range selectors are left-open, so a subquery whose step equals its range holds one point
  (rate() over it is empty, *_over_time() sees one sample).
"""

from __future__ import annotations

import math
from datetime import timedelta
from decimal import Decimal

import promql_parser

NORMALIZED_LABELS = ("le", "quantile")
_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def float_form(value: float) -> str:
    """A number as Prometheus 3 writes normalized `le`/`quantile` values (Go's shortest 'g'
    format, `.0` appended when it has neither a point nor an exponent)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0.0"
    sign = "-" if value < 0 else ""
    digits_tuple = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, digits_tuple.digits))
    point = len(digits) + digits_tuple.exponent  # digits before the decimal point
    exponent = point - 1
    if exponent < -4 or exponent >= 6:  # Go's %g with the shortest precision
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    if point <= 0:
        text = "0." + "0" * -point + digits
    elif point >= len(digits):
        text = digits + "0" * (point - len(digits))
    else:
        text = digits[:point] + "." + digits[point:]
    return sign + (text if "." in text else text + ".0")


def _duration(delta: timedelta) -> str:
    seconds, out = int(delta.total_seconds()), ""
    for unit, size in _UNITS:
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out or "0s"


def _reads_lines_with_dots(regex: str) -> bool:
    """Whether `regex` reasons about lines (a newline in it, or the multi-line flag) and uses `.`
    (outside character classes and escapes) without a flag saying what `.` means: on Prometheus 2
    `.` stopped at a newline, on 3 it crosses it. `.` alone (`5..`, `.*`) is not flagged: a
    value without newlines matches the same on both."""
    if "(?s" in regex or "(?-s" in regex:
        return False
    lines = "\n" in regex or "\\n" in regex or "(?m" in regex
    index, in_class, dot = 0, False, False
    while index < len(regex):
        char = regex[index]
        if char == "\\":
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            if regex[index + 1:index + 2] == "]":  # a literal ] first in a class
                index += 1
        elif char == ".":
            dot = True
        index += 1
    return lines and dot


def _normalized_value_problems(matcher) -> list[str]:
    if matcher.name not in NORMALIZED_LABELS:
        return []
    regex = matcher.op in (promql_parser.MatchOp.Re, promql_parser.MatchOp.NotRe)
    values = matcher.value.split("|") if regex else [matcher.value]
    problems = []
    for value in values:
        try:
            number = float(value)
        except ValueError:
            continue  # a pattern, or not a number: not a literal to normalize
        normal = float_form(number)
        if value != normal:
            positive = matcher.op in (promql_parser.MatchOp.Equal, promql_parser.MatchOp.Re)
            both = f'{matcher.name}{"=~" if positive else "!~"}"{value}|{normal.replace(".", chr(92) * 2 + ".")}"'
            problems.append(f'{matcher.name}="{value}" is not in the float form Prometheus 3 normalizes '
                            f'{matcher.name} to ("{normal}") and stops matching there; match both forms: {both}')
    return problems


def _regex_problem(label: str, regex: str) -> list[str]:
    if not _reads_lines_with_dots(regex):
        return []
    shown = regex.replace("\n", "\\n")
    return [f'regex "{shown}" on {label} reads lines with ., which crosses newlines on Prometheus 3: '
            r"write [^\n] where a character of one line is meant"]


def pitfalls(expr: str) -> list[str]:
    """What in a (parseable) PromQL expression behaves differently on Prometheus 3."""
    problems: list[str] = []

    def visit(node) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            for matcher in node.matchers.matchers:
                problems.extend(_normalized_value_problems(matcher))
                if matcher.op in (promql_parser.MatchOp.Re, promql_parser.MatchOp.NotRe):
                    problems.extend(_regex_problem(matcher.name, matcher.value))
        elif isinstance(node, promql_parser.SubqueryExpr) and node.step is not None and node.step == node.range:
            window = f"[{_duration(node.range)}:{_duration(node.step)}]"
            problems.append(f"subquery {window} has a step equal to its range: Prometheus 3's left-open ranges "
                            "leave it one point; use a step smaller than the range")
        elif isinstance(node, promql_parser.Call) and node.func.name == "label_replace" and len(node.args) == 5:
            regex = node.args[4]
            if isinstance(regex, promql_parser.StringLiteral):
                problems.extend(_regex_problem(f"label_replace({node.args[3].val})"
                                               if isinstance(node.args[3], promql_parser.StringLiteral)
                                               else "label_replace", regex.val))
        return True

    promql_parser.walk(promql_parser.parse(expr), visit, None)
    return problems
