"""What a Prometheus has recorded for meshobs, and how to read a recorded family at any window.

The loaded recording rules (not the local configuration) say which meshes and windows exist, so
the commands read exactly what the user's Prometheus records. A window that is recorded is read
as is; a longer one is the mean of the longest recorded shorter window over it (over every
evaluation in the window, from the rule group's interval); a window shorter than every recorded
one falls back to the shortest recorded window (and says so).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from meshobs import promql
from meshobs import recordings as rec
from meshobs.config import duration_seconds
from meshobs.errors import QueryError
from meshobs.meshes import DIALECTS

# Label values the commands accept for names: Kubernetes, Consul and SPIFFE-ish names. Anything
# else is refused before it reaches a query (no quoting games).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")


def checked_name(option: str, value: str) -> str:
    if not _NAME.fullmatch(value):
        raise QueryError(f"{option}: {value!r} is not a valid name (letters, digits, '-', '_', '.', ':')")
    return value


@dataclass(frozen=True)
class Read:
    """A recorded family read for one mesh: the PromQL and the window its numbers cover."""

    expr: str
    window: str


class Catalogue:
    def __init__(self, url: str, records: dict[str, dict[str, float]]):
        self.url = url
        self.records = records  # mesh -> recorded series name -> its group's evaluation interval (s)
        self._windows: dict[tuple[str, rec.Family], list[str]] = {}

    @classmethod
    def from_rules(cls, url: str, rules: list[tuple[str, dict[str, str], float]]) -> "Catalogue":
        records: dict[str, dict[str, float]] = {}
        for name, labels, interval in rules:
            if labels.get("mesh") in DIALECTS and ":mesh_" in name:
                records.setdefault(labels["mesh"], {})[name] = interval
        return cls(url, records)

    def meshes(self, wanted: list[str] | None) -> list[str]:
        """The meshes to show: `wanted`, each of which must have rules loaded, or all that have."""
        if not self.records:
            raise QueryError(f"Prometheus at {self.url} has no meshobs recording rules loaded "
                             "(load alerts/<mesh>/recording-rules.yaml from `meshobs build`)")
        for mesh in wanted or ():
            if mesh not in self.records:
                raise QueryError(f"Prometheus at {self.url} has no meshobs recording rules for mesh {mesh!r} "
                                 f"(it has: {', '.join(sorted(self.records))})")
        return sorted(wanted) if wanted else sorted(self.records)

    def has(self, mesh: str, recorded: rec.Recorded) -> bool:
        return recorded.name in self.records.get(mesh, ())

    def windows(self, mesh: str, family: rec.Family) -> list[str]:
        """The windows `family` is recorded at for `mesh`, shortest first."""
        key = (mesh, family)
        if key not in self._windows:
            self._windows[key] = self._find_windows(mesh, family)
        return self._windows[key]

    def _find_windows(self, mesh: str, family: rec.Family) -> list[str]:
        prefix = family("").name
        found = [name[len(prefix):] for name in self.records.get(mesh, ()) if name.startswith(prefix)]
        valid = []
        for window in found:
            try:
                duration_seconds(window)
            except ValueError:
                continue  # another family sharing the prefix (ratio_rate vs rate)
            valid.append(window)
        return sorted(valid, key=duration_seconds)

    def read(self, mesh: str, family: rec.Family, window: str, highest: bool = False, **matchers: str) -> Read | None:
        """`family` for `mesh` over `window`, or None when this Prometheus does not record it.
        A longer window averages the recorded rate, or with `highest` (quantiles) takes its maximum."""
        windows = self.windows(mesh, family)
        if not windows:
            return None
        wanted = duration_seconds(window)
        shorter = [w for w in windows if duration_seconds(w) <= wanted]
        if not shorter:
            return Read(family(windows[0]).ref(mesh, **matchers), windows[0])
        best = shorter[-1]
        ref = family(best).ref(mesh, **matchers)
        if duration_seconds(best) == wanted:
            return Read(ref, best)
        if highest:
            return Read(promql.highest_over(ref, window), window)
        evaluations = wanted / self.records[mesh][family(best).name]
        return Read(promql.average_over(ref, window, evaluations), window)
