"""Global rules per mesh: `alerts/<mesh>/global/global-rules.yaml` rolls the per-cluster
recordings (meshobs/recordings.py) up across clusters, for a ruler that sees every cluster
(Thanos Ruler, Mimir ruler, vmalert on a shared VictoriaMetrics, or a federating Prometheus).

It reads recorded series only, never raw ones: each cluster (or the central ruler, with the
per-cluster files) records `level:metric:operation` grouped by the cluster label; this file
records `global_<level>:metric:operation` without it. The pairs of calls between clusters keep
both ends (`source_cluster`, `destination_cluster`) once the cluster label is gone.
- rates and increases add up across clusters (`sum without (cluster)`);
- a rule computed from recordings only (a ratio) is recomputed from the rolled-up inputs (its own
  expression over the global names), never averaged;
- minima and maxima (certificate expiry and lifetime, a remote cluster's reachability) stay minima
  and maxima;
- quantiles cannot be combined from per-cluster quantiles: they are left out (a global p99
  needs the raw histogram buckets in one place).

The file sits in a folder of its own so that the per-cluster Prometheus (deploy/prometheus,
the operator's PrometheusRules) and `meshobs verify` of a cluster do not load it.
"""

from __future__ import annotations

import re

from meshobs import recordings as rec
from meshobs import recordings_crosscluster
from meshobs import yamlfmt
from meshobs.checks import metric_names
from meshobs.config import Config
from meshobs.meshes.base import Dialect

GLOBAL_PREFIX = "global_"
# Operations whose values add up across clusters, and the aggregation of the others.
_ADDITIVE = ("rate", "increase")
_KEPT = {"min": "min", "max": "max"}
_NOT_COMBINABLE = ("histogram_quantile",)


def global_name(record: str) -> str:
    return GLOBAL_PREFIX + record


def path(mesh: str) -> str:
    return f"alerts/{mesh}/global/global-rules.yaml"


def _name(name: str) -> str:
    """A pattern matching `name` as a whole metric name, not as part of a longer one."""
    return rf"(?<![\w:]){re.escape(name)}(?![\w:])"


def _reads(expr: str, names: set[str]) -> list[str]:
    return [name for name in names if re.search(_name(name), expr)]


def _aggregation(operation: str) -> str | None:
    if operation.startswith(_NOT_COMBINABLE):
        return None
    if operation.startswith(_ADDITIVE):
        return "sum"
    return _KEPT.get(operation)


def global_rules(cfg: Config, dialect: Dialect) -> list[rec.Rule]:
    """The roll-up of every per-cluster recording of `dialect` that can be rolled up."""
    per_cluster = rec.traffic_rules(cfg, dialect) + rec.security_rules(cfg, dialect) + recordings_crosscluster.rules(cfg, dialect)
    recorded = {rule.record for rule in per_cluster}
    out: list[rec.Rule] = []
    seen: set[str] = set()
    for rule in per_cluster:
        if rule.record in seen:  # one roll-up per recorded name (quantiles repeat it per label)
            continue
        seen.add(rule.record)
        reads = _reads(rule.expr, recorded)
        if reads and metric_names(rule.expr) <= recorded:
            # a derived recording (a ratio): the same expression over the rolled-up inputs
            expr = rule.expr
            for name in sorted(reads, key=len, reverse=True):
                expr = re.sub(_name(name), global_name(name), expr)
            out.append(rec.Rule(global_name(rule.record), expr, dict(rule.labels)))
            continue
        operation = rule.record.rsplit(":", 1)[-1]
        aggregation = _aggregation(operation)
        if aggregation is None:
            continue
        selector = f'{rule.record}{{mesh="{dialect.name}"}}'
        out.append(rec.Rule(global_name(rule.record), f"{aggregation} without ({cfg.cluster_label}) ({selector})",
                            dict(rule.labels)))
    return out


def render(cfg: Config, dialect: Dialect) -> dict[str, bytes]:
    rules = global_rules(cfg, dialect)
    document = {"groups": [{
        "name": f"meshobs-{dialect.name}-global",
        "rules": [{"record": r.record, "expr": r.expr, "labels": dict(r.labels)} for r in rules],
    }]}
    header = (f"# Rendered by meshobs for {dialect.title}: per-cluster recordings rolled up across clusters, for a\n"
              "# ruler that sees every cluster (see docs/long-term-stores.md). Do not edit: change meshobs.yaml and run\n"
              "# `meshobs build`.\n")
    return {path(dialect.name): (header + yamlfmt.dump(document)).encode()}
