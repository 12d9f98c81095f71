"""Prometheus wiring: a plain prometheus.yml (scrape jobs per mesh, the exporter, rule files,
Alertmanager) with its rule files, and the same rules as prometheus-operator resources.

Each proxy is scraped once, on the port its mesh documents: Istio's Envoy stats on 15090
(Istio's merged 15020 endpoint serves the same stats again, so scraping both would count twice),
Linkerd's proxy admin port 4191, Consul's Envoy merged-metrics listener 20200.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from meshobs.config import Config, duration_seconds
from meshobs.meshes import Dialect
from meshobs.render.deploy.common import EXPORTER, METRICS_PORT_NAME, kustomization, metadata, selector, yaml_file

CONSUL_METRICS_PORT = 20200
# Prometheus rejects a scrape timeout longer than the interval; 10s is its default.
_DEFAULT_SCRAPE_TIMEOUT = 10


def _pod_labels() -> list[dict]:
    """namespace and pod as target labels, as the meshes' own scrape configs do."""
    return [
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
    ]


def _keep(source_labels: list[str], regex: str) -> dict:
    return {"source_labels": source_labels, "action": "keep", "regex": regex}


def _istio_jobs() -> list[dict]:
    proxies = {
        "job_name": "istio-proxies",
        "metrics_path": "/stats/prometheus",
        "kubernetes_sd_configs": [{"role": "pod"}],
        "relabel_configs": [
            # Istio names the sidecar's Envoy stats port `http-envoy-prom` (15090).
            _keep(["__meta_kubernetes_pod_container_name", "__meta_kubernetes_pod_container_port_name"], "istio-proxy;.*-envoy-prom"),
            *_pod_labels(),
        ],
    }
    istiod = {
        "job_name": "istiod",
        "kubernetes_sd_configs": [{"role": "endpoints", "namespaces": {"names": ["istio-system"]}}],
        "relabel_configs": [
            _keep(["__meta_kubernetes_service_name", "__meta_kubernetes_endpoint_port_name"], "istiod;http-monitoring"),
            *_pod_labels(),
        ],
    }
    return [proxies, istiod]


def _linkerd_jobs() -> list[dict]:
    proxies = {
        "job_name": "linkerd-proxies",
        "kubernetes_sd_configs": [{"role": "pod"}],
        "relabel_configs": [
            _keep(["__meta_kubernetes_pod_container_name", "__meta_kubernetes_pod_container_port_name"], "linkerd-proxy;linkerd-admin"),
            *_pod_labels(),
            # The injector labels pods linkerd.io/proxy-deployment=NAME etc.; the rules group by
            # `deployment`, as Linkerd's own Prometheus does.
            {"action": "labelmap", "regex": "__meta_kubernetes_pod_label_linkerd_io_proxy_(deployment|statefulset|daemonset|replicaset)"},
        ],
    }
    control_plane = {
        "job_name": "linkerd-control-plane",
        "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": ["linkerd"]}}],
        "relabel_configs": [
            _keep(["__meta_kubernetes_pod_container_port_name"], "admin-http"),
            *_pod_labels(),
            {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "component"},
        ],
    }
    return [proxies, control_plane]


CONSUL_HTTP_PORT = 8500  # a Consul agent's HTTP API, where /v1/agent/metrics is served


def _consul_jobs(cfg: Config) -> list[dict]:
    meta = "__meta_consul_service_metadata_"
    return [
        {
            "job_name": "consul-proxies",
            "consul_sd_configs": [{"server": cfg.deploy.consul_address}],
            "relabel_configs": [
                # Only the sidecar proxies' registrations; the merged-metrics listener serves
                # Envoy's stats with Consul's consul_* tags.
                _keep(["__meta_consul_service"], ".+-sidecar-proxy"),
                {
                    "source_labels": ["__meta_consul_service_address"],
                    "regex": "(.+)",
                    "target_label": "__address__",
                    "replacement": f"$1:{CONSUL_METRICS_PORT}",
                },
                {"source_labels": [f"{meta}k8s_namespace"], "regex": "(.+)", "target_label": "namespace"},
                {"source_labels": [f"{meta}pod_name"], "regex": "(.+)", "target_label": "pod"},
                {"source_labels": ["__meta_consul_dc"], "target_label": "datacenter"},
            ],
        },
        {
            # The servers' own telemetry (raft, autopilot, connected dataplanes) for the control-plane
            # dashboard and MeshControlPlaneDown; needs `telemetry.prometheus_retention_time` set and,
            # with ACLs, a token with agent:read (`authorization` here).
            "job_name": "consul-servers",
            "metrics_path": "/v1/agent/metrics",
            "params": {"format": ["prometheus"]},
            "consul_sd_configs": [{"server": cfg.deploy.consul_address, "services": ["consul"]}],
            "relabel_configs": [
                {"source_labels": ["__meta_consul_address"], "regex": "(.+)", "target_label": "__address__",
                 "replacement": f"$1:{CONSUL_HTTP_PORT}"},
                {"source_labels": ["__meta_consul_node"], "target_label": "pod"},
                {"source_labels": ["__meta_consul_dc"], "target_label": "datacenter"},
            ],
        },
    ]


def _exporter_job(cfg: Config) -> dict:
    (name, value), = selector().items()
    label = "__meta_kubernetes_pod_label_" + "".join(c if c.isalnum() else "_" for c in name)
    return {
        "job_name": EXPORTER,
        # The exporter's series carry the proxied workload's namespace; keep it over the target's.
        "honor_labels": True,
        "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [cfg.deploy.namespace]}}],
        "relabel_configs": [
            _keep([label, "__meta_kubernetes_pod_container_port_name"], f"{value};{METRICS_PORT_NAME}"),
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "exporter_pod"},
        ],
    }


