"""Names and addresses shared by the mesh settings and the manifests that must agree on them."""

from __future__ import annotations

from meshobs.config import Config

OTLP_GRPC_PORT = 4317
OTLP_HTTP_PORT = 4318
ZIPKIN_PORT = 9411
JAEGER_UI_PORT = 16686
FORWARD_PORT = 24224

# The shared key of Fluentd's forward input (<security>): a Secret of this name, holding the key
# under FORWARD_KEY_ITEM, in Fluentd's namespace and in the exporter's (created by the operator).
FORWARD_KEY_SECRET = "meshobs-fluentd-forward"
FORWARD_KEY_ITEM = "shared-key"


def forward_key_volume(name: str) -> dict:
    """The pod volume holding the forward input's shared key; the pod does not start without it."""
    return {"name": name, "secret": {"secretName": FORWARD_KEY_SECRET, "optional": False,
                                     "items": [{"key": FORWARD_KEY_ITEM, "path": FORWARD_KEY_ITEM}]}}

COLLECTOR_NAME = "otel-collector"
JAEGER_NAME = "jaeger"
FLUENTD_NAME = "fluentd"

# Where the proxies write their access log: the container's stdout, which the kubelet puts
# under /var/log/containers/<pod>_<namespace>_<container>-<id>.log for Fluentd to tail.
ACCESS_LOG_PATH = "/dev/stdout"
PROXY_CONTAINER = {"istio": "istio-proxy", "linkerd": "linkerd-proxy", "consul": "consul-dataplane"}


def collector_host(cfg: Config) -> str:
    return f"{COLLECTOR_NAME}.{cfg.tracing.collector_namespace}.svc.cluster.local"


def jaeger_host(cfg: Config) -> str:
    return f"{JAEGER_NAME}.{cfg.tracing.collector_namespace}.svc.cluster.local"


def labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "meshobs"}
