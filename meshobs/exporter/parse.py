"""Prometheus text exposition, read only as far as the exporter needs it.

A proxy exposes thousands of families and the exporter wants a dozen: the lines are
filtered by name prefix first (a C-level `str.startswith` over a tuple) and only the
kept lines are split into name, labels and value.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple


class PayloadError(ValueError):
    """The body is not a Prometheus text exposition."""


class Sample(NamedTuple):
    name: str
    labels: dict[str, str]
    value: float


_LINE = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?[ \t]+(\S+)(?:[ \t]+-?\d+)?[ \t]*$')
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(?:,|$)')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
_UNESCAPE_RE = re.compile(r'\\[\\"n]')


def _labels(text: str, line: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        match = _LABEL.match(text, pos)
        if match is None:
            raise PayloadError(f"malformed labels in line: {line[:200]!r}")
        value = match.group(2)
        if "\\" in value:
            value = _UNESCAPE_RE.sub(lambda m: _UNESCAPE[m.group(0)], value)
        labels[match.group(1)] = value
        pos = match.end()
    return labels


def parse_line(line: str) -> Sample:
    match = _LINE.match(line)
    if match is None:
        raise PayloadError(f"malformed line: {line[:200]!r}")
    name, label_text, raw_value = match.groups()
    try:
        value = float(raw_value)
    except ValueError:
        raise PayloadError(f"malformed value in line: {line[:200]!r}") from None
    return Sample(name, _labels(label_text, line) if label_text else {}, value)


def decode(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"invalid UTF-8 at byte {exc.start}") from None


def _check_shape(lines: list[str]) -> None:
    """Reject what is not an exposition at all (HTML, JSON, random bytes) by looking at the
    first and last sample lines: cheap, and catches everything but crafted payloads."""
    for candidates in (lines, reversed(lines)):
        for line in candidates:
            if line and line[0] != "#":
                if not _LINE.match(line):
                    raise PayloadError(f"malformed line: {line[:200]!r}")
                break


def parse(body: bytes, prefixes: tuple[str, ...]) -> list[Sample]:
    """Samples of the families whose names start with one of `prefixes`; NaN samples are
    dropped (Envoy writes NaN for unset gauges)."""
    lines = decode(body).split("\n")
    _check_shape(lines)
    samples = []
    for line in lines:
        if line.startswith(prefixes):
            sample = parse_line(line)
            if not math.isnan(sample.value):
                samples.append(sample)
    return samples
