"""Consul service mesh data from real Envoys: a `backend` sidecar (HTTP public_listener with mTLS and
L7 intentions, the HTTP RBAC filter), a `db` sidecar (TCP public_listener with L4 intentions, the
network RBAC filter under Consul's `connect_authz` prefix) and two caller sidecars (`frontend`,
allowed, which also calls `db` through a TCP upstream and `backend` of the cluster peer `west`;
`intruder`, denied) whose upstream clusters carry Consul's SNI names, all with the stats
tags of Consul's Envoy bootstrap, so /stats/prometheus carries `local_cluster` and `consul_*`
labels like a real Consul sidecar."""

from __future__ import annotations

import http.client
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from tests.support.envoy import EnvoyPKI, RunningEnvoy, spiffe, start_envoy
from tests.support.pki import Issued
from tests.support.procs import free_port

DATACENTER = "dc1"
TRUST_DOMAIN = "11111111-2222-3333-4444-555555555555.consul"
NAMESPACE = "default"
_SERVICE_IN_SNI = r"^cluster\.(?:passthrough~)?((?:[^.]+~)?(?:[^.]+\.)?"
# Consul's bootstrap template tag extractors for upstream clusters (subset it names
# consul.destination.*), applied to SNI cluster names `svc.ns.dc.internal.<trust domain>`.
CONSUL_TAG_REGEXES = {
    "consul.destination.service": _SERVICE_IN_SNI + r"([^.]+)\.[^.]+\.(?:[^.]+\.)?[^.]+\.[^.]+\.[^.]+\.consul\.)",
    "consul.destination.namespace": _SERVICE_IN_SNI + r"[^.]+\.([^.]+)\.(?:[^.]+\.)?[^.]+\.[^.]+\.[^.]+\.consul\.)",
    "consul.destination.partition": _SERVICE_IN_SNI + r"[^.]+\.[^.]+\.(?:([^.]+)\.)?[^.]+\.internal[^.]*\.[^.]+\.consul\.)",
    "consul.destination.datacenter": _SERVICE_IN_SNI + r"[^.]+\.[^.]+\.(?:[^.]+\.)?([^.]+)\.internal[^.]*\.[^.]+\.consul\.)",
    # an upstream of a cluster peer: `svc.ns.<peer>.external.<trust domain>`
    "consul.destination.peer": r"^cluster\.([^.]+\.(?:[^.]+\.)?([^.]+)\.external\.[^.]+\.consul\.)",
    "consul.destination.target": r"^cluster\.(?:passthrough~)?(((?:[^.]+~)?(?:[^.]+\.)?[^.]+\.[^.]+\.(?:[^.]+\.)?[^.]+)\.[^.]+\.[^.]+\.consul\.)",
}


PEER = "west"


def sni(service: str) -> str:
    return f"{service}.{NAMESPACE}.{DATACENTER}.internal.{TRUST_DOMAIN}"


def peered_sni(service: str) -> str:
    """The SNI of `service` exported by the cluster peer `PEER` (Consul cluster peering)."""
    return f"{service}.{NAMESPACE}.{PEER}.external.{TRUST_DOMAIN}"


def consul_bootstrap(config: dict, service: str) -> None:
    """What Consul's bootstrap adds: stats tags, and ADS to the local agent (never answering here,
    so `control_plane.connected_state` is 0 and cds/lds counters exist)."""
    tags = [{"tag_name": name, "regex": regex} for name, regex in CONSUL_TAG_REGEXES.items()]
    tags += [{"tag_name": "local_cluster", "fixed_value": service},
             {"tag_name": "consul.source.service", "fixed_value": service},
             {"tag_name": "consul.source.namespace", "fixed_value": NAMESPACE},
             {"tag_name": "consul.source.datacenter", "fixed_value": DATACENTER}]
    config["stats_config"] = {"stats_tags": tags, "use_all_default_tags": True}
    config["node"] = {"cluster": service, "id": f"{service}-sidecar-proxy"}
    agent_port = free_port()
    clusters = config["static_resources"].setdefault("clusters", [])
    clusters.append({
        "name": "local_agent", "type": "STATIC", "connect_timeout": "1s",
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}}},
        "load_assignment": {"cluster_name": "local_agent", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": agent_port}}}}]}]},
    })
    # Consul sets 0s (wait for the agent forever); no agent answers here, so give up at once
    ads = {"ads": {}, "initial_fetch_timeout": "0.1s", "resource_api_version": "V3"}
    config["dynamic_resources"] = {
        "lds_config": ads, "cds_config": dict(ads),
        "ads_config": {"api_type": "DELTA_GRPC", "transport_api_version": "V3",
                       "grpc_services": [{"envoy_grpc": {"cluster_name": "local_agent"}}]},
    }


