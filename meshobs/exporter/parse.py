"""Prometheus text exposition, read only as far as the exporter needs it.

A proxy exposes thousands of families and the exporter wants about twenty: lines are filtered
by name prefix as the body streams in (a C-level `bytes.startswith` over a tuple), so only the
kept lines are held and split into name, labels and value. The whole body is still checked to
be UTF-8 (incrementally) and its first and last sample lines to look like an exposition, so
HTML, JSON or random bytes are rejected rather than read as "no data".
"""

from __future__ import annotations

import codecs
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


def _is_sample(line: bytes) -> bool:
    return bool(line.strip()) and not line.startswith(b"#")


class LineFilter:
    """Feed body chunks as they arrive; `samples()` at the end parses the kept lines."""

    def __init__(self, prefixes: tuple[str, ...], names: re.Pattern[bytes] | None = None):
        """Keep lines starting with one of `prefixes` and, if given, whose start `names` matches
        (for families known by a pattern rather than a name)."""
        self._prefixes = tuple(p.encode() for p in prefixes)
        self._names = names
        self._kept: list[bytes] = []
        self._tail = b""
        self._first: bytes | None = None
        self._last: bytes | None = None
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._offset = 0

    def _validate(self, chunk: bytes, final: bool = False) -> None:
        try:
            self._utf8.decode(chunk, final)
        except UnicodeDecodeError as exc:
            raise PayloadError(f"invalid UTF-8 near byte {self._offset + exc.start}") from None
        self._offset += len(chunk)

    def _take(self, lines: list[bytes]) -> None:
        if self._first is None:
            self._first = next((line for line in lines if _is_sample(line)), None)
        last = next((line for line in reversed(lines) if _is_sample(line)), None)
        if last is not None:
            self._last = last
        prefixes = self._prefixes
        kept = [line for line in lines if line.startswith(prefixes)]
        if self._names is not None:
            kept = [line for line in kept if self._names.match(line)]
        self._kept += kept

    def feed(self, chunk: bytes) -> None:
        self._validate(chunk)
        lines = (self._tail + chunk).split(b"\n") if self._tail else chunk.split(b"\n")
        self._tail = lines.pop()
        self._take(lines)

    def samples(self) -> list[Sample]:
        """Samples of the kept families; NaN samples are dropped (Envoy writes NaN for unset gauges)."""
        self._validate(b"", final=True)
        if self._tail:
            self._take([self._tail])
            self._tail = b""
        for edge in (self._first, self._last):
            if edge is not None and not _LINE.match(edge.decode()):
                raise PayloadError(f"malformed line: {edge.decode()[:200]!r}")
        samples = []
        for raw in self._kept:
            sample = parse_line(raw.decode())
            if not math.isnan(sample.value):
                samples.append(sample)
        return samples


def parse(body: bytes, prefixes: tuple[str, ...], names: re.Pattern[bytes] | None = None) -> list[Sample]:
    """The samples of a whole body (see `LineFilter`)."""
    lines = LineFilter(prefixes, names)
    lines.feed(body)
    return lines.samples()
