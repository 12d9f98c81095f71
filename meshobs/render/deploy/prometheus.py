"""Prometheus wiring: a plain prometheus.yml (scrape jobs per mesh, the exporter, rule files,
Alertmanager) with its rule files, and the same rules as prometheus-operator resources.

Each proxy is scraped once, on the port its mesh documents: Istio's Envoy stats on 15090
(Istio's merged 15020 endpoint serves the same stats again, so scraping both would count twice),
Linkerd's proxy admin port 4191, Consul's Envoy merged-metrics listener 20200. Istio's ambient
data planes have jobs of their own (docs/ambient.md): ztunnel (a DaemonSet in istio-system, its
only metrics port 15020) and waypoints (Envoy, on 15090 like sidecars, and out of the sidecar job).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from meshobs.config import Config, duration_seconds
from meshobs.exporter.pods import BARE_POD_PREFIX
from meshobs.exporter.state import MAX_WORKLOADS
from meshobs.meshes import Dialect
from meshobs.meshes.ztunnel_proxy import WAYPOINT_CONTROLLER, WAYPOINT_LABEL, ZTUNNEL_CONTROLLER, ZTUNNEL_LABEL, ZTUNNEL_PORT
from meshobs.render.collectors.istio import ROOT_NAMESPACE
from meshobs.render.deploy.common import EXPORTER, METRICS_PORT_NAME, kustomization, metadata, selector, yaml_file

CONSUL_METRICS_PORT = 20200

# Every pod is untrusted: a scrape of more samples, labels or longer label values than a real
# proxy has fails as a whole (up == 0) instead of filling Prometheus. A sidecar of a large mesh
# without Sidecar scoping exposes some 10,000 series; Istio's richest series have ~30 labels.
PROXY_LIMITS = {"sample_limit": 50_000, "label_limit": 64, "label_value_length_limit": 1024}
# The exporter keeps at most MAX_WORKLOADS workloads of 18 series each, plus 2 series per proxy
# (ten proxies a workload assumed) and its own process series.
EXPORTER_LIMITS = {"sample_limit": MAX_WORKLOADS * (18 + 2 * 10) + 1000, "label_limit": 16,
                   "label_value_length_limit": 1024}
_OPERATOR_LIMIT_KEYS = {"sample_limit": "sampleLimit", "label_limit": "labelLimit",
                        "label_value_length_limit": "labelValueLengthLimit"}
# Prometheus rejects a scrape timeout longer than the interval; 10s is its default.
_DEFAULT_SCRAPE_TIMEOUT = 10


def _pod_labels() -> list[dict]:
    """namespace and pod as target labels, as the meshes' own scrape configs do."""
    return [
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
    ]


# A target label that exists only between target and metric relabelling (dropped again).
_BARE_POD_LABEL = "meshobs_bare_pod"


def _bare_pod_workload(target_label: str) -> dict:
    """A pod without a controller is `pod/<name>`, as the exporter names it, whatever its labels
    or its proxy claim: it can never report as another workload of its namespace."""
    return {"source_labels": ["__meta_kubernetes_pod_controller_kind", "__meta_kubernetes_pod_name"], "regex": ";(.+)",
            "target_label": target_label, "replacement": f"{BARE_POD_PREFIX}$1"}


def _keep(source_labels: list[str], regex: str) -> dict:
    return {"source_labels": source_labels, "action": "keep", "regex": regex}


# Istio's Envoy stats port, on sidecars, gateways and waypoints alike: `http-envoy-prom` (15090).
_ENVOY_STATS = (["__meta_kubernetes_pod_container_name", "__meta_kubernetes_pod_container_port_name"], "istio-proxy;.*-envoy-prom")
# istiod labels the waypoint Deployments it creates from a Gateway of class istio-waypoint so
# (pilot's constants.ManagedGatewayMeshControllerLabel); a bare pod wearing the label is no waypoint
# and stays in the sidecar job, with a bare pod's treatment.
# (the facts: meshobs/meshes/ztunnel_proxy.py, which the exporter's discovery reads too)
_WAYPOINT_LABEL = "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", WAYPOINT_LABEL[0])
_WAYPOINT = ([_WAYPOINT_LABEL, "__meta_kubernetes_pod_controller_kind"], f"{WAYPOINT_LABEL[1]};{WAYPOINT_CONTROLLER}")
# The Helm chart's ztunnel DaemonSet: pods labelled app=ztunnel, container istio-proxy, port
# `ztunnel-stats` (15020; ztunnel has no 15090, and its admin port 15000 listens on localhost only).
_ZTUNNEL = ([f"__meta_kubernetes_pod_label_{ZTUNNEL_LABEL[0]}", "__meta_kubernetes_pod_controller_kind",
             "__meta_kubernetes_pod_container_name", "__meta_kubernetes_pod_container_port_name"],
            f"{ZTUNNEL_LABEL[1]};{ZTUNNEL_CONTROLLER};istio-proxy;{ZTUNNEL_PORT[0]}")