def _public_listener(config: dict) -> None:
    listener = config["static_resources"]["listeners"][0]
    listener["name"] = "public_listener"
    listener["filter_chains"][0]["filters"][0]["typed_config"]["stat_prefix"] = "public_listener"


def _upstream_cluster(service: str, target: RunningEnvoy, client: Issued, cluster_name: str | None = None) -> dict:
    """A Consul upstream cluster: named by the service's SNI (`cluster_name`, else the local
    datacenter's), mTLS with `client`'s certificate, and Consul's default passive health checks
    (outlier detection)."""
    cluster_name = cluster_name or sni(service)
    return {
        "name": cluster_name, "type": "STATIC", "connect_timeout": "1s",
        "outlier_detection": {},
        "load_assignment": {"cluster_name": cluster_name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
            "socket_address": {"address": "127.0.0.1", "port_value": target.listener_port}}}}]}]},
        "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": cluster_name,
            "common_tls_context": {
                "tls_certificates": [{"certificate_chain": {"filename": str(client.cert)},
                                      "private_key": {"filename": str(client.key)}}],
                "validation_context": {"trusted_ca": {"filename": str(target.pki.ca.cert_path)}}}}},
    }


def _http_upstream(cluster_name: str, stat_prefix: str, port: int) -> dict:
    """An upstream listener: plain HTTP from the app on `port`, routed to the cluster `cluster_name`."""
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": stat_prefix,
        "route_config": {"virtual_hosts": [{"name": "backend", "domains": ["*"],
                                            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster_name}}]}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
    }
    return {
        "name": f"{stat_prefix}:127.0.0.1", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}],
    }


def _caller(config: dict, backend: RunningEnvoy, client: Issued, port: int) -> None:
    """Replace the listener with an upstream listener (plain HTTP from the app) to `backend`
    over mTLS with `client`'s certificate, as a Consul upstream."""
    config["static_resources"]["listeners"] = [_http_upstream(sni("backend"), "upstream.backend.default.default.dc1", port)]
    config["static_resources"]["clusters"] = [_upstream_cluster("backend", backend, client)]


def _peered_upstream(config: dict, backend: RunningEnvoy, client: Issued, port: int) -> None:
    """Add an upstream listener to `backend` as the cluster peer `PEER` exports it (the peer's
    service is played by the same Envoy: only the upstream cluster's name tells the peer)."""
    config["static_resources"]["listeners"].append(_http_upstream(peered_sni("backend"), f"upstream.backend.default.{PEER}", port))
    config["static_resources"]["clusters"].append(_upstream_cluster("backend", backend, client, peered_sni("backend")))


def _tcp_upstream(config: dict, db: RunningEnvoy, client: Issued, port: int) -> None:
    """Add an upstream listener for a TCP service: plain TCP from the app, tcp_proxy to `db` over
    mTLS, as Consul configures an upstream whose protocol is `tcp`."""
    config["static_resources"]["listeners"].append({
        "name": "db:127.0.0.1", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            "stat_prefix": "upstream.db.default.default.dc1", "cluster": sni("db")}}]}],
    })
    config["static_resources"]["clusters"].append(_upstream_cluster("db", db, client))


def _tcp_public_listener(config: dict, allowed_principal: str) -> None:
    """The mTLS listener as a Consul TCP service: L4 intentions, then tcp_proxy to the local app
    (here Envoy's own admin port stands in for it: any TCP server that accepts will do)."""
    listener = config["static_resources"]["listeners"][0]
    listener["name"] = "public_listener"
    chain = listener["filter_chains"][0]
    chain["filters"] = [
        {"name": "envoy.filters.network.rbac", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC",
            "stat_prefix": "connect_authz",
            "rules": {"action": "ALLOW", "policies": {"consul-intentions-layer4": {
                "permissions": [{"any": True}],
                "principals": [{"authenticated": {"principal_name": {"exact": allowed_principal}}}]}}}}},
        {"name": "envoy.filters.network.tcp_proxy", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            "stat_prefix": "public_listener", "cluster": "local_app"}},
    ]
    admin = config["admin"]["address"]["socket_address"]
    config["static_resources"]["clusters"] = [{
        "name": "local_app", "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": "local_app", "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": admin["address"], "port_value": admin["port_value"]}}}}]}]},
    }]


