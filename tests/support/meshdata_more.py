"""What the replayed Istio and Linkerd data adds beyond HTTP at the destination, in each mesh's own
names and labels: TCP (with a failing upstream), gRPC calls, caller-only failures (no healthy
upstream, connect failure, circuit-breaker overflow), the proxies' own numbers (Envoy server
stats, linkerd2-proxy process and balancer metrics, cAdvisor's container CPU) and the control
planes in depth (istiod resources, pushes and webhooks; Linkerd controllers and injector), and
Linkerd calls to a service mirrored from another cluster through a multicluster gateway.
Consul servers' telemetry is here too, replayed beside the real Consul Envoys.

`MESHES` is `meshdata.MESHES` with these additions."""

from __future__ import annotations

from tests.support import meshdata
from tests.support.meshdata import Edge, Series, Target, counter, gauge, histogram

# --- Istio -------------------------------------------------------------------------------------
# Calls only the caller's proxy records: no destination pod was reached (Envoy response flags).
ISTIO_CALLER_FAILURES = (
    (Edge("shop", "productpage", "shop", "ratings", "503", 0.4), "UH"),  # no healthy upstream
    (Edge("shop", "productpage", "shop", "ratings", "503", 0.2), "UF"),  # upstream connect failure
    (Edge("shop", "productpage", "shop", "ratings", "503", 0.1), "UO"),  # circuit breaker overflow
)
# gRPC calls: HTTP 200 with a grpc-status ("14": UNAVAILABLE)
ISTIO_GRPC = (Edge("shop", "frontend", "shop", "catalog", "200", 2.0, grpc_status="0"),
              Edge("shop", "frontend", "shop", "catalog", "200", 0.3, grpc_status="14"))
ISTIO_TCP_FAILURE = Edge("shop", "reviews", "shop", "redis", "", 0.2)


def _istio_caller_failure(edge: Edge, flags: str) -> list[Series]:
    labels = meshdata._istio_request_labels(edge, "source")
    labels["response_flags"] = flags
    return [counter("istio_requests_total", labels, edge.rate)] + histogram(
        "istio_request_duration_milliseconds", labels, edge.rate)


def _istio_grpc(edge: Edge, reporter: str) -> list[Series]:
    labels = meshdata._istio_request_labels(edge, reporter)
    return [counter("istio_requests_total", labels, edge.rate)] + histogram(
        "istio_request_duration_milliseconds", labels, edge.rate)


def _istio_tcp_failure(edge: Edge) -> list[Series]:
    labels = dict(meshdata._istio_tcp_labels(edge, "source"), response_flags="UF")
    return [counter("istio_tcp_connections_opened_total", labels, edge.rate),
            counter("istio_tcp_connections_closed_total", labels, edge.rate)]


def _envoy_server(memory: float, connections: float, **labels: str) -> list[Series]:
    return [gauge("envoy_server_live", labels, 1), gauge("envoy_server_memory_allocated", labels, memory),
            gauge("envoy_server_total_connections", labels, connections)]


def _cadvisor(container: str, pods: list[Target], mesh: str) -> Target:
    """The kubelet's cAdvisor endpoint: one CPU counter per proxy container."""
    series = [counter("container_cpu_usage_seconds_total",
                      {"namespace": t.labels["namespace"], "pod": t.labels["pod"], "container": container}, 0.02)
              for t in pods]
    return Target("/metrics/cadvisor", {}, mesh, "kubelet", series, proxy=False)


def _istiod_more() -> list[Series]:
    return [
        gauge("process_resident_memory_bytes", {}, 180e6), counter("process_cpu_seconds_total", {}, 0.05),
        gauge("go_goroutines", {}, 900),
        counter("pilot_xds_pushes", {"type": "cds_senderr"}, 0.01),  # send errors are not pushes
        counter("pilot_xds_push_context_errors", {}, 0.0),
        counter("sidecar_injection_success_total", {}, 0.02), counter("sidecar_injection_failure_total", {}, 0.001),
        counter("galley_validation_passed", {}, 0.01), counter("galley_validation_failed", {}, 0.002),
    ]