def scrape_jobs(cfg: Config, dialects: list[Dialect]) -> list[dict]:
    per_mesh = {"istio": _istio_jobs, "linkerd": _linkerd_jobs, "consul": lambda: _consul_jobs(cfg)}
    jobs = [_exporter_job(cfg)]
    for dialect in dialects:
        jobs += per_mesh[dialect.name]()
    if cfg.deploy.cluster:
        # A target label, not an external label: the recording rules group by it, and rules
        # never see external labels.
        for job in jobs:
            job["relabel_configs"].append({"target_label": cfg.cluster_label, "replacement": cfg.deploy.cluster})
    return jobs


def rule_files(artefacts: dict[str, bytes]) -> dict[str, bytes]:
    """alerts/<mesh>/<name>.yaml as flat `<mesh>-<name>.yaml` (ConfigMap keys cannot hold '/')."""
    rules = {}
    for path, content in artefacts.items():
        parts = PurePosixPath(path).parts
        if len(parts) == 3 and parts[0] == "alerts" and parts[2].endswith(".yaml"):
            rules[f"{parts[1]}-{parts[2]}"] = content
    return dict(sorted(rules.items()))


def prometheus_config(cfg: Config, dialects: list[Dialect], rule_names: list[str]) -> dict:
    interval = cfg.deploy.scrape_interval
    timeout = interval if duration_seconds(interval) < _DEFAULT_SCRAPE_TIMEOUT else f"{_DEFAULT_SCRAPE_TIMEOUT}s"
    return {
        "global": {"scrape_interval": interval, "scrape_timeout": timeout, "evaluation_interval": interval},
        "rule_files": [f"rules/{name}" for name in rule_names],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [cfg.deploy.alertmanager_address]}]}]},
        "scrape_configs": scrape_jobs(cfg, dialects),
    }


_OPERATOR_RELABEL_KEYS = {"source_labels": "sourceLabels", "target_label": "targetLabel", "regex": "regex",
                          "replacement": "replacement", "action": "action", "separator": "separator"}


def _pod_monitor(cfg: Config, job: dict) -> dict:
    """The operator's form of a pod-discovery scrape job, with the very same relabelling."""
    (sd,) = job["kubernetes_sd_configs"]
    names = sd.get("namespaces", {}).get("names")
    endpoint = {"path": job.get("metrics_path", "/metrics"), "interval": cfg.deploy.scrape_interval}
    endpoint["relabelings"] = [
        {_OPERATOR_RELABEL_KEYS[key]: value for key, value in rule.items()} for rule in job["relabel_configs"]
    ]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": metadata(f"meshobs-{job['job_name']}", cfg.deploy.monitoring_namespace, "scrape"),
        "spec": {
            "namespaceSelector": {"matchNames": names} if names else {"any": True},
            # Every pod; the relabelling keeps only the proxy's metrics port.
            "selector": {},
            "podMetricsEndpoints": [endpoint],
        },
    }


def _operator(cfg: Config, dialects: list[Dialect], artefacts: dict[str, bytes]) -> dict[str, bytes]:
    import yaml

    files: dict[str, bytes] = {}
    for job in scrape_jobs(cfg, dialects)[1:]:
        if [sd.get("role") for sd in job.get("kubernetes_sd_configs", [])] == ["pod"]:
            files[f"podmonitor-{job['job_name']}.yaml"] = yaml_file(_pod_monitor(cfg, job))
    for name, content in rule_files(artefacts).items():
        stem = name.removesuffix(".yaml")
        rule = {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": metadata(f"meshobs-{stem}", cfg.deploy.monitoring_namespace, "rules"),
            "spec": {"groups": yaml.safe_load(content)["groups"]},
        }
        files[f"prometheusrule-{name}"] = yaml_file(rule)
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": metadata(EXPORTER, cfg.deploy.monitoring_namespace),
        "spec": {
            "namespaceSelector": {"matchNames": [cfg.deploy.namespace]},
            "selector": {"matchLabels": selector()},
            "endpoints": [
                {"port": METRICS_PORT_NAME, "path": "/metrics", "interval": cfg.deploy.scrape_interval, "honorLabels": True}
            ],
        },
    }
    files["servicemonitor-exporter.yaml"] = yaml_file(monitor)
    out = {f"deploy/operator/{name}": content for name, content in sorted(files.items())}
    out["deploy/operator/kustomization.yaml"] = kustomization(sorted(files))
    return out


def render(cfg: Config, dialects: list[Dialect], artefacts: dict[str, bytes]) -> dict[str, bytes]:
    rules = rule_files(artefacts)
    files = {f"deploy/prometheus/rules/{name}": content for name, content in rules.items()}
    files["deploy/prometheus/prometheus.yml"] = yaml_file(prometheus_config(cfg, dialects, list(rules)))
    ns = cfg.deploy.monitoring_namespace
    files["deploy/prometheus/kustomization.yaml"] = kustomization(
        namespace=ns,
        generators=[
            {"name": "meshobs-prometheus-config", "files": ["prometheus.yml"]},
            {"name": "meshobs-prometheus-rules", "files": [f"rules/{name}" for name in rules]},
        ],
    )
    files.update(_operator(cfg, dialects, artefacts))
    return files
