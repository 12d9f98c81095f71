"""Names, labels and file helpers shared by the deploy parts, so every manifest agrees on them."""

from __future__ import annotations

from typing import Any, Iterable

from meshobs import yamlfmt
from meshobs.config import Config

HEADER = "# Rendered by meshobs. Do not edit: change meshobs.yaml and run `meshobs build`.\n"

EXPORTER = "meshobs-exporter"
METRICS_PORT_NAME = "metrics"
# The image's non-root user (distroless "nonroot" numbering); numeric so the kubelet can
# verify runAsNonRoot without reading /etc/passwd.
RUN_AS_USER = 65532

# Where the rendered deploy/grafana/dashboards folder is mounted in a Grafana container.
GRAFANA_DASHBOARDS_PATH = "/var/lib/grafana/dashboards/meshobs"


def labels(name: str, component: str | None = None) -> dict[str, str]:
    result = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "meshobs"}
    if component:
        result["app.kubernetes.io/component"] = component
    return result


def selector() -> dict[str, str]:
    """Pod labels that the Service, NetworkPolicy and scrape jobs select the exporter by."""
    return {"app.kubernetes.io/name": EXPORTER}


def metadata(name: str, namespace: str | None = None, component: str = "exporter", **extra: Any) -> dict:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    meta["labels"] = labels(EXPORTER if component == "exporter" else "meshobs", component)
    meta.update(extra)
    return meta


def yaml_file(*documents: Any) -> bytes:
    """One YAML file: a single document, or several separated by `---`."""
    body = yamlfmt.dump(documents[0]) if len(documents) == 1 else yamlfmt.dump_all(documents)
    return (HEADER + body).encode()


def kustomization(resources: Iterable[str] = (), namespace: str | None = None, generators: Iterable[dict] = ()) -> bytes:
    doc: dict[str, Any] = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
    if namespace:
        doc["namespace"] = namespace
    resources = list(resources)
    if resources:
        doc["resources"] = resources
    generators = list(generators)
    if generators:
        doc["configMapGenerator"] = generators
        # Stable names: Prometheus, Alertmanager and Grafana deployments outside this
        # kustomization mount these ConfigMaps by name.
        doc["generatorOptions"] = {"disableNameSuffixHash": True}
    return yaml_file(doc)


def fluentd_address(cfg: Config) -> str:
    from meshobs.render.collectors.endpoints import FLUENTD_NAME, FORWARD_PORT

    return f"{FLUENTD_NAME}.{cfg.logging.namespace}.svc:{FORWARD_PORT}"
