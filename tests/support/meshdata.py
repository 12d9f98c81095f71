"""Istio and Linkerd series as their proxies and control planes expose them (names and labels per
/work/shared/reference/mesh-metrics.md), with counters that grow with time, for replay targets.

A `Target` is one scraped endpoint (one sidecar or control-plane pod): `labels` are what the
Prometheus Kubernetes relabelling would attach (namespace, pod, workload), `series` what the
endpoint itself exposes. Injected failures: 403 denials from a foreign namespace, 503s, a TLS
verify failure and plaintext traffic from an unmeshed client.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Labels = dict[str, str]

LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
# share of requests at or below each bucket: most fast, a tail above 250 ms
LATENCY_SHARE = (0.2, 0.45, 0.7, 0.85, 0.93, 0.97, 0.985, 0.995, 0.999, 1.0)
CONVERGENCE_BUCKETS_S = (0.1, 0.5, 1, 3, 5, 10, 20, 30)
BYTES_BUCKETS = (1, 10, 100, 1000, 10000, 100000, 1000000)  # Istio's byte-size buckets (exponential, x10)
BYTES_SHARE = (0.0, 0.05, 0.3, 0.8, 0.97, 1.0, 1.0)


@dataclass(frozen=True)
class Series:
    name: str
    labels: tuple[tuple[str, str], ...]
    rate: float = 0.0  # per second, for counters
    value: float | None = None  # gauges; None means a counter

    def sample(self, elapsed: float) -> float:
        return self.value if self.value is not None else round(self.rate * elapsed, 3)


def counter(name: str, labels: Labels, rate: float) -> Series:
    return Series(name, tuple(labels.items()), rate=rate)


def gauge(name: str, labels: Labels, value: float) -> Series:
    return Series(name, tuple(labels.items()), value=value)


def histogram(name: str, labels: Labels, rate: float, buckets=LATENCY_BUCKETS_MS, share=LATENCY_SHARE,
              mean: float = 40.0) -> list[Series]:
    """`<name>_bucket` (cumulative, `le` last), `_sum` and `_count` counters."""
    out = [counter(f"{name}_bucket", {**labels, "le": f"{bound:g}"}, rate * part) for bound, part in zip(buckets, share)]
    out.append(counter(f"{name}_bucket", {**labels, "le": "+Inf"}, rate))
    out.append(counter(f"{name}_sum", labels, rate * mean))
    out.append(counter(f"{name}_count", labels, rate))
    return out


@dataclass
class Target:
    """One endpoint: its metrics `path`; `labels` exactly as the rendered scrape job's relabelling
    attaches them (deploy/prometheus/prometheus.yml); `workload` names it for the exporter."""

    path: str
    labels: Labels
    mesh: str
    workload: str
    series: list[Series] = field(default_factory=list)
    proxy: bool = True  # the meshobs exporter scrapes proxies, not control planes

    def render(self, elapsed: float) -> str:
        """Prometheus text format, one `# TYPE` per family, a histogram's `_bucket`, `_sum` and
        `_count` samples together in its family, as a real exposition writes them."""
        names = {series.name for series in self.series}
        families: dict[str, list[Series]] = {}
        for series in self.series:
            base, _, suffix = series.name.rpartition("_")
            family = base if suffix in ("bucket", "sum", "count") and f"{base}_bucket" in names else series.name
            families.setdefault(family, []).append(series)
        lines = []
        for family, members in families.items():
            kind = "histogram" if members[0].name != family else ("gauge" if members[0].value is not None else "counter")
            lines.append(f"# TYPE {family} {kind}")
            for series in sorted(members, key=lambda m: m.name.endswith(("_sum", "_count"))):
                labels = ",".join(f'{k}="{v}"' for k, v in series.labels)
                lines.append(f"{series.name}{{{labels}}} {series.sample(elapsed):g}")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Edge:
    """Requests from one workload to a service at `rate` per second answered with `code`."""

    source_namespace: str
    source: str
    namespace: str
    service: str
    code: str
    rate: float
    mtls: bool = True
    meshed_source: bool = True
    grpc_status: str = ""  # a gRPC call: HTTP 200 with this grpc-status ("0" is OK)


CERT_NOT_AFTER_IN = 20 * 3600  # workload certificates live 24 h and rotate at ~80%


# --- Istio -------------------------------------------------------------------------------------

ISTIO_EDGES = (
    Edge("shop", "frontend", "shop", "productpage", "200", 4.0),
    Edge("shop", "productpage", "shop", "reviews", "200", 3.0),
    Edge("shop", "productpage", "shop", "reviews", "503", 0.3),
    Edge("payments", "checkout", "payments", "ledger", "200", 2.0),
    Edge("other", "intruder", "payments", "ledger", "403", 1.0),  # denied by AuthorizationPolicy
    Edge("legacy", "batch", "shop", "productpage", "200", 0.5, mtls=False, meshed_source=False),  # PERMISSIVE
    Edge("shop", "reviews", "shop", "ratings", "200", 2.0, grpc_status="0"),
    Edge("shop", "reviews", "shop", "ratings", "200", 0.2, grpc_status="14"),  # gRPC UNAVAILABLE, as HTTP 200
)
# TCP traffic (no response code; counters only: Istio has no `istio_tcp_*_bucket` series)
ISTIO_TCP_EDGES = (Edge("shop", "reviews", "shop", "mongodb", "", 1.0),)
ISTIO_TLS_FAILURES = {("payments", "ledger"): ("envoy_listener_ssl_fail_verify_error", 0.5)}
ISTIO_VERSION = "1.24.2"
INBOUND_LISTENER = "0.0.0.0_15006"


def _istio_peer(side: str, namespace: str, workload: str, meshed: bool = True) -> Labels:
    if not meshed:
        return {f"{side}_{k}": "unknown" for k in (
            "workload", "workload_namespace", "principal", "app", "version", "canonical_service",
            "canonical_revision", "cluster")}
    return {
        f"{side}_workload": workload, f"{side}_workload_namespace": namespace,
        f"{side}_principal": f"spiffe://cluster.local/ns/{namespace}/sa/{workload}",
        f"{side}_app": workload, f"{side}_version": "v1", f"{side}_canonical_service": workload,
        f"{side}_canonical_revision": "v1", f"{side}_cluster": "Kubernetes",
    }


def _istio_request_labels(edge: Edge, reporter: str) -> Labels:
    if reporter == "source":
        policy = "unknown"  # only the destination knows how the connection was secured
    else:
        policy = "mutual_tls" if edge.mtls else "none"
    return {
        "reporter": reporter,
        **_istio_peer("source", edge.source_namespace, edge.source, edge.meshed_source),
        **_istio_peer("destination", edge.namespace, edge.service),
        "destination_service": f"{edge.service}.{edge.namespace}.svc.cluster.local",
        "destination_service_name": edge.service, "destination_service_namespace": edge.namespace,
        "request_protocol": "grpc" if edge.grpc_status else "http", "response_code": edge.code,
        "grpc_response_status": edge.grpc_status,
        "response_flags": "-", "connection_security_policy": policy,
    }


def _istio_edge_series(edge: Edge, reporter: str) -> list[Series]:
    labels = _istio_request_labels(edge, reporter)
    out = [counter("istio_requests_total", labels, edge.rate)]
    out += histogram("istio_request_duration_milliseconds", labels, edge.rate)
    out += histogram("istio_request_bytes", labels, edge.rate, BYTES_BUCKETS, BYTES_SHARE, mean=300)
    out += histogram("istio_response_bytes", labels, edge.rate, BYTES_BUCKETS, BYTES_SHARE, mean=1200)
    return out


def _istio_tcp_labels(edge: Edge, reporter: str) -> Labels:
    """The labels of a TCP connection's series: a request's, without the response."""
    labels = _istio_request_labels(edge, reporter)
    del labels["response_code"], labels["grpc_response_status"]
    labels["request_protocol"] = "tcp"
    return labels


def _istio_tcp_series(edge: Edge, reporter: str) -> list[Series]:
    labels = _istio_tcp_labels(edge, reporter)
    return [counter("istio_tcp_connections_opened_total", labels, edge.rate),
            counter("istio_tcp_connections_closed_total", labels, edge.rate * 0.9),
            counter("istio_tcp_sent_bytes_total", labels, edge.rate * 4000),
            counter("istio_tcp_received_bytes_total", labels, edge.rate * 800)]


def _istio_envoy_series(namespace: str, workload: str, now: float, inbound_ok: float, inbound_denied: float) -> list[Series]:
    """The sidecar's own Envoy stats under Istio's tag rules (no `envoy_` label prefix), as kept
    by meshobs's proxyStatsMatcher inclusions."""
    listener = {"listener_address": INBOUND_LISTENER}
    failures = ISTIO_TLS_FAILURES.get((namespace, workload))
    out = [counter("envoy_listener_ssl_handshake", listener, inbound_ok + inbound_denied)]
    for name in ("envoy_listener_ssl_fail_verify_no_cert", "envoy_listener_ssl_fail_verify_error",
                 "envoy_listener_ssl_fail_verify_san", "envoy_listener_ssl_connection_error"):
        out.append(counter(name, listener, failures[1] if failures and failures[0] == name else 0.0))
    hcm = {"http_conn_manager_prefix": "inbound_0.0.0.0_8080"}
    out.append(counter("envoy_http_rbac", {"authz_enforce_result": "allowed", **hcm}, inbound_ok))
    out.append(counter("envoy_http_rbac", {"authz_enforce_result": "denied", **hcm}, inbound_denied))
    out.append(gauge("envoy_listener_ssl_certificate_expiration_unix_time_seconds",
                     {**listener, "tls_certificate": "default"}, now + CERT_NOT_AFTER_IN))
    out.append(gauge("envoy_listener_ssl_certificate_expiration_unix_time_seconds",
                     {**listener, "tls_certificate": "ROOTCA"}, now + 3650 * 86400))
    return out


