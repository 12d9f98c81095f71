"""Queries or selectors allowed to be empty, each with the reason. Nothing is skipped silently:
an excused emptiness is listed in the output and the report with its reason."""

from __future__ import annotations

from dataclasses import dataclass

from meshobs.verify.sources import Query


@dataclass(frozen=True)
class Expected:
    """`selector`: a selector text this query may contain that matches nothing (None: the whole
    query may return no series). `mesh` None applies to every mesh; `item` is a panel title or
    rule name, None for any."""

    reason: str
    selector: str | None = None
    mesh: str | None = None
    item: str | None = None

    def covers(self, query: Query, selector: str | None) -> bool:
        if self.mesh not in (None, query.mesh) or self.item not in (None, query.item):
            return False
        if self.selector is None:
            return selector is None
        return selector is not None and self.selector in selector


EXPECTED: tuple[Expected, ...] = (
    Expected(
        'ALERTS exist only while an alert fires; the panel shows 0 through `or vector(0)` otherwise',
        selector='ALERTS{alertstate="firing"',
    ),
)


def excuse(query: Query, selector: str | None = None) -> str | None:
    """The declared reason the query (or one of its selectors) may be empty, if any."""
    for expected in EXPECTED:
        if expected.covers(query, selector):
            return expected.reason
    return None