def istio(now: float) -> list[Target]:
    targets = meshdata.istio(now)
    pods = {(t.labels["namespace"], t.workload): t for t in targets if t.proxy}
    for edge, flags in ISTIO_CALLER_FAILURES:
        pods[(edge.source_namespace, edge.source)].series += _istio_caller_failure(edge, flags)
    for edge in ISTIO_GRPC:
        pods[(edge.source_namespace, edge.source)].series += _istio_grpc(edge, "source")
        pods.setdefault((edge.namespace, edge.service), Target(
            "/stats/prometheus", {"namespace": edge.namespace, "pod": f"{edge.service}-7d4b9c-x2x7q"}, "istio", edge.service))
        pods[(edge.namespace, edge.service)].series += _istio_grpc(edge, "destination")
    pods[(ISTIO_TCP_FAILURE.source_namespace, ISTIO_TCP_FAILURE.source)].series += _istio_tcp_failure(ISTIO_TCP_FAILURE)
    # productpage's outlier detection has ejected one endpoint of reviews
    pods[("shop", "productpage")].series.append(gauge(
        "envoy_cluster_outlier_detection_ejections_active", {"cluster_name": "outbound|9080||reviews.shop.svc.cluster.local"}, 1))
    for target in pods.values():
        target.series += _envoy_server(40e6, 12)
    proxies = sorted(pods.values(), key=lambda t: t.labels["pod"])
    istiod = [t for t in targets if not t.proxy]
    for target in istiod:
        target.series += _istiod_more()
    return proxies + istiod + [_cadvisor("istio-proxy", proxies, "istio")]


# --- Linkerd -----------------------------------------------------------------------------------
LINKERD_GRPC = (Edge("emojivoto", "web", "emojivoto", "emoji", "200", 1.0, grpc_status="0"),
                Edge("emojivoto", "web", "emojivoto", "emoji", "200", 0.2, grpc_status="14"))


def _linkerd_tcp_inbound(rate: float) -> list[Series]:
    base = {"direction": "inbound", "peer": "src", "target_addr": "10.42.0.17:8080", "tls": "true"}
    return [counter("tcp_close_total", dict(base, classification="success", errno=""), rate * 0.95),
            gauge("tcp_open_connections", base, 3),
            counter("tcp_read_bytes_total", base, rate * 600), counter("tcp_write_bytes_total", base, rate * 2400)]


def _linkerd_tcp_outbound(edge: Edge) -> list[Series]:
    base = {"direction": "outbound", "peer": "dst", "target_addr": "10.42.0.17:8080", "tls": "true",
            "dst_namespace": edge.namespace, "dst_deployment": edge.service, "dst_service": edge.service}
    return [counter("tcp_open_total", base, edge.rate / 20),
            counter("tcp_close_total", dict(base, classification="success", errno=""), edge.rate / 20),
            # connections reset by the peer: what Linkerd's dashboards chart as TCP connection failures
            counter("tcp_close_total", dict(base, classification="failure", errno="ECONNRESET"), edge.rate / 200),
            gauge("tcp_open_connections", base, 2),
            counter("tcp_read_bytes_total", base, edge.rate * 2400), counter("tcp_write_bytes_total", base, edge.rate * 600)]


def _linkerd_grpc_outbound(edge: Edge) -> list[Series]:
    labels = {"direction": "outbound", "authority": f"{edge.service}.{edge.namespace}.svc.cluster.local:8080",
              "target_addr": "10.42.0.17:8080", "tls": "true", "dst_namespace": edge.namespace, "dst_deployment": edge.service,
              "dst_service": edge.service, "status_code": edge.code, "grpc_status": edge.grpc_status,
              "classification": meshdata._classification(edge), "error": ""}
    return [counter("response_total", labels, edge.rate)]


def _linkerd_grpc_inbound(edge: Edge) -> list[Series]:
    labels = {"direction": "inbound", "authority": f"{edge.service}.{edge.namespace}.svc.cluster.local:8080",
              "target_addr": "10.42.0.17:8080", "tls": "true", "status_code": edge.code, "grpc_status": edge.grpc_status,
              "classification": meshdata._classification(edge), "error": ""}
    return [counter("response_total", labels, edge.rate)]