def istio(now: float) -> list[Target]:
    """Every Istio sidecar of the edges (source-reported series on the caller, destination-reported
    on the callee) and istiod."""
    pods: dict[tuple[str, str], Target] = {}

    def pod(namespace: str, workload: str) -> Target:
        key = (namespace, workload)
        if key not in pods:
            labels = {"namespace": namespace, "pod": f"{workload}-7d4b9c-x2x7q"}
            pods[key] = Target("/stats/prometheus", labels, "istio", workload)
        return pods[key]

    for edge in ISTIO_EDGES:
        pod(edge.namespace, edge.service).series += _istio_edge_series(edge, "destination")
        if edge.meshed_source:
            pod(edge.source_namespace, edge.source).series += _istio_edge_series(edge, "source")
    for edge in ISTIO_TCP_EDGES:
        pod(edge.namespace, edge.service).series += _istio_tcp_series(edge, "destination")
        pod(edge.source_namespace, edge.source).series += _istio_tcp_series(edge, "source")
    for (namespace, workload), target in pods.items():
        inbound = [e for e in ISTIO_EDGES if (e.namespace, e.service) == (namespace, workload) and e.mtls]
        ok = sum(e.rate for e in inbound if e.code != "403")
        denied = sum(e.rate for e in inbound if e.code == "403")
        target.series += _istio_envoy_series(namespace, workload, now, ok, denied)
    return sorted(pods.values(), key=lambda t: t.labels["pod"]) + [_istiod(now, len(pods))]


