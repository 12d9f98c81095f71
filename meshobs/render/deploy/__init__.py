"""deploy/: what it takes to run meshobs in a cluster, from the per-mesh artefacts.

`render(cfg, dialects, artefacts)` is called by the build after every per-mesh renderer and
returns files under deploy/, each folder applyable with `kubectl apply -k`:

    deploy/exporter/base        namespace, ServiceAccount, read-only ClusterRole, Service, NetworkPolicy
    deploy/exporter/deployment  the single-replica exporter (base included)
    deploy/exporter/sharded     the StatefulSet, one shard per ordinal (base included)
    deploy/operator             PrometheusRule per rule file, ServiceMonitor for the exporter
    deploy/prometheus           prometheus.yml and its rule files, as ConfigMaps
    deploy/alertmanager         alertmanager.yml, as a ConfigMap
    deploy/prometheus-agent     many clusters: Prometheus in agent mode, remote-writing to a store
    deploy/ruler                many clusters: every rule file, global roll-ups included, for the
                                ruler of the store
    deploy/grafana              provisioning files, dashboards, sidecar ConfigMaps
    deploy/allow-scrapes/<mesh> what lets Prometheus and the exporter reach the proxies in
                                default-deny namespaces (NetworkPolicies, Linkerd authorization)
"""

from __future__ import annotations

from meshobs.config import Config
from meshobs.meshes import Dialect
from meshobs.render.deploy import alertmanager, allow_scrapes, exporter, grafana, long_term, prometheus


def render(cfg: Config, dialects: list[Dialect], artefacts: dict[str, bytes]) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    files.update(exporter.render(cfg))
    files.update(prometheus.render(cfg, dialects, artefacts))
    files.update(long_term.render(cfg, dialects, artefacts))
    files.update(alertmanager.render(cfg, dialects))
    files.update(grafana.render(cfg, dialects, artefacts))
    files.update(allow_scrapes.render(cfg, dialects))
    return dict(sorted(files.items()))
