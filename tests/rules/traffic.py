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


def in_cluster(cluster: str, inputs: list[dict]) -> list[dict]:
    """`inputs` (series of cluster c1) moved to `cluster`."""
    return [dict(i, series=i["series"].replace(f'cluster="{CLUSTER}"', f'cluster="{cluster}"')) for i in inputs]


CONSUL_NAMESPACE = "default"  # the Consul namespace (not the Kubernetes one)


def consul_tags(service: str, namespace: str) -> dict[str, str]:
    """The fixed stats tags of Consul's Envoy bootstrap (every stat of the sidecar), and the
    Kubernetes namespace the scrape job attaches."""
    return {"local_cluster": service, "consul_source_service": service, "consul_source_namespace": CONSUL_NAMESPACE,
            "consul_source_datacenter": "dc1", "namespace": namespace}


@dataclass(frozen=True)
class MeshTraffic:
    mesh: str
    owner: str = "deployment"  # Linkerd: the label naming the pod's owner (statefulset, daemonset, ...)

    def service_labels(self, namespace: str, service: str) -> dict[str, str]:
        """The labels meshobs gives a destination service in this mesh."""
        ns = CONSUL_NAMESPACE if self.mesh == "consul" else namespace
        return {"destination_namespace": ns, "destination_service": service}

    # --- HTTP requests at a destination service, seen by both ends ------------------------
    def requests(self, namespace: str, service: str, code: str, *phases: Phase, mtls: bool = True,
                 grpc_status: str = "", answered: bool = True) -> list[dict]:
        """Calls from `frontend` to `service`, counted by the caller's and (when a destination pod
        `answered`) the destination's proxy. `grpc_status` makes them gRPC calls."""
        values = counter(*phases)
        if self.mesh == "istio":
            labels = {
                "destination_workload_namespace": namespace, "destination_service_namespace": namespace,
                "destination_service_name": service, "destination_service": f"{service}.{namespace}.svc.cluster.local",
                "destination_workload": service, "source_workload": "frontend", "source_workload_namespace": namespace,
                "response_code": code, "request_protocol": "grpc" if grpc_status else "http",
                "grpc_response_status": grpc_status, "response_flags": "-",
            }
            if not answered:  # no healthy upstream: only the caller records it, with no workload
                labels.update(destination_workload="unknown", destination_workload_namespace="unknown", response_flags="UH")
            # Both reporters see the request; only the destination knows the security policy.
            out = [series("istio_requests_total", dict(labels, reporter="source", connection_security_policy="unknown"), values)]
            if answered:
                out.append(series("istio_requests_total", dict(labels, reporter="destination",
                                                               connection_security_policy="mutual_tls" if mtls else "none"), values))
            return out
        if self.mesh == "linkerd":
            failed = code.startswith("5") or grpc_status not in ("", "0")
            grpc = {"grpc_status": grpc_status} if grpc_status else {}
            labels = {
                "direction": "inbound", "namespace": namespace, self.owner: service, "pod": f"{service}-5d9c7b-x2x7q",
                "authority": f"{service}.{namespace}.svc.cluster.local:8080", "status_code": code,
                "classification": "failure" if failed else "success", "srv_kind": "server", "srv_name": f"{service}-http",
                **grpc,
            }
            labels.update({"tls": "true"} if mtls else {"tls": "no_identity", "no_tls_reason": "no_tls_from_remote"})
            outbound = {
                "direction": "outbound", "namespace": namespace, "deployment": "frontend", "dst_namespace": namespace,
                f"dst_{self.owner}": service, "dst_service": service, "status_code": code, "tls": "true",
                "classification": labels["classification"], "authority": f"{service}.{namespace}.svc.cluster.local:8080",
                **grpc,
            }
            out = [series("response_total", outbound, values)]
            return out + ([series("response_total", labels, values)] if answered else [])
        assert self.mesh == "consul"
        labels = dict(consul_tags(service, namespace), envoy_http_conn_manager_prefix="public_listener",
                      envoy_response_code_class=code[0])
        caller = dict(consul_tags("frontend", namespace), consul_destination_service=service,
                      consul_destination_namespace=CONSUL_NAMESPACE, consul_destination_datacenter="dc1",
                      envoy_cluster_name=service)
        out = [series("envoy_cluster_upstream_rq_xx", dict(caller, envoy_response_code_class=code[0]), values),
               series("envoy_cluster_upstream_rq", dict(caller, envoy_response_code=code), values)]
        return out + ([series("envoy_http_downstream_rq_xx", labels, values)] if answered else [])

    # --- Latency histogram at a destination service ---------------------------------------
    def latency(self, namespace: str, service: str, per_second: float, minutes: int, slow: bool) -> list[dict]:
        """All requests take 1-5 s when slow (p99 4.96 s), under 10 ms otherwise."""
        metric, labels = {
            "istio": ("istio_request_duration_milliseconds_bucket", {
                "reporter": "destination", "destination_workload_namespace": namespace, "destination_service_namespace": namespace,
                "destination_service_name": service, "destination_workload": service}),
            "linkerd": ("response_latency_ms_bucket", {
                "direction": "outbound", "namespace": namespace, "deployment": "frontend", "dst_namespace": namespace,
                "dst_service": service, "authority": f"{service}.{namespace}.svc.cluster.local:8080", "tls": "true"}),
            "consul": ("envoy_http_downstream_rq_time_bucket", dict(
                consul_tags(service, namespace), envoy_http_conn_manager_prefix="public_listener")),
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
        labels = consul_tags("checkout", "shop")
        return [series("envoy_listener_manager_lds_update_rejected", labels, half),
                series("envoy_cluster_manager_cds_update_rejected", labels, half)]

    # --- The meshobs exporter's normalized series (the same names on every mesh) ----------
    def exporter(self, metric: str, namespace: str, workload: str, values: str, **labels: str) -> dict:
        return series(metric, dict(labels, mesh=self.mesh, namespace=namespace, workload=workload), values)


def native_denials(mesh: str, namespace: str, workload: str, *phases: Phase, owner: str = "deployment") -> list[dict]:
    """Authorization denials in the proxy's own metrics (no exporter running)."""
    values = counter(*phases)
    if mesh == "istio":
        return MeshTraffic("istio").requests(namespace, workload, "403", *phases)
    if mesh == "linkerd":
        return [series("inbound_http_authz_deny_total", {
            "namespace": namespace, owner: workload, "srv_name": "http", "srv_kind": "server",
            "route_name": "default", "route_kind": "default"}, values)]
    return [series("envoy_http_rbac_denied", dict(
        consul_tags(workload, namespace), envoy_http_conn_manager_prefix="public_listener"), values)]
