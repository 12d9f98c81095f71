"""What every terminal command works with: the Prometheus, what it records, the user's filters,
one evaluation time per frame; recorded families read per mesh in parallel and joined into rows."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone

from meshobs import recordings as rec
from meshobs.config import duration_seconds
from meshobs.query.client import Prometheus, Sample
from meshobs.query.recorded import Catalogue, Read

Key = tuple[str, ...]


@dataclass(frozen=True)
class Scope:
    meshes: list[str]
    window: str
    cluster_label: str
    namespace: str | None = None
    cluster: str | None = None


@dataclass(frozen=True)
class Column:
    """One number of a row: a recorded family (or series) with matchers, read for every mesh."""

    name: str
    family: rec.Family | rec.Recorded
    matchers: dict[str, str] = field(default_factory=dict)
    namespace_label: str = "destination_namespace"  # which side -n filters
    highest: bool = False  # a quantile: over a longer window, its highest recorded value


class Context:
    def __init__(self, prometheus: Prometheus, catalogue: Catalogue, scope: Scope, at: float):
        self.prometheus = prometheus
        self.catalogue = catalogue
        self.scope = scope
        self.at = at
        self.windows: set[str] = set()  # windows the numbers of this frame cover

    @property
    def timestamp(self) -> str:
        return self.iso(self.at)

    @staticmethod
    def iso(unix: float) -> str:
        return datetime.fromtimestamp(unix, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _read(self, mesh: str, column: Column) -> Read | None:
        matchers = dict(column.matchers)
        if self.scope.namespace:
            matchers.setdefault(column.namespace_label, self.scope.namespace)
        if self.scope.cluster:
            matchers[self.scope.cluster_label] = self.scope.cluster
        if isinstance(column.family, rec.Recorded):
            if not self.catalogue.has(mesh, column.family):
                return None
            return Read(column.family.ref(mesh, **matchers), "")
        return self.catalogue.read(mesh, column.family, self.scope.window, column.highest, **matchers)

    def fetch(self, columns: list[Column]) -> dict[str, dict[str, list[Sample]]]:
        """column name -> mesh -> samples, every query at the frame's time, in parallel;
        a family a mesh does not record is absent for that mesh."""
        jobs = []
        for column in columns:
            for mesh in self.scope.meshes:
                read = self._read(mesh, column)
                if read is not None:
                    jobs.append((column.name, mesh, read))
                    if read.window:
                        self.windows.add(read.window)
        with ThreadPoolExecutor(max_workers=min(8, max(1, len(jobs)))) as pool:
            results = list(pool.map(lambda job: self.prometheus.vector(job[2].expr, self.at), jobs))
        out: dict[str, dict[str, list[Sample]]] = {column.name: {} for column in columns}
        for (name, mesh, _), samples in zip(jobs, results):
            out[name][mesh] = samples
        return out

    def key(self, mesh: str, sample: Sample, labels: tuple[str, ...]) -> Key:
        return (mesh, sample.labels.get(self.scope.cluster_label, "")) + tuple(sample.labels.get(l, "") for l in labels)

    def join(self, fetched: dict[str, dict[str, list[Sample]]], labels: tuple[str, ...],
             group: str = "") -> dict[Key, dict[str, float]]:
        """Rows keyed by (mesh, cluster, *labels): column name -> value. With `group`, values are
        nested by that label (a TLS failure reason, a quantile)."""
        rows: dict[Key, dict] = {}
        for name, by_mesh in fetched.items():
            for mesh, samples in by_mesh.items():
                for sample in samples:
                    row = rows.setdefault(self.key(mesh, sample, labels), {})
                    if group and group in sample.labels:
                        row.setdefault(name, {})[sample.labels[group]] = sample.value
                    else:
                        row[name] = row.get(name, 0.0) + sample.value
        return rows

    @property
    def window(self) -> str:
        """The window the frame's numbers cover: the requested one, or the shortest recorded
        one where that is longer."""
        return max(self.windows, key=duration_seconds) if self.windows else self.scope.window


def success_rate(requests: float | None, errors: float | None) -> float | None:
    if not requests:
        return None
    return max(0.0, 1.0 - (errors or 0.0) / requests)


def mtls_share(values: dict[str, float], mtls_recorded: bool, plaintext_recorded: bool = True) -> float | None:
    """mTLS requests over all requests, from the window's rates (not an average of recorded
    ratios, which idle intervals make NaN); where the mesh labels no mTLS requests, as its
    recording rule does: all but the plaintext ones; None where it labels neither."""
    requests = values.get("requests")
    if not requests:
        return None
    if mtls_recorded:
        return min(1.0, values.get("mtls", 0.0) / requests)
    return max(0.0, 1.0 - values.get("plaintext", 0.0) / requests) if plaintext_recorded else None


def rounded(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)