def _linkerd_routes(edge: Edge) -> list[Series]:
    """A ServiceProfile's routes on the destination's inbound side."""
    labels = {"direction": "inbound", "dst": f"{edge.service}.{edge.namespace}.svc.cluster.local:8080",
              "rt_route": "GET /api/list", "status_code": edge.code, "tls": "true",
              "classification": "failure" if edge.code.startswith("5") else "success"}
    return [counter("route_request_total", {k: v for k, v in labels.items() if k not in ("status_code", "classification")},
                    edge.rate), counter("route_response_total", labels, edge.rate)] + histogram(
        "route_response_latency_ms", labels, edge.rate)


def _linkerd_balancer(edge: Edge) -> list[Series]:
    backend = {"backend_group": "core", "backend_kind": "Service", "backend_namespace": edge.namespace,
               "backend_name": edge.service, "backend_port": "8080", "parent_group": "core", "parent_kind": "Service",
               "parent_namespace": edge.namespace, "parent_name": edge.service, "parent_port": "8080"}
    return [gauge("outbound_http_balancer_endpoints", dict(backend, endpoint_state="ready"), 2),
            gauge("outbound_http_balancer_endpoints", dict(backend, endpoint_state="pending"), 1)]


# Multicluster gateway mode: `web` calls `emoji` of another cluster through its mirror
# `emoji-<cluster>`; the endpoint is the remote gateway, so the series name no pod, only the
# mirrored service and the target (linkerd2's destination controller: `target_cluster`, ...).
LINKERD_REMOTE_CLUSTER = "west"
LINKERD_GATEWAY_CALLS = (Edge("emojivoto", "web", "emojivoto", "emoji", "200", 1.5),
                         Edge("emojivoto", "web", "emojivoto", "emoji", "503", 0.1))
LINKERD_GATEWAY_ID = "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"


def _linkerd_through_gateway(edge: Edge, cluster: str) -> list[Series]:
    base = {"direction": "outbound", "authority": f"{edge.service}-{cluster}.{edge.namespace}.svc.cluster.local:8080",
            "target_addr": "172.18.0.5:4143", "tls": "true", "server_id": LINKERD_GATEWAY_ID,
            "dst_namespace": edge.namespace, "dst_service": f"{edge.service}-{cluster}", "dst_target_cluster": cluster,
            "dst_target_service": edge.service, "dst_target_service_namespace": edge.namespace}
    response = {**base, "status_code": edge.code, "classification": "failure" if edge.code.startswith("5") else "success",
                "error": ""}
    return [counter("request_total", base, edge.rate), counter("response_total", response, edge.rate)] + histogram(
        "response_latency_ms", response, edge.rate, mean=80.0)