def tcp_connect(envoy: RunningEnvoy, client: Issued) -> bytes:
    """An mTLS connection with `client`'s certificate that sends a request line (L4 RBAC decides
    on the first byte) and returns what came back before the close."""
    context = ssl.create_default_context(cafile=str(envoy.pki.ca.cert_path))
    context.check_hostname = False
    context.load_cert_chain(str(client.cert), str(client.key))
    with socket.create_connection(("127.0.0.1", envoy.listener_port), timeout=5) as raw:
        with context.wrap_socket(raw) as conn:
            conn.sendall(b"GET /ready HTTP/1.1\r\nHost: local\r\nConnection: close\r\n\r\n")
            received = b""
            try:
                while chunk := conn.recv(4096):
                    received += chunk
            except (ssl.SSLError, ConnectionError):
                pass
            return received


@dataclass
class Caller:
    envoy: RunningEnvoy
    port: int
    tcp_port: int | None = None  # its upstream listener for the TCP service `db`, if it has one
    peer_port: int | None = None  # its upstream listener for `backend` of the cluster peer, if it has one

    def request(self, peer: bool = False) -> int:
        """One plain HTTP request from the app to its upstream listener (of the peer's `backend`
        with `peer`); the status."""
        port = self.peer_port if peer else self.port
        assert port is not None, "this caller has no upstream of the cluster peer"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/")
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    def tcp_request(self) -> bytes:
        """A request line over plain TCP to the app's upstream listener for `db`; what came back."""
        assert self.tcp_port is not None, "this caller has no TCP upstream"
        with socket.create_connection(("127.0.0.1", self.tcp_port), timeout=5) as conn:
            conn.sendall(b"GET /ready HTTP/1.1\r\nHost: local\r\nConnection: close\r\n\r\n")
            received = b""
            while chunk := conn.recv(4096):
                received += chunk
            return received


@dataclass
class ConsulMesh:
    backend: RunningEnvoy
    db: RunningEnvoy
    frontend: Caller
    intruder: Caller

    def sidecars(self) -> dict[str, RunningEnvoy]:
        return {"backend": self.backend, "db": self.db, "frontend": self.frontend.envoy, "intruder": self.intruder.envoy}


def start_consul_mesh(processes, tmp_path: Path) -> ConsulMesh:
    pki = EnvoyPKI.create(tmp_path)

    def backend_config(config: dict) -> None:
        _public_listener(config)
        consul_bootstrap(config, "backend")

    def db_config(config: dict) -> None:
        _tcp_public_listener(config, spiffe("default", "frontend"))
        consul_bootstrap(config, "db")

    folder = tmp_path / "backend"
    folder.mkdir()
    backend = start_envoy(processes, folder, pki, customize=backend_config)
    folder = tmp_path / "db"
    folder.mkdir()
    db = start_envoy(processes, folder, pki, customize=db_config)
    callers = []
    # frontend also calls the TCP service db (allowed by its L4 intention) and the peer's backend
    for name, cert, tcp_port, peer_port in (("frontend", pki.allowed, free_port(), free_port()),
                                            ("intruder", pki.denied, None, None)):
        port = free_port()

        def caller_config(config: dict, cert=cert, port=port, name=name, tcp_port=tcp_port, peer_port=peer_port) -> None:
            _caller(config, backend, cert, port)
            if tcp_port is not None:
                _tcp_upstream(config, db, cert, tcp_port)
            if peer_port is not None:
                _peered_upstream(config, backend, cert, peer_port)
            consul_bootstrap(config, name)

        folder = tmp_path / name
        folder.mkdir()
        callers.append(Caller(start_envoy(processes, folder, pki, customize=caller_config), port, tcp_port, peer_port))
    return ConsulMesh(backend, db, *callers)
