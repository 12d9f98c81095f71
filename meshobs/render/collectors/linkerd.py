"""Linkerd: the proxy's JSON access log (an annotation) and the linkerd-jaeger extension's
values pointing proxies at the meshobs OpenTelemetry Collector."""

from __future__ import annotations

from meshobs import yamlfmt
from meshobs.config import Config
from meshobs.render.collectors.endpoints import OTLP_GRPC_PORT, COLLECTOR_NAME, collector_host

ACCESS_LOG_ANNOTATION = "config.linkerd.io/access-log"


def annotations_patch() -> dict:
    """Merge patch for a Namespace or a workload's pod template: linkerd2-proxy writes JSON
    access logs (its own field names, mapped onto the meshobs record by Fluentd)."""
    return {"metadata": {"annotations": {ACCESS_LOG_ANNOTATION: "json"}}}


def jaeger_values(cfg: Config) -> dict:
    """Helm values of linkerd-jaeger: its injector points proxies at our Collector over OTLP;
    its own collector and Jaeger are off (the meshobs ones replace them)."""
    return {
        "collector": {"enabled": False},
        "jaeger": {"enabled": False},
        "webhook": {
            "collectorSvcAddr": f"{collector_host(cfg)}:{OTLP_GRPC_PORT}",
            "collectorTraceProtocol": "opentelemetry",
            "collectorSvcAccount": COLLECTOR_NAME,
            "collectorTraceSvcName": "linkerd-proxy",
        },
    }


_SAMPLING_NOTE = (
    "# linkerd2-proxy does not sample on its own: it records a span when the incoming request\n"
    "# is sampled (W3C/b3 sampled flag), so tracing.sampling_percent applies at the ingress.\n"
)


def render(cfg: Config, mesh: str) -> dict[str, str]:
    return {
        "access-log-annotations.yaml": yamlfmt.dump(annotations_patch()),
        "linkerd-jaeger-values.yaml": _SAMPLING_NOTE + yamlfmt.dump(jaeger_values(cfg)),
    }