def _istiod(now: float, proxies: int) -> Target:
    series = [
        gauge("istio_build", {"component": "pilot", "tag": ISTIO_VERSION}, 1),
        gauge("pilot_xds", {"version": ISTIO_VERSION}, proxies),
        gauge("citadel_server_root_cert_expiry_timestamp", {}, now + 3650 * 86400),
        gauge("citadel_server_cert_chain_expiry_timestamp", {}, now + 3650 * 86400),
        counter("citadel_server_csr_count", {}, 0.2),
        counter("citadel_server_csr_sign_err_count", {}, 0.01),
        counter("pilot_total_xds_rejects", {"type": "type.googleapis.com/envoy.config.listener.v3.Listener"}, 0.02),
        counter("pilot_total_xds_internal_errors", {}, 0.0),
    ]
    for kind in ("cds", "eds", "lds", "rds"):
        series.append(counter("pilot_xds_pushes", {"type": kind}, 0.5))
    series += histogram("pilot_proxy_convergence_time", {}, 0.5, CONVERGENCE_BUCKETS_S,
                        (0.6, 0.9, 0.97, 0.99, 1.0, 1.0, 1.0, 1.0), mean=0.2)
    series += histogram("pilot_xds_push_time", {"type": "cds"}, 0.5, CONVERGENCE_BUCKETS_S,
                        (0.8, 0.95, 0.99, 1.0, 1.0, 1.0, 1.0, 1.0), mean=0.05)
    labels = {"namespace": "istio-system", "pod": "istiod-5f4c8d-abcde"}
    return Target("/metrics", labels, "istio", "istiod", series, proxy=False)


