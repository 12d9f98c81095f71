"""Prometheus text exposition, read only as far as the exporter needs it.

A proxy exposes thousands of lines and the exporter wants about twenty. Per-byte work in Python
is what costs, so the body is never split into lines: as each chunk arrives, one C-level regex
pass looks for the few family prefixes after a newline (and `bytes.find`, for families known by
a pattern, for a literal their lines hold), and only the lines found are cut out, held and
later parsed. The work is linear in the body whatever its shape (an endless line dripped in
small chunks included), and bounded: a kept line above `ParseLimits.line_bytes`, more kept
lines than `samples` or more kept bytes than `kept_bytes` end the read with a `PayloadError`.

The whole body is still checked to be UTF-8 (incrementally, with an ASCII fast path) and its
first and last sample lines to look like an exposition, so HTML, JSON or random bytes are
rejected rather than read as "no data".
"""

from __future__ import annotations

import codecs
import functools
import math
import os
import re
from dataclasses import dataclass
from typing import NamedTuple


class PayloadError(ValueError):
    """The body is not a Prometheus text exposition, or more of one than the limits allow."""

    def __init__(self, message: str, reason: str = "bad_payload"):
        super().__init__(message)
        self.reason = reason


class Sample(NamedTuple):
    name: str
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class ParseLimits:
    """Per target. Envoy and linkerd2-proxy lines are well under 2 kB; a big Istio gateway has a
    few thousand `istio_requests_total` series."""

    line_bytes: int = 64 * 1024
    samples: int = 20_000
    kept_bytes: int = 4 * 1024 * 1024


