"""Input series for promtool unit tests, written in each mesh's own metric names and labels.

A scenario speaks in meshobs terms (a service answering N requests per second with code C);
each `MeshTraffic` writes it the way that mesh's proxies would, so the rendered rules are
tested against what Prometheus really holds for that mesh.
"""

from __future__ import annotations

from dataclasses import dataclass

CLUSTER = "c1"
BUCKETS_MS = ("10", "50", "100", "500", "1000", "5000", "+Inf")

Phase = tuple[float, int]  # (per second, minutes)


def counter(*phases: Phase) -> str:
    """promtool expanding notation for a counter going through phases, sampled every minute."""
    parts, value = [], 0.0
    for index, (per_second, minutes) in enumerate(phases):
        step = per_second * 60
        if index == 0:
            parts.append(f"{value:g}+{step:g}x{minutes}")
        elif minutes > 0:  # the next phase starts one sample later, not on the last sample again
            parts.append(f"{value + step:g}+{step:g}x{minutes - 1}")
        value += step * minutes
    return " ".join(parts)


def constant(value: float, minutes: int) -> str:
    return f"{value:g}x{minutes}"


def _labels(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def series(metric: str, labels: dict[str, str], values: str) -> dict:
    return {"series": f"{metric}{_labels(dict(labels, cluster=CLUSTER))}", "values": values}


@dataclass(frozen=True)
class MeshTraffic:
    mesh: str

    # --- HTTP requests at a destination service -------------------------------------------
    def requests(self, namespace: str, service: str, code: str, *phases: Phase, mtls: bool = True) -> list[dict]:
        values = counter(*phases)
        if self.mesh == "istio":
            labels = {
                "destination_workload_namespace": namespace, "destination_service_namespace": namespace,
                "destination_service_name": service, "destination_service": f"{service}.{namespace}.svc.cluster.local",
                "destination_workload": service, "source_workload": "frontend", "source_workload_namespace": namespace,
                "response_code": code, "request_protocol": "http",
            }
            # Both reporters see the request; only the destination knows the security policy.
            return [
                series("istio_requests_total", dict(labels, reporter="destination",
                                                    connection_security_policy="mutual_tls" if mtls else "none"), values),
                series("istio_requests_total", dict(labels, reporter="source", connection_security_policy="unknown"), values),
            ]
        if self.mesh == "linkerd":
            labels = {
                "direction": "inbound", "namespace": namespace, "deployment": service, "pod": f"{service}-5d9c7b-x2x7q",
                "authority": f"{service}.{namespace}.svc.cluster.local:8080", "status_code": code,
                "classification": "failure" if code.startswith("5") else "success",
            }
            labels.update({"tls": "true"} if mtls else {"tls": "no_identity", "no_tls_reason": "no_tls_from_remote"})
            outbound = {
                "direction": "outbound", "namespace": namespace, "deployment": "frontend", "dst_namespace": namespace,
                "dst_deployment": service, "dst_service": service, "status_code": code, "tls": "true",
                "classification": labels["classification"],
            }
            return [series("response_total", labels, values), series("response_total", outbound, values)]
        assert self.mesh == "consul"
        labels = {
            "envoy_http_conn_manager_prefix": "public_listener", "namespace": namespace, "local_cluster": service,
            "envoy_response_code_class": code[0],
        }
        upstream = {
            "namespace": namespace, "local_cluster": "frontend", "consul_destination_service": service,
            "consul_destination_namespace": "default", "envoy_cluster_name": service, "envoy_response_code": code,
        }
        return [series("envoy_http_downstream_rq_xx", labels, values), series("envoy_cluster_upstream_rq", upstream, values)]

    # --- Latency histogram at a destination service ---------------------------------------
    def latency(self, namespace: str, service: str, per_second: float, minutes: int, slow: bool) -> list[dict]:
        """All requests take 1-5 s when slow (p99 4.96 s), under 10 ms otherwise."""
        metric, labels = {
            "istio": ("istio_request_duration_milliseconds_bucket", {
                "reporter": "destination", "destination_workload_namespace": namespace,
                "destination_service_name": service, "destination_workload": service}),
            "linkerd": ("response_latency_ms_bucket", {
                "direction": "inbound", "namespace": namespace, "deployment": service,
                "authority": f"{service}.{namespace}.svc.cluster.local:8080", "tls": "true"}),
            "consul": ("envoy_http_downstream_rq_time_bucket", {
                "envoy_http_conn_manager_prefix": "public_listener", "namespace": namespace, "local_cluster": service}),
        }[self.mesh]
        result = []
        for le in BUCKETS_MS:
            filled = le in ("5000", "+Inf") if slow else True
            result.append(series(metric, dict(labels, le=le), counter((per_second if filled else 0, minutes))))
        return result

    # --- Control plane / proxies rejecting configuration ----------------------------------
    def config_rejections(self, *phases: Phase) -> list[dict]:
        values = counter(*phases)
        if self.mesh == "istio":
            return [series("pilot_total_xds_rejects", {"type": "type.googleapis.com/envoy.config.listener.v3.Listener"}, values)]
        if self.mesh == "linkerd":
            return [series("grpc_server_handled_total", {
                "grpc_service": "io.linkerd.proxy.destination.Destination", "grpc_method": "Get",
                "grpc_code": "Internal", "grpc_type": "server_stream"}, values)]
        # Two families with the same labels: summing them must not collide once rate() drops the names.
        half = counter(*((per_second / 2, minutes) for per_second, minutes in phases))
        labels = {"namespace": "shop", "local_cluster": "checkout"}
        return [series("envoy_listener_manager_lds_update_rejected", labels, half),
                series("envoy_cluster_manager_cds_update_rejected", labels, half)]

    # --- The meshobs exporter's normalized series (the same names on every mesh) ----------
    def exporter(self, metric: str, namespace: str, workload: str, values: str, **labels: str) -> dict:
        return series(metric, dict(labels, mesh=self.mesh, namespace=namespace, workload=workload), values)


def native_denials(mesh: str, namespace: str, workload: str, *phases: Phase) -> list[dict]:
    """Authorization denials in the proxy's own metrics (no exporter running)."""
    values = counter(*phases)
    if mesh == "istio":
        return MeshTraffic("istio").requests(namespace, workload, "403", *phases)
    if mesh == "linkerd":
        return [series("inbound_http_authz_deny_total", {
            "namespace": namespace, "deployment": workload, "srv_name": "http", "srv_kind": "server",
            "authz_name": "allow-frontend", "authz_kind": "authorizationpolicy"}, values)]
    return [series("envoy_http_rbac_denied", {
        "namespace": namespace, "local_cluster": workload, "envoy_http_conn_manager_prefix": "public_listener"}, values)]