# --- Linkerd -----------------------------------------------------------------------------------

LINKERD_EDGES = (
    Edge("emojivoto", "web", "emojivoto", "emoji", "200", 4.0),
    Edge("emojivoto", "web", "emojivoto", "voting", "200", 2.0),
    Edge("emojivoto", "web", "emojivoto", "voting", "500", 0.4),
    Edge("booksapp", "webapp", "booksapp", "books", "200", 3.0),
    Edge("attacker", "scanner", "booksapp", "books", "403", 1.0),  # denied by AuthorizationPolicy
    Edge("monitoring", "probe", "emojivoto", "emoji", "200", 0.5, mtls=False, meshed_source=False),
    Edge("emojivoto", "vote-bot", "emojivoto", "emoji", "200", 0.3, grpc_status="14"),  # gRPC UNAVAILABLE, as HTTP 200
)


def _identity(namespace: str, workload: str) -> str:
    return f"{workload}.{namespace}.serviceaccount.identity.linkerd.cluster.local"


def _classification(edge: Edge) -> str:
    """linkerd2-proxy's verdict: HTTP 5xx or a gRPC status other than OK fails."""
    return "failure" if edge.code.startswith("5") or edge.grpc_status not in ("", "0") else "success"


def _linkerd_inbound(edge: Edge) -> list[Series]:
    authority = f"{edge.service}.{edge.namespace}.svc.cluster.local:8080"
    server = {"srv_group": "policy.linkerd.io", "srv_kind": "server", "srv_name": f"{edge.service}-http"}
    base = {"direction": "inbound", "authority": authority, "target_addr": "10.42.0.17:8080", **server}
    if edge.mtls:
        base.update(tls="true", client_id=_identity(edge.source_namespace, edge.source))
    else:
        base.update(tls="no_identity", no_tls_reason="no_tls_from_remote")
    response = {**base, "status_code": edge.code, "classification": _classification(edge), "error": "",
                **({"grpc_status": edge.grpc_status} if edge.grpc_status else {})}
    out = [counter("request_total", base, edge.rate), counter("response_total", response, edge.rate)]
    out += histogram("response_latency_ms", response, edge.rate)
    route = {"route_group": "", "route_kind": "default", "route_name": "default"}
    if edge.code == "403":
        out.append(counter("inbound_http_authz_deny_total", {"target_addr": "10.42.0.17:8080", **server, **route}, edge.rate))
        # the same caller also probes the pod's TCP port: L4 denials carry no route labels
        tcp_server = {"srv_group": "policy.linkerd.io", "srv_kind": "server", "srv_name": f"{edge.service}-admin"}
        out.append(counter("inbound_tcp_authz_deny_total", {"target_addr": "10.42.0.17:9990", **tcp_server}, edge.rate / 4))
    else:
        authz = {"authz_group": "policy.linkerd.io", "authz_kind": "authorizationpolicy", "authz_name": f"{edge.service}-allow"}
        out.append(counter("inbound_http_authz_allow_total",
                           {"target_addr": "10.42.0.17:8080", **server, **route, **authz, "tls": base["tls"]}, edge.rate))
    out.append(counter("tcp_open_total", {"direction": "inbound", "peer": "src", "target_addr": "10.42.0.17:8080",
                                          "tls": base["tls"], **({} if edge.mtls else {"no_tls_reason": "no_tls_from_remote"})},
                       edge.rate / 20))
    return out