def _own_side(reporter: str, source: str, label: str) -> dict:
    """Series reported as `reporter` (a regex) carry `source`'s value in `label`, whatever the proxy claims."""
    return {"source_labels": ["reporter", source], "regex": f"(?:{reporter});(.+)", "target_label": label, "replacement": "$1"}


# An Envoy reports its own side of each request: the namespace of that side is the scraped pod's,
# whatever it claims, so that no pod can report for another namespace. The destination side is
# the pod's for sidecars (`destination`) and for waypoints (`waypoint`: the workloads behind a
# waypoint are taken to be its namespace's; docs/ambient.md). Any Envoy may claim any reporter,
# so every Envoy job pins all three.
_OWN_NAMESPACE = [_own_side(reporter, "namespace", label)
                  for reporter, label in (("destination|waypoint", "destination_workload_namespace"),
                                          ("destination|waypoint", "destination_service_namespace"),
                                          ("source", "source_workload_namespace"))]


def _istio_jobs() -> list[dict]:
    proxies = {
        "job_name": "istio-proxies",
        "metrics_path": "/stats/prometheus",
        "kubernetes_sd_configs": [{"role": "pod"}],
        "relabel_configs": [
            _keep(*_ENVOY_STATS),
            # waypoints are scraped by their own job, never twice
            {"source_labels": _WAYPOINT[0], "action": "drop", "regex": _WAYPOINT[1]},
            *_pod_labels(),
            _bare_pod_workload(_BARE_POD_LABEL),
        ],
        # ...and a bare pod's workload is its own name.
        "metric_relabel_configs": [
            *_OWN_NAMESPACE,
            _own_side("destination|waypoint", _BARE_POD_LABEL, "destination_workload"),
            _own_side("source", _BARE_POD_LABEL, "source_workload"),
            {"action": "labeldrop", "regex": _BARE_POD_LABEL},
        ],
    }
    waypoints = {
        "job_name": "istio-waypoints",
        "metrics_path": "/stats/prometheus",
        "kubernetes_sd_configs": [{"role": "pod"}],
        "relabel_configs": [
            _keep(*_ENVOY_STATS),
            _keep(*_WAYPOINT),
            *_pod_labels(),
            {"source_labels": ["__meta_kubernetes_pod_label_gateway_networking_k8s_io_gateway_name"], "target_label": "waypoint"},
        ],
        # (a waypoint shared across namespaces through istio.io/use-waypoint-namespace is
        # attributed to its own namespace: docs/ambient.md)
        "metric_relabel_configs": _OWN_NAMESPACE,
    }
    ztunnels = {
        "job_name": "istio-ztunnels",
        # ztunnel answers /metrics and /stats/prometheus alike
        "metrics_path": "/stats/prometheus",
        # Only istio-system: ztunnel reports for every pod of its node, in every namespace, so it
        # is trusted as istiod is, and a pod elsewhere calling itself ztunnel is never scraped.
        "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [ROOT_NAMESPACE]}}],
        "relabel_configs": [
            _keep(*_ZTUNNEL),
            *_pod_labels(),
            {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "node"},
        ],
    }
    istiod = {
        "job_name": "istiod",
        "kubernetes_sd_configs": [{"role": "endpoints", "namespaces": {"names": [ROOT_NAMESPACE]}}],
        "relabel_configs": [
            _keep(["__meta_kubernetes_service_name", "__meta_kubernetes_endpoint_port_name"], "istiod;http-monitoring"),
            *_pod_labels(),
        ],
    }
    return [proxies, waypoints, ztunnels, istiod]


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
            # a Job's pods: `job` is the scrape job's label, so k8s_job (as Linkerd's own Prometheus)
            {"source_labels": ["__meta_kubernetes_pod_label_linkerd_io_proxy_job"], "regex": "(.+)", "target_label": "k8s_job"},
            # ...which a bare pod could set itself
            _bare_pod_workload("deployment"),
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
        # The exporter's series carry the proxied workload's namespace and the proxy's `instance`;
        # the exporter is trusted (it validates what pods say), the proxies' jobs never honour labels.
        "honor_labels": True,
        "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [cfg.deploy.namespace]}}],
        "relabel_configs": [
            _keep([label, "__meta_kubernetes_pod_container_port_name"], f"{value};{METRICS_PORT_NAME}"),
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "exporter_pod"},
        ],
    }