_LINE = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?[ \t]+(\S+)(?:[ \t]+-?\d+)?[ \t]*$')
_LABEL_VALUE = r'"(?:[^"\\]|\\.)*"'
_LABELS = re.compile(rf'\s*(?:[a-zA-Z_][a-zA-Z0-9_]*\s*=\s*{_LABEL_VALUE}\s*(?:,\s*|$))*')
_LABEL = re.compile(rf'([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
_UNESCAPE_RE = re.compile(r'\\[\\"n]')
# how much of the body's first and last lines is kept to check that it is an exposition
_EDGE = 4096
_NAME_START = re.compile(rb"[a-zA-Z_:][a-zA-Z0-9_:]*[{ \t]")
# The end of a sample line whose start the last window cut: a value, maybe a timestamp.
_VALUE_END = re.compile(rb"[ \t]\S+(?:[ \t]+-?\d+)?[ \t]*$")


def _labels(text: str, line: str) -> dict[str, str]:
    # two C-level passes (shape, then pairs) instead of a Python loop per label
    if _LABELS.fullmatch(text) is None:
        raise PayloadError(f"malformed labels in line: {line[:200]!r}")
    labels = dict(_LABEL.findall(text))
    if "\\" in text:
        labels = {k: _UNESCAPE_RE.sub(lambda m: _UNESCAPE[m.group(0)], v) if "\\" in v else v
                  for k, v in labels.items()}
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


def parse_lines(lines: list[bytes]) -> list[Sample]:
    """Samples of kept lines; NaN samples are dropped (Envoy writes NaN for unset gauges)."""
    samples = []
    for raw in lines:
        sample = parse_line(raw.decode())
        if not math.isnan(sample.value):
            samples.append(sample)
    return samples


@functools.lru_cache(maxsize=64)
def _line_starts_pattern(prefixes: tuple[str, ...]) -> re.Pattern[bytes]:
    # one pass for all needles: the regex engine hops from newline to newline in C, which beats
    # one bytes.find pass per needle (measured: 250 against 335 us on a 300 kB body)
    return re.compile(b"\n(?:" + _trie(scan_prefixes(prefixes)) + b")")


def _trie(words: tuple[bytes, ...]) -> bytes:
    """An alternation of `words` with their shared starts written once (`envoy_(?:http_rbac_|
    listener_|rbac_)|istio_requests_total`): the engine compares a shared start once per line,
    not once per word (measured: 144 against 185 us on a 300 kB body)."""
    if not all(words):
        return b""  # a word ends here: its start is all a line needs
    groups: dict[bytes, list[bytes]] = {}
    for word in words:
        groups.setdefault(word[:1], []).append(word)
    parts = []
    for group in groups.values():
        common = os.path.commonprefix(group)
        parts.append(re.escape(common) + _trie(tuple(word[len(common):] for word in group)))
    return parts[0] if len(parts) == 1 else b"(?:" + b"|".join(parts) + b")"


@functools.lru_cache(maxsize=64)
def _any_of(literals: tuple[str, ...]) -> re.Pattern[bytes]:
    return re.compile(b"|".join(re.escape(literal.encode()) for literal in literals))


@functools.lru_cache(maxsize=64)
def scan_prefixes(prefixes: tuple[str, ...]) -> tuple[bytes, ...]:
    """Fewer, shorter needles for the scan: prefixes sharing a long enough start (`envoy_listener_
    ssl_`) are looked for once; what a needle finds is then checked against the real prefixes."""
    needles: list[str] = []
    for prefix in sorted(set(prefixes)):
        if needles:
            common = 0
            last = needles[-1]
            while common < min(len(last), len(prefix)) and last[common] == prefix[common]:
                common += 1
            if common == len(last) or common >= 10:
                needles[-1] = last[:common]
                continue
        needles.append(prefix)
    return tuple(p.encode() for p in needles)


def _sample_edge(window: bytes, first: bool, complete: bool) -> tuple[bytes, bool] | None:
    """The first (or last) sample line inside the body's first (or last) bytes, and whether it is
    whole there (`complete`: the window is the whole body)."""
    lines = window.split(b"\n")
    edge = len(lines) - 1 if first else 0  # the one line the window may cut
    order = range(len(lines)) if first else range(len(lines) - 1, -1, -1)
    for index in order:
        line = lines[index]
        if line.strip() and not line.startswith(b"#"):
            return line, complete or index != edge
    return None


class LineFilter:
    """Feed body chunks as they arrive; `lines()` at the end gives the kept lines (bytes),
    `samples()` parses them."""

    def __init__(self, prefixes: tuple[str, ...], names: re.Pattern[bytes] | None = None,
                 markers: tuple[str, ...] = (), marked: tuple[str, ...] = (),
                 limits: ParseLimits = ParseLimits()):
        """Keep lines starting with one of `prefixes`, or holding one of `markers` and starting
        with one of `marked`; then, if given, whose start `names` matches."""
        self._line_starts = tuple(p.encode() for p in prefixes + marked)
        self._needles = _line_starts_pattern(prefixes) if prefixes else None
        # one pass for all markers (one bytes.find pass each cost as much as the regex for all)
        self._markers = _any_of(markers) if markers else None
        self._marked = tuple(p.encode() for p in marked)
        self._longest = max((len(p) for p in self._line_starts), default=0)
        self._names = names
        self.limits = limits
        self._kept: list[bytes] = []
        self._kept_bytes = 0
        self._partial: list[bytes] | None = None  # a kept line still arriving, in pieces
        self._partial_size = 0
        self._skipping = False  # inside a line that is not kept
        self._carry = b""  # a line start too short to decide on yet
        self._head = b""
        self._tail = b""
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._offset = 0

    def _validate(self, chunk: bytes, final: bool = False) -> None:
        if chunk.isascii() and not self._utf8.getstate()[0]:
            self._offset += len(chunk)
            return
        try:
            self._utf8.decode(chunk, final)
        except UnicodeDecodeError as exc:
            raise PayloadError(f"invalid UTF-8 near byte {self._offset + exc.start}") from None
        self._offset += len(chunk)

    def _keep(self, line: bytes) -> None:
        if self._names is not None and not self._names.match(line):
            return
        limits = self.limits
        self._kept_bytes += len(line)
        if len(self._kept) >= limits.samples:
            raise PayloadError(f"more than {limits.samples} samples of the kept families", "too_large")
        if self._kept_bytes > limits.kept_bytes:
            raise PayloadError(f"more than {limits.kept_bytes} bytes of lines of the kept families", "too_large")
        self._kept.append(line)

    def _line_too_long(self, size: int) -> PayloadError:
        return PayloadError(f"a line of a kept family is longer than {self.limits.line_bytes} bytes "
                            f"(from byte {self._offset - size})", "too_large")

    def _continue_partial(self, chunk: bytes) -> int:
        """Add `chunk` to the kept line in progress; where the chunk goes on after it (-1: it does not)."""
        end = chunk.find(b"\n")
        piece = chunk if end < 0 else chunk[:end]
        self._partial_size += len(piece)
        if self._partial_size > self.limits.line_bytes:
            raise self._line_too_long(self._partial_size)
        self._partial.append(piece)
        if end < 0:
            return -1
        line, self._partial = b"".join(self._partial), None
        self._keep(line)
        return end + 1

    def _starts(self, chunk: bytes, pos: int) -> list[int]:
        """Starts of candidate lines in chunk[pos:], `pos` being a line start."""
        starts = set()
        if chunk.startswith(self._line_starts, pos):
            starts.add(pos)
        if self._needles is not None:
            starts.update(match.start() + 1 for match in self._needles.finditer(chunk, pos))
        if self._markers is not None:
            for match in self._markers.finditer(chunk, pos):
                start = chunk.rfind(b"\n", pos, match.start()) + 1 or pos
                if chunk.startswith(self._marked, start):
                    starts.add(start)
        return sorted(starts)

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        self._validate(chunk)
        if len(self._head) < _EDGE:
            self._head += chunk[:_EDGE - len(self._head)]
        self._tail = (self._tail + chunk)[-_EDGE:] if len(chunk) < _EDGE else chunk[-_EDGE:]
        pos = 0
        if self._partial is not None:
            pos = self._continue_partial(chunk)
        elif self._skipping:
            end = chunk.find(b"\n")
            pos = -1 if end < 0 else end + 1
            self._skipping = end < 0
        elif self._carry:
            # a line start shorter than the longest prefix: at most a few dozen bytes
            chunk, self._carry = self._carry + chunk, b""
        if pos < 0:
            return
        line_bytes = self.limits.line_bytes
        for start in self._starts(chunk, pos):
            end = chunk.find(b"\n", start)
            if end < 0:
                break  # the last line goes on in the next chunk: below
            if not chunk.startswith(self._line_starts, start):
                continue  # found by a shared needle, but not one of the prefixes
            if end - start > line_bytes:
                raise self._line_too_long(end - start)
            self._keep(chunk[start:end])
        last = chunk.rfind(b"\n", pos) + 1 or pos
        if last == len(chunk):
            return
        if chunk.startswith(self._line_starts, last):
            self._partial, self._partial_size = [chunk[last:]], len(chunk) - last
            if self._partial_size > line_bytes:
                raise self._line_too_long(self._partial_size)
        elif len(chunk) - last < self._longest and any(p.startswith(chunk[last:]) for p in self._line_starts):
            self._carry = chunk[last:]
        else:
            self._skipping = True

    def lines(self) -> list[bytes]:
        """The kept lines, once the body is complete; checks the body's edges."""
        self._validate(b"", final=True)
        if self._partial is not None:
            line, self._partial = b"".join(self._partial), None
            self._keep(line)
        elif self._carry:
            carry, self._carry = self._carry, b""
            if carry.startswith(self._line_starts):
                self._keep(carry)
        complete = self._offset <= _EDGE
        for first, edge in ((True, _sample_edge(self._head, True, complete)),
                            (False, _sample_edge(self._tail, False, complete))):
            if edge is None:
                continue
            line, whole = edge
            text = line.decode(errors="replace")
            # a line cut by the window is checked as far as it goes: the first line's start (a name,
            # then labels or a value), the last line's end (a value)
            cut_check = _NAME_START.match(line) if first else _VALUE_END.search(line)
            if not (_LINE.match(text) if whole else cut_check):
                raise PayloadError(f"malformed line: {text[:200]!r}")
        return self._kept

    def samples(self) -> list[Sample]:
        return parse_lines(self.lines())


def parse(body: bytes, prefixes: tuple[str, ...], names: re.Pattern[bytes] | None = None) -> list[Sample]:
    """The samples of a whole body (see `LineFilter`)."""
    lines = LineFilter(prefixes, names)
    lines.feed(body)
    return lines.samples()


def line_filter(dialect, limits: ParseLimits = ParseLimits()) -> LineFilter:
    """The filter for a mesh's proxy (`ProxyMetrics`)."""
    prefixes, markers, marked = dialect.scan
    return LineFilter(prefixes, dialect.names, markers, marked, limits)