def _linkerd_outbound(edge: Edge) -> list[Series]:
    dst = {"dst_namespace": edge.namespace, "dst_deployment": edge.service, "dst_service": edge.service,
           "dst_serviceaccount": edge.service, "dst_pod_template_hash": "6d8b7f"}
    base = {"direction": "outbound", "authority": f"{edge.service}.{edge.namespace}.svc.cluster.local:8080",
            "target_addr": "10.42.0.17:8080", "tls": "true", "server_id": _identity(edge.namespace, edge.service), **dst}
    response = {**base, "status_code": edge.code, "classification": _classification(edge), "error": "",
                **({"grpc_status": edge.grpc_status} if edge.grpc_status else {})}
    return [counter("request_total", base, edge.rate), counter("response_total", response, edge.rate)] + histogram(
        "response_latency_ms", response, edge.rate)


def linkerd(now: float) -> list[Target]:
    """Every linkerd2-proxy of the edges (inbound series on the callee, outbound on the caller)
    and the destination and identity controllers."""
    pods: dict[tuple[str, str], Target] = {}

    def pod(namespace: str, workload: str) -> Target:
        key = (namespace, workload)
        if key not in pods:
            labels = {"namespace": namespace, "pod": f"{workload}-6d8b7f-q9z2w", "deployment": workload}
            series = [gauge("identity_cert_expiration_timestamp_seconds", {}, now + CERT_NOT_AFTER_IN),
                      counter("identity_cert_refresh_count", {}, 0.0)]
            pods[key] = Target("/metrics", labels, "linkerd", workload, series)
        return pods[key]

    for edge in LINKERD_EDGES:
        pod(edge.namespace, edge.service).series += _linkerd_inbound(edge)
        if edge.meshed_source:
            pod(edge.source_namespace, edge.source).series += _linkerd_outbound(edge)
    return sorted(pods.values(), key=lambda t: t.labels["pod"]) + _linkerd_control_plane(now)


def _linkerd_control_plane(now: float) -> list[Target]:
    targets = []
    for component, service, method, failing in (
        ("destination", "io.linkerd.proxy.destination.Destination", "Get", "Unavailable"),
        ("identity", "io.linkerd.proxy.identity.Identity", "Certify", "InvalidArgument"),
    ):
        grpc = {"grpc_service": service, "grpc_method": method, "grpc_type": "unary"}
        series = [
            gauge("process_start_time_seconds", {}, now - 3600),
            counter("grpc_server_handled_total", {**grpc, "grpc_code": "OK"}, 1.0),
            counter("grpc_server_handled_total", {**grpc, "grpc_code": failing}, 0.05),
        ]
        labels = {"namespace": "linkerd", "pod": f"linkerd-{component}-5c8d7-abcde", "component": component}
        targets.append(Target("/metrics", labels, "linkerd", f"linkerd-{component}", series, proxy=False))
    return targets


MESHES = {"istio": istio, "linkerd": linkerd}
