"""Read a promtool unit-test file (`promtool test rules` format) into plain data, so that the same
scenarios can be replayed into another engine (VictoriaMetrics + vmalert, tests/support/victoria.py).

    tests = read(document)                  # the YAML document as a dict
    for case in tests:
        case.samples()                      # [(labels, [(offset_seconds, value), ...]), ...]
        case.expected_alerts                # [(eval_seconds, alertname, [labels, ...]), ...]

Covers what promtool's series notation says for float samples: `a`, `axN`, `a+bxN`, `a-bxN`,
`_`, `_xN` and `stale` (a stale marker ends the series; later samples start it again).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from meshobs.config import duration_seconds

Labels = dict[str, str]
Samples = list[tuple[float, float]]

_TERM = re.compile(r"^(?P<start>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|_|stale)"
                   r"(?:(?P<op>[-+])(?P<step>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?))?(?:x(?P<times>\d+))?$")
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|\})')


class NotationError(ValueError):
    """A series or value string promtool would read but this reader does not (say which)."""


def seconds(duration: str) -> float:
    """A Prometheus duration (`1h30m`, `90s`) in seconds."""
    try:
        return duration_seconds(duration)
    except ValueError:
        raise NotationError(f"not a duration: {duration!r}") from None


def parse_series(text: str) -> Labels:
    """`metric{a="b", c="d"}` (or `{__name__="metric", ...}`) as a label dict with `__name__`."""
    text = text.strip()
    labels: Labels = {}
    name = _NAME.match(text)
    rest = text
    if name:
        labels["__name__"] = name.group(0)
        rest = text[name.end():].strip()
    if rest:
        if not rest.startswith("{"):
            raise NotationError(f"cannot read series {text!r}")
        rest = rest[1:].strip()
        if rest == "}":
            rest = ""
        while rest:
            match = _LABEL.match(rest)
            if not match:
                raise NotationError(f"cannot read the labels of series {text!r}")
            labels[match.group(1)] = bytes(match.group(2), "utf-8").decode("unicode_escape")
            rest = rest[match.end():]
            if match.group(3) == "}":
                if rest.strip():
                    raise NotationError(f"text after the labels of series {text!r}")
                break
    if "__name__" not in labels:
        raise NotationError(f"series {text!r} has no metric name")
    return labels


def expand(values: str, interval: float) -> list[list[tuple[float, float]]]:
    """The samples of a promtool value string, as runs split at stale markers: each run is
    [(offset seconds, value), ...] with offsets counted in `interval`s from 0."""
    runs: list[list[tuple[float, float]]] = [[]]
    index = 0
    for term in values.split():
        match = _TERM.match(term)
        if not match:
            raise NotationError(f"cannot read value {term!r} in {values!r}")
        start, op, step, times = match.group("start", "op", "step", "times")
        count = int(times) + 1 if times is not None else 1
        if start in ("_", "stale"):
            if op:
                raise NotationError(f"{term!r}: {start} takes no increment")
            if start == "stale":
                runs.append([])
            index += count
            continue
        value, delta = float(start), float(step or 0) * (-1 if op == "-" else 1)
        for i in range(count):
            runs[-1].append((index * interval, value + i * delta))
            index += 1
    return [run for run in runs if run]


@dataclass
class Case:
    name: str
    interval: float
    input_series: list[dict]
    alert_tests: list[dict]

    def samples(self) -> list[tuple[Labels, Samples]]:
        """Every input series' labels and samples; a series split by stale markers comes once per run."""
        out = []
        for item in self.input_series:
            labels = parse_series(item["series"])
            for run in expand(str(item.get("values", "")), self.interval):
                out.append((labels, run))
        return out

    @property
    def end(self) -> float:
        """Seconds from 0 to the last evaluation the case asks about."""
        return max((seconds(t["eval_time"]) for t in self.alert_tests), default=0.0)

    @property
    def expected_alerts(self) -> list[tuple[float, str, list[Labels]]]:
        """(eval seconds, alertname, label sets expected firing) per alert_rule_test, the labels
        as promtool compares them (alertname not included)."""
        return [(seconds(t["eval_time"]), t["alertname"],
                 [{k: str(v) for k, v in (a.get("exp_labels") or {}).items()} for a in (t.get("exp_alerts") or [])])
                for t in self.alert_tests]


def read(document: dict) -> list[Case]:
    """The test cases of one promtool test file (already loaded from YAML)."""
    default_interval = document.get("evaluation_interval", "1m")
    return [Case(name=test.get("name", f"test {i}"), interval=seconds(test.get("interval", default_interval)),
                 input_series=test.get("input_series") or [], alert_tests=test.get("alert_rule_test") or [])
            for i, test in enumerate(document.get("tests") or [])]
