"""What `meshobs verify` prints: failures grouped by cause, the rest one per query with the query
indented under it, a progress line while it runs and a table per mesh at the end."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from meshobs.verify.check import Outcome

# Says nothing about the cause: two queries returning no series may do so for different reasons.
_NOT_A_CAUSE = "returns no series"
# places named under a group before "... and N more"
SHOWN = 5
_KINDS = (("panel", "panels"), ("record", "recording rules"), ("alert", "alerts"))


def query_lines(expr: str) -> list[str]:
    """`    query: ...`, a multi-line query's further lines aligned under its first."""
    first, *rest = expr.strip("\n").splitlines() or [""]
    return [f"    query: {first}"] + [f"           {line}" for line in rest]


def _causes(outcomes: list[Outcome]) -> dict[tuple[str, str], list[Outcome]]:
    """(FAIL|note, text) -> the outcomes having it, for texts shared by more than one query."""
    found: dict[tuple[str, str], list[Outcome]] = {}
    for outcome in outcomes:
        for label, texts in (("FAIL", outcome.problems), ("note", outcome.excused)):
            for text in dict.fromkeys(texts):
                if text != _NOT_A_CAUSE:
                    found.setdefault((label, text), []).append(outcome)
    return {key: group for key, group in found.items() if len(group) > 1}


def lines(outcomes: list[Outcome], verbose: bool = False) -> list[str]:
    groups = _causes(outcomes)
    out: list[str] = []
    for (label, text), group in sorted(groups.items(), key=lambda item: (item[0][0] != "FAIL", -len(item[1]))):
        out.append(f"{label} {text} → {len(group)} queries:")
        shown = group if verbose else group[:SHOWN]
        out += [f"    {outcome.query.where}" for outcome in shown]
        if len(shown) < len(group):
            out.append(f"    … and {len(group) - len(shown)} more (-v lists them all)")
    for outcome in outcomes:
        problems = [p for p in outcome.problems if ("FAIL", p) not in groups]
        if _NOT_A_CAUSE in problems and len(problems) < len(outcome.problems):
            problems.remove(_NOT_A_CAUSE)  # explained by the grouped cause
        notes = [n for n in outcome.excused if ("note", n) not in groups]
        out += [f"FAIL {outcome.query.where}: {problem}" for problem in problems]
        if problems:
            out += query_lines(outcome.expr)
        out += [f"note {outcome.query.where}: {note}" for note in notes]
    return out


def table(outcomes: list[Outcome]) -> list[str]:
    """Queries, ok, failed and declared exceptions per mesh and kind, with a total row."""
    rows = []
    for mesh in sorted({o.query.mesh for o in outcomes}):
        for kind, title in _KINDS:
            chosen = [o for o in outcomes if o.query.mesh == mesh and o.query.kind == kind]
            if chosen:
                rows.append((mesh, title, *_counts(chosen)))
    rows.append(("total", "", *_counts(outcomes)))
    header = ("mesh", "kind", "queries", "ok", "failed", "excused")
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]

    def render(row) -> str:
        text = [str(cell).ljust(widths[i]) if i < 2 else str(cell).rjust(widths[i]) for i, cell in enumerate(row)]
        return "  ".join(text).rstrip()

    return [render(header)] + [render(row) for row in rows]


def _counts(outcomes: list[Outcome]) -> tuple[int, int, int, int]:
    failed = sum(1 for o in outcomes if not o.ok)
    return len(outcomes), len(outcomes) - failed, failed, sum(1 for o in outcomes if o.excused)


class Progress:
    """`verify: 120/285 queries, 3 failed` on one rewritten line of a terminal; elsewhere (CI logs)
    a line every `every` seconds."""

    def __init__(self, total: int, stream: TextIO | None = None, every: float = 10.0):
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = every
        self.done = 0
        self.failed = 0
        self._last = time.monotonic()

    def __call__(self, outcome: Outcome) -> None:
        self.done += 1
        self.failed += not outcome.ok
        text = f"verify: {self.done}/{self.total} queries, {self.failed} failed"
        if self.tty:
            self.stream.write(f"\r{text}\x1b[K")
            self.stream.flush()
        elif time.monotonic() - self._last >= self.every:
            self._last = time.monotonic()
            self.stream.write(text + "\n")

    def close(self) -> None:
        if self.tty and self.done:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
