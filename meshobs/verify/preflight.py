"""Before verify runs its queries: is this Prometheus in a state where they can answer? Rule groups
not loaded, no series of the mesh at all, or a Prometheus too young (a rate needs two scrapes inside
its window, a recorded series a rule evaluation after that) fail most queries for no fault of the
dashboards. Say so once, with what to do, instead of a failure per panel."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from meshobs.verify.promapi import Prometheus

# Prometheus writes this for a group it has not evaluated yet
_NEVER = "0001-01-01T00:00:00Z"


@dataclass(frozen=True)
class Youth:
    age: float  # seconds since Prometheus started
    scrape: float  # scrape interval, seconds
    evaluation: float  # longest rule evaluation interval, seconds
    unevaluated: tuple[str, ...]  # rule groups not evaluated yet
    groups: int

    @property
    def wait(self) -> float:
        """Seconds until two scrapes and two rule evaluations have happened (one more evaluation
        at least while a group has never been evaluated)."""
        left = 2 * self.scrape + 2 * self.evaluation - self.age
        return max(left, self.evaluation if self.unevaluated else 0.0, 0.0)

    @property
    def young(self) -> bool:
        return self.wait > 0

    def message(self, url: str) -> str:
        parts = [f"Prometheus at {url} started {duration(self.age)} ago"]
        if self.unevaluated:
            parts.append(f"{len(self.unevaluated)} of {self.groups} rule groups have not been evaluated yet "
                         f"({', '.join(self.unevaluated)})")
        return (" and ".join(parts) + f": rates need two scrapes (2 x {duration(self.scrape)}) and recorded series "
                f"two rule evaluations (2 x {duration(self.evaluation)}), so queries may be empty for about "
                f"{duration(self.wait)} more; run verify again then, or with --wait")


def _timestamp(text: str) -> float:
    # Prometheus writes nanoseconds; fromisoformat takes at most microseconds
    head, dot, tail = text.rstrip("Z").partition(".")
    fraction = "." + tail[:6] if dot else ""
    return datetime.fromisoformat(f"{head}{fraction}+00:00").timestamp()


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    minutes, rest = divmod(seconds, 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"


def evaluation_interval(groups: list[dict]) -> float:
    return max((float(group.get("interval", 0)) for group in groups), default=0.0)


def measure(prometheus: Prometheus, scrape: float, now: float | None = None) -> Youth:
    """How young the Prometheus is, from its start time and its rule groups' last evaluation."""
    now = time.time() if now is None else now
    started = _timestamp(prometheus.runtime_info()["startTime"])
    groups = prometheus.rule_groups()
    unevaluated = tuple(group["name"] for group in groups if group.get("lastEvaluation", _NEVER) == _NEVER)
    return Youth(now - started, scrape, evaluation_interval(groups), unevaluated, len(groups))


def unloaded(prometheus: Prometheus, expected: dict[str, tuple[str, str]]) -> str | None:
    """A warning naming the rendered rule groups (name -> (mesh, rule file)) Prometheus has not
    loaded: the dashboards read their recorded series, so without them every variable is empty."""
    loaded = {group["name"] for group in prometheus.rule_groups()}
    missing = {name: where for name, where in sorted(expected.items()) if name not in loaded}
    if not missing:
        return None
    files = ", ".join(sorted({path for _, path in missing.values()}))
    meshes = sorted({mesh for mesh, _ in expected.values()})
    return (f"Prometheus at {prometheus.url} has not loaded the rule groups {', '.join(missing)}: add {files} to its "
            f"rule_files (deploy/prometheus/ does); the dashboards read the series these rules record"
            f"{_only_hint(meshes, _absent(expected, loaded))}")


def _absent(expected: dict[str, tuple[str, str]], loaded: set[str]) -> set[str]:
    """Meshes none of whose rule groups is loaded."""
    meshes = {mesh for mesh, _ in expected.values()}
    return {mesh for mesh in meshes if not any(m == mesh and name in loaded for name, (m, _) in expected.items())}


def _only_hint(meshes: list[str], absent: set[str]) -> str:
    """`; if you do not run X, verify only what you run: --mesh Y` when some meshes look absent."""
    running = [mesh for mesh in meshes if mesh not in absent]
    if not absent or not running:
        return ""
    return f"; if you do not run {', '.join(sorted(absent))}, verify only what you run: " + \
        " ".join(f"--mesh {mesh}" for mesh in running)


def unscraped(prometheus: Prometheus, meshes: list[str], at: float) -> str | None:
    """A warning naming the meshes of which Prometheus has no request series at all."""
    from meshobs.meshes import DIALECTS

    known = [DIALECTS[mesh] for mesh in meshes if mesh in DIALECTS]
    empty = [d for d in known if not prometheus.instant(f'count({{__name__=~"{_names(d)}"}})', at)]
    if not empty:
        return None
    return (f"Prometheus at {prometheus.url} has no request series of "
            f"{', '.join(f'{d.title} ({_names(d)})' for d in empty)}: is it scraping the sidecars? "
            f"deploy/prometheus/prometheus.yml has the scrape jobs, docs/labels.md the labels they must set"
            f"{_only_hint([d.name for d in known], {d.name for d in empty})}")


def _names(dialect) -> str:
    return "|".join(dialect.requests.metric_names())