def linkerd(now: float, remote_cluster: str = LINKERD_REMOTE_CLUSTER) -> list[Target]:
    """Linkerd's proxies and controllers; `web` also calls `emoji` in `remote_cluster` through its gateway."""
    targets = meshdata.linkerd(now)
    pods = {(t.labels["namespace"], t.workload): t for t in targets if t.proxy}
    for (namespace, workload), target in pods.items():
        inbound = sum(e.rate for e in meshdata.LINKERD_EDGES if (e.namespace, e.service) == (namespace, workload))
        if inbound:
            target.series += _linkerd_tcp_inbound(inbound / 20)
        target.series += [gauge("process_resident_memory_bytes", {}, 20e6), counter("process_cpu_seconds_total", {}, 0.01)]
    for edge in meshdata.LINKERD_EDGES:
        if edge.meshed_source:
            pods[(edge.source_namespace, edge.source)].series += _linkerd_tcp_outbound(edge) + _linkerd_balancer(edge)
    for edge in meshdata.LINKERD_EDGES:
        if edge.namespace == "emojivoto":
            pods[(edge.namespace, edge.service)].series += _linkerd_routes(edge)
    for edge in LINKERD_GATEWAY_CALLS:
        pods[(edge.source_namespace, edge.source)].series += _linkerd_through_gateway(edge, remote_cluster)
    for edge in LINKERD_GRPC:
        pods[(edge.namespace, edge.service)].series += _linkerd_grpc_inbound(edge)
        pods[(edge.source_namespace, edge.source)].series += _linkerd_grpc_outbound(edge)
    controllers = [t for t in targets if not t.proxy]
    for target in controllers:
        target.series += [gauge("process_resident_memory_bytes", {}, 60e6), counter("process_cpu_seconds_total", {}, 0.02),
                          gauge("go_goroutines", {}, 120)]
    # the multicluster service mirror probes the linked cluster's gateway (its `controller` container)
    mirror = Target("/metrics", {"namespace": "linkerd-multicluster", "pod": f"linkerd-service-mirror-{remote_cluster}-5d9c8-abcde",
                                 "component": "controller"}, "linkerd", f"linkerd-service-mirror-{remote_cluster}", [
        gauge("gateway_alive", {"target_cluster_name": remote_cluster}, 1),
        *histogram("gateway_probe_latency_ms", {"target_cluster_name": remote_cluster}, 1 / 3, mean=12.0),
    ], proxy=False)
    injector = Target("/metrics", {"namespace": "linkerd", "pod": "linkerd-proxy-injector-7c9d8-abcde",
                                   "component": "proxy-injector"}, "linkerd", "linkerd-proxy-injector", [
        gauge("process_start_time_seconds", {}, now - 3600),
        counter("proxy_inject_admission_responses_total", {"owner_kind": "deployment", "skip": "false", "skip_reason": ""}, 0.02),
        counter("proxy_inject_admission_responses_total",
                {"owner_kind": "deployment", "skip": "true", "skip_reason": "injection_disabled"}, 0.01),
    ], proxy=False)
    return sorted(pods.values(), key=lambda t: t.labels["pod"]) + controllers + [injector, mirror]


# --- Consul servers ----------------------------------------------------------------------------
def consul_servers(now: float) -> list[Target]:
    """Three Consul servers' /v1/agent/metrics?format=prometheus (summaries in milliseconds);
    the leader alone reports autopilot health."""
    targets = []
    for index in range(3):
        series = [
            gauge("consul_version", {"version": "1.20.1", "pre_release": ""}, 1),
            gauge("consul_runtime_alloc_bytes", {}, 90e6), gauge("consul_runtime_num_goroutines", {}, 400),
            gauge("consul_raft_commitTime", {"quantile": "0.99"}, 12.0),
            gauge("consul_raft_leader_lastContact", {"quantile": "0.99"}, 35.0),
            counter("consul_raft_state_candidate", {}, 0.0),
            counter("consul_raft_apply", {}, 2.0 if index == 0 else 0.0),
            gauge("consul_xds_server_streams", {}, 4),
        ]
        if index == 0:
            series.append(gauge("consul_autopilot_healthy", {}, 1))
            # the leader's view of the cluster peering with `west`
            peer = {"peer_name": "west", "peer_id": "5c7b5e9a-2f0e-4c8e-9d6a-3b1f0e2a7c41"}
            series += [gauge("consul_peering_healthy", peer, 1), gauge("consul_peering_exported_services", peer, 2)]
        labels = {"namespace": "consul", "pod": f"consul-server-{index}"}
        targets.append(Target("/v1/agent/metrics", labels, "consul", f"consul-server-{index}", series, proxy=False))
    return targets


def consul_cadvisor(pods: dict[str, str]) -> Target:
    """cAdvisor's CPU counter of each Consul sidecar container (`pods`: workload -> pod)."""
    series = [counter("container_cpu_usage_seconds_total", {"namespace": "default", "pod": pod,
                                                            "container": "consul-dataplane"}, 0.02)
              for pod in pods.values()]
    return Target("/metrics/cadvisor", {}, "consul", "kubelet", series, proxy=False)


MESHES = {"istio": istio, "linkerd": linkerd}