def scrape_jobs(cfg: Config, dialects: list[Dialect]) -> list[dict]:
    per_mesh = {"istio": _istio_jobs, "linkerd": _linkerd_jobs, "consul": lambda: _consul_jobs(cfg)}
    jobs = [{**_exporter_job(cfg), **EXPORTER_LIMITS}]
    for dialect in dialects:
        jobs += [{**job, **PROXY_LIMITS} for job in per_mesh[dialect.name]()]
    for job in jobs:
        job["relabel_configs"] += cluster_relabeling(cfg)
    return jobs


def cluster_relabeling(cfg: Config) -> list[dict]:
    """The relabel rule putting the cluster label on every target (none without deploy.cluster).
    A target label, not only an external label: the recording rules group by it, and rules
    never see external labels."""
    return [{"target_label": cfg.cluster_label, "replacement": cfg.deploy.cluster}] if cfg.deploy.cluster else []


def external_labels(cfg: Config) -> dict[str, str]:
    """The cluster as an external label too, so that whatever leaves this Prometheus (remote
    write, federation, alerts) says where it comes from, rules' own output included."""
    return {cfg.cluster_label: cfg.deploy.cluster} if cfg.deploy.cluster else {}


def rule_files(artefacts: dict[str, bytes]) -> dict[str, bytes]:
    """alerts/<mesh>/<name>.yaml as flat `<mesh>-<name>.yaml` (ConfigMap keys cannot hold '/')."""
    rules = {}
    for path, content in artefacts.items():
        parts = PurePosixPath(path).parts
        if len(parts) == 3 and parts[0] == "alerts" and parts[2].endswith(".yaml"):
            rules[f"{parts[1]}-{parts[2]}"] = content
    return dict(sorted(rules.items()))


def global_settings(cfg: Config) -> dict:
    """prometheus.yml's `global` scrape settings and external labels (no rule evaluation)."""
    interval = cfg.deploy.scrape_interval
    timeout = interval if duration_seconds(interval) < _DEFAULT_SCRAPE_TIMEOUT else f"{_DEFAULT_SCRAPE_TIMEOUT}s"
    settings = {"scrape_interval": interval, "scrape_timeout": timeout}
    if external_labels(cfg):
        settings["external_labels"] = external_labels(cfg)
    return settings


def prometheus_config(cfg: Config, dialects: list[Dialect], rule_names: list[str]) -> dict:
    return {
        "global": {**global_settings(cfg), "evaluation_interval": cfg.deploy.scrape_interval},
        "rule_files": [f"rules/{name}" for name in rule_names],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [cfg.deploy.alertmanager_address]}]}]},
        "scrape_configs": scrape_jobs(cfg, dialects),
    }


_OPERATOR_RELABEL_KEYS = {"source_labels": "sourceLabels", "target_label": "targetLabel", "regex": "regex",
                          "replacement": "replacement", "action": "action", "separator": "separator"}


def _relabelings(rules: list[dict]) -> list[dict]:
    return [{_OPERATOR_RELABEL_KEYS[key]: value for key, value in rule.items()} for rule in rules]


def _operator_limits(limits: dict) -> dict:
    return {_OPERATOR_LIMIT_KEYS[key]: value for key, value in limits.items() if key in _OPERATOR_LIMIT_KEYS}


def _pod_monitor(cfg: Config, job: dict) -> dict:
    """The operator's form of a pod-discovery scrape job, with the very same relabelling."""
    (sd,) = job["kubernetes_sd_configs"]
    names = sd.get("namespaces", {}).get("names")
    endpoint = {"path": job.get("metrics_path", "/metrics"), "interval": cfg.deploy.scrape_interval}
    endpoint["relabelings"] = _relabelings(job["relabel_configs"])
    if "metric_relabel_configs" in job:
        endpoint["metricRelabelings"] = _relabelings(job["metric_relabel_configs"])
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": metadata(f"meshobs-{job['job_name']}", cfg.deploy.monitoring_namespace, "scrape"),
        "spec": {
            "namespaceSelector": {"matchNames": names} if names else {"any": True},
            # Every pod; the relabelling keeps only the proxy's metrics port.
            "selector": {},
            "podMetricsEndpoints": [endpoint],
            **_operator_limits(job),
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
    exporter_endpoint = {"port": METRICS_PORT_NAME, "path": "/metrics", "interval": cfg.deploy.scrape_interval,
                         "honorLabels": True}
    if cluster_relabeling(cfg):
        exporter_endpoint["relabelings"] = _relabelings(cluster_relabeling(cfg))
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": metadata(EXPORTER, cfg.deploy.monitoring_namespace),
        "spec": {
            "namespaceSelector": {"matchNames": [cfg.deploy.namespace]},
            "selector": {"matchLabels": selector()},
            "endpoints": [exporter_endpoint],
            **_operator_limits(EXPORTER_LIMITS),
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
