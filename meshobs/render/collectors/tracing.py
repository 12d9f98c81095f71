"""Envoy's OpenTelemetry tracer and the cluster it sends OTLP/gRPC to, for meshes whose
Envoy configuration meshobs writes itself (Consul's escape hatches)."""

from __future__ import annotations

from typing import Any

from meshobs.config import Config
from meshobs.render.collectors.endpoints import OTLP_GRPC_PORT, collector_host

CLUSTER = "meshobs_otel_collector"


def otlp_cluster(cfg: Config) -> dict[str, Any]:
    """A static cluster reaching the Collector's OTLP/gRPC port over HTTP/2."""
    return {
        "name": CLUSTER,
        "type": "STRICT_DNS",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": collector_host(cfg), "port_value": OTLP_GRPC_PORT}}}}]}],
        },
    }


HCM_TRACING_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.Tracing"


def hcm_tracing(cfg: Config, service_name: str) -> dict[str, Any]:
    """HttpConnectionManager `tracing`: OpenTelemetry provider, sampling from the config.
    (Consul's `envoy_listener_tracing_json` wants it as an Any, with HCM_TRACING_TYPE.)"""
    return {
        "random_sampling": {"value": cfg.tracing.sampling_percent},
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                "grpc_service": {"envoy_grpc": {"cluster_name": CLUSTER}, "timeout": "1s"},
                "service_name": service_name,
            },
        },
    }
