"""OpenTelemetry Collector (OTLP in, tail sampling, OTLP out) and the Jaeger it exports to.

OTLP end to end: the proxies send OTLP (Zipkin only when `tracing.accept_zipkin`), Jaeger v2
receives OTLP. No component speaks the retired Jaeger client protocols (Thrift, 14250/14268/6831).
"""

from __future__ import annotations

from typing import Any

from meshobs import yamlfmt
from meshobs.config import Config
from meshobs.render.collectors.endpoints import (
    COLLECTOR_NAME, JAEGER_NAME, JAEGER_UI_PORT, OTLP_GRPC_PORT, OTLP_HTTP_PORT, ZIPKIN_PORT, jaeger_host, labels,
)

CONFIG_PATH = "/etc/otelcol/config.yaml"
JAEGER_CONFIG_PATH = "/etc/jaeger/config.yaml"


def _otlp_receiver() -> dict[str, Any]:
    return {"protocols": {"grpc": {"endpoint": f"0.0.0.0:{OTLP_GRPC_PORT}"}, "http": {"endpoint": f"0.0.0.0:{OTLP_HTTP_PORT}"}}}


def _receiver_ports(cfg: Config) -> list[tuple[str, int]]:
    ports = [("otlp-grpc", OTLP_GRPC_PORT), ("otlp-http", OTLP_HTTP_PORT)]
    return ports + ([("zipkin", ZIPKIN_PORT)] if cfg.tracing.accept_zipkin else [])


def collector_config(cfg: Config) -> dict[str, Any]:
    receivers: dict[str, Any] = {"otlp": _otlp_receiver()}
    if cfg.tracing.accept_zipkin:
        receivers["zipkin"] = {"endpoint": f"0.0.0.0:{ZIPKIN_PORT}"}
    return {
        "receivers": receivers,
        "processors": {
            # First in the pipeline: refuse data before the process runs out of memory.
            "memory_limiter": {"check_interval": "1s", "limit_percentage": 80, "spike_limit_percentage": 20},
            "tail_sampling": {
                "decision_wait": "10s",
                "num_traces": 50000,
                "policies": [
                    {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
                    {"name": "slow", "type": "latency", "latency": {"threshold_ms": cfg.tracing.slow_trace_ms}},
                    # A 403 is not an error span, but it is what a security team looks for.
                    {"name": "denied", "type": "string_attribute",
                     "string_attribute": {"key": "http.status_code", "values": ["403"]}},
                    {"name": "baseline", "type": "probabilistic",
                     "probabilistic": {"sampling_percentage": cfg.tracing.keep_percent}},
                ],
            },
            "batch": {"send_batch_size": 8192, "timeout": "5s"},
        },
        "exporters": {"otlp/jaeger": {"endpoint": f"{jaeger_host(cfg)}:{OTLP_GRPC_PORT}", "tls": {"insecure": True}}},
        "extensions": {"health_check": {"endpoint": "0.0.0.0:13133"}},
        "service": {
            "extensions": ["health_check"],
            "pipelines": {
                "traces": {
                    "receivers": list(receivers),
                    "processors": ["memory_limiter", "tail_sampling", "batch"],
                    "exporters": ["otlp/jaeger"],
                }
            },
        },
    }


def jaeger_config() -> dict[str, Any]:
    """Jaeger v2 (built on the Collector): OTLP receiver, in-memory storage, query UI."""
    return {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query"],
            "pipelines": {"traces": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["jaeger_storage_exporter"]}},
        },
        "extensions": {
            # Jaeger v2 binds localhost unless told otherwise: the UI must be reachable through its Service.
            "jaeger_query": {"storage": {"traces": "memstore"}, "http": {"endpoint": f"0.0.0.0:{JAEGER_UI_PORT}"}},
            "jaeger_storage": {"backends": {"memstore": {"memory": {"max_traces": 100000}}}},
        },
        "receivers": {"otlp": _otlp_receiver()},
        "processors": {"batch": {}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": "memstore"}},
    }


def _deployment(
    cfg: Config, name: str, image: str, config_path: str, config: dict, ports: list[tuple[str, int]], probe_port: int
) -> list[dict]:
    ns = cfg.tracing.collector_namespace
    meta = {"name": name, "namespace": ns, "labels": labels(name)}
    selector = {"app.kubernetes.io/name": name}
    container = {
        "name": name,
        "image": image,
        "args": [f"--config={config_path}"],
        "ports": [{"name": port_name, "containerPort": port, "protocol": "TCP"} for port_name, port in ports],
        "readinessProbe": {"tcpSocket": {"port": probe_port}, "periodSeconds": 5},
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True},
        "volumeMounts": [{"name": "config", "mountPath": config_path.rsplit("/", 1)[0], "readOnly": True}],
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {**meta, "name": f"{name}-config"},
         "data": {config_path.rsplit("/", 1)[1]: yamlfmt.dump(config)}},
        {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": {
                # One replica: tail sampling needs every span of a trace in the same process.
                "replicas": 1,
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": labels(name)},
                    "spec": {
                        "serviceAccountName": name,
                        "containers": [container],
                        "volumes": [{"name": "config", "configMap": {"name": f"{name}-config"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"selector": selector, "ports": [
                {"name": port_name, "port": port, "targetPort": port_name, "protocol": "TCP"} for port_name, port in ports
            ]},
        },
    ]


def collector_manifests(cfg: Config) -> list[dict]:
    return _deployment(
        cfg, COLLECTOR_NAME, cfg.tracing.collector_image, CONFIG_PATH, collector_config(cfg), _receiver_ports(cfg), OTLP_GRPC_PORT
    )


def jaeger_manifests(cfg: Config) -> list[dict]:
    ports = [("otlp-grpc", OTLP_GRPC_PORT), ("otlp-http", OTLP_HTTP_PORT), ("query", JAEGER_UI_PORT)]
    return _deployment(cfg, JAEGER_NAME, cfg.tracing.jaeger_image, JAEGER_CONFIG_PATH, jaeger_config(), ports, JAEGER_UI_PORT)


def render(cfg: Config, mesh: str) -> dict[str, str]:
    return {
        "otel-collector/config.yaml": yamlfmt.dump(collector_config(cfg)),
        "otel-collector/otel-collector.yaml": yamlfmt.dump_all(collector_manifests(cfg)),
        "jaeger/jaeger.yaml": yamlfmt.dump_all(jaeger_manifests(cfg)),
    }
