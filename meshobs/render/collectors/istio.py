"""Istio: mesh config (access log, extension providers, the stats the exporter reads) and the
Telemetry resources that turn on access logging and tracing mesh-wide."""

from __future__ import annotations

from typing import Any

from meshobs import accesslog, yamlfmt
from meshobs.config import Config
from meshobs.meshes.istio import NO_FILTER_CHAIN_STAT
from meshobs.meshes.ztunnel_proxy import SYSTEM_NAMESPACE
from meshobs.render.collectors.endpoints import ACCESS_LOG_PATH, OTLP_GRPC_PORT, collector_host

LOG_PROVIDER = "meshobs-access-log"
TRACE_PROVIDER = "meshobs-otel"
ROOT_NAMESPACE = SYSTEM_NAMESPACE  # Istio's root (config) namespace is its own by default

# Istio drops Envoy's ssl.* stats unless included; the meshobs exporter needs the listener's
# handshake and verify-failure counters, certificate expiry and RBAC decisions. Istio matches
# these regexps against the whole stat name (before tag extraction).
STATS_INCLUSION_REGEXPS = (
    r"listener\..*\.ssl\.(handshake|connection_error|no_certificate|fail_verify_[a-z_]+)",
    # STRICT mTLS refuses plaintext by finding no filter chain for it (NR filter_chain_not_found)
    NO_FILTER_CHAIN_STAT,
    r"listener\..*\.ssl\.certificate\..*\.expiration_unix_time_seconds",
    r"server\.days_until_first_cert_expiring",
    r".*\.rbac\.(allowed|denied|shadow_allowed|shadow_denied)",
    # endpoints ejected by outlier detection now: one gauge per outbound cluster (MeshOutlierEjections)
    r"cluster\.outbound\|.*\.outlier_detection\.ejections_active",
)


def _log_format(encoding: str) -> dict[str, Any]:
    if encoding == "json":
        return {"labels": accesslog.envoy_json_format()}
    return {"text": accesslog.envoy_text_format()}


def mesh_config(cfg: Config) -> dict[str, Any]:
    encoding = cfg.logging.access_log_encoding
    # accessLogFormat for JSON is a JSON object as a string; Telemetry resources override these.
    fmt = accesslog.envoy_json_format_string() if encoding == "json" else accesslog.envoy_text_format()
    return {
        "meshConfig": {
            "accessLogFile": ACCESS_LOG_PATH,
            "accessLogEncoding": encoding.upper(),
            "accessLogFormat": fmt,
            # Without a Telemetry resource the proxies still log and trace through our providers
            # (and never fall back to Istio's legacy Zipkin tracer).
            "defaultProviders": {"accessLogging": [LOG_PROVIDER], "tracing": [TRACE_PROVIDER]},
            "defaultConfig": {"proxyStatsMatcher": {"inclusionRegexps": list(STATS_INCLUSION_REGEXPS)}},
            "extensionProviders": [
                {"name": LOG_PROVIDER, "envoyFileAccessLog": {"path": ACCESS_LOG_PATH, "logFormat": _log_format(encoding)}},
                {"name": TRACE_PROVIDER, "opentelemetry": {"service": collector_host(cfg), "port": OTLP_GRPC_PORT}},
            ],
        }
    }


def _telemetry_spec(cfg: Config) -> dict[str, Any]:
    return {
        "accessLogging": [{"providers": [{"name": LOG_PROVIDER}]}],
        "tracing": [{"providers": [{"name": TRACE_PROVIDER}], "randomSamplingPercentage": cfg.tracing.sampling_percent}],
    }


def telemetry(cfg: Config) -> dict[str, Any]:
    """Mesh-wide: every sidecar, gateway and waypoint (istiod merges the root namespace's Telemetry
    into each proxy's); ztunnel does not read Telemetry at all."""
    return {
        "apiVersion": "telemetry.istio.io/v1",
        "kind": "Telemetry",
        "metadata": {"name": "mesh-default", "namespace": ROOT_NAMESPACE},
        "spec": _telemetry_spec(cfg),
    }


# The Gateway `istioctl waypoint apply` creates unless told another name.
WAYPOINT_GATEWAY = "waypoint"


def waypoint_telemetry(cfg: Config) -> dict[str, Any]:
    """For a namespace whose own Telemetry turns logging or tracing off: a waypoint's L7 log and
    spans back on, bound to its Gateway (`targetRefs`; a `selector` never matches a waypoint).
    Namespace-less: `kubectl apply -n NS`, and rename the Gateway if yours is not `waypoint`."""
    return {
        "apiVersion": "telemetry.istio.io/v1",
        "kind": "Telemetry",
        "metadata": {"name": "meshobs-waypoint"},
        "spec": {
            "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": WAYPOINT_GATEWAY}],
            **_telemetry_spec(cfg),
        },
    }


def listener_access_log(cfg: Config) -> dict[str, Any]:
    """EnvoyFilter adding the listener-level log to inbound listeners: Istio's own access
    logging is HTTP/TCP-filter level and never sees a failed mTLS handshake."""
    return {
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": {"name": "meshobs-listener-access-log", "namespace": ROOT_NAMESPACE},
        "spec": {
            "configPatches": [{
                "applyTo": "LISTENER",
                "match": {"context": "SIDECAR_INBOUND"},
                "patch": {"operation": "MERGE", "value": {
                    "access_log": [accesslog.envoy_file_access_log(ACCESS_LOG_PATH, cfg.logging.access_log_encoding)]}},
            }]
        },
    }


def render(cfg: Config, mesh: str) -> dict[str, str]:
    return {
        "meshconfig.yaml": yamlfmt.dump(mesh_config(cfg)),
        "telemetry.yaml": yamlfmt.dump(telemetry(cfg)),
        "telemetry-waypoint.yaml": yamlfmt.dump(waypoint_telemetry(cfg)),
        "envoyfilter-listener-access-log.yaml": yamlfmt.dump(listener_access_log(cfg)),
    }
