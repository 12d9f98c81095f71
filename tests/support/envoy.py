"""A real Envoy for tests: an mTLS listener with an HTTP RBAC filter in front of a direct
response, built as a plain dict so tests can add access logs or listeners to it."""

from __future__ import annotations

import json
import ssl
import http.client
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tests.support.pki import CA, Issued
from tests.support.procs import free_port, http_get, require_binary

LISTENER_STAT_PREFIX = "inbound_mtls"
HTTP_STAT_PREFIX = "inbound_http"
TRUST_DOMAIN = "cluster.local"


def spiffe(namespace: str, service_account: str) -> str:
    return f"spiffe://{TRUST_DOMAIN}/ns/{namespace}/sa/{service_account}"


@dataclass
class EnvoyPKI:
    """Server and client certificates: `allowed` passes RBAC, `denied` is trusted but not allowed,
    `foreign` comes from another CA."""

    ca: CA
    server: Issued
    allowed: Issued
    denied: Issued
    foreign: Issued
    foreign_ca: CA

    @classmethod
    def create(cls, folder: Path) -> "EnvoyPKI":
        ca = CA(folder, "mesh-ca")
        other = CA(folder, "other-ca")
        return cls(
            ca=ca,
            server=ca.issue("backend", spiffe("default", "backend"), dns=("localhost",)),
            allowed=ca.issue("frontend", spiffe("default", "frontend")),
            denied=ca.issue("intruder", spiffe("other", "intruder")),
            foreign=other.issue("stranger", spiffe("default", "frontend")),
            foreign_ca=other,
        )


def mtls_rbac_config(
    pki: EnvoyPKI,
    admin_port: int,
    listener_port: int,
    allowed_principal: str = spiffe("default", "frontend"),
    http_access_log: list[dict] | None = None,
    listener_access_log: list[dict] | None = None,
) -> dict[str, Any]:
    """Bootstrap: admin on 127.0.0.1, one mTLS listener whose RBAC allows one SPIFFE principal.

    Deprecated features are fatal, so a config using them fails to start."""
    hcm: dict[str, Any] = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": HTTP_STAT_PREFIX,
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}}],
                }
            ]
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.rbac",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
                    "rules": {
                        "action": "ALLOW",
                        "policies": {
                            "allow-frontend": {
                                "permissions": [{"any": True}],
                                "principals": [{"authenticated": {"principal_name": {"exact": allowed_principal}}}],
                            }
                        },
                    },
                },
            },
            {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
        ],
    }
    if http_access_log:
        hcm["access_log"] = http_access_log
    listener: dict[str, Any] = {
        "name": "inbound_mtls",
        "stat_prefix": LISTENER_STAT_PREFIX,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": listener_port}},
        "filter_chains": [
            {
                "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}],
                "transport_socket": {
                    "name": "envoy.transport_sockets.tls",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                        "require_client_certificate": True,
                        "common_tls_context": {
                            "tls_certificates": [
                                {"certificate_chain": {"filename": str(pki.server.cert)}, "private_key": {"filename": str(pki.server.key)}}
                            ],
                            "validation_context": {"trusted_ca": {"filename": str(pki.ca.cert_path)}},
                        },
                    },
                },
            }
        ],
    }
    if listener_access_log:
        listener["access_log"] = listener_access_log
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "layered_runtime": {
            "layers": [{"name": "static", "static_layer": {"envoy.features.fail_on_any_deprecated_feature": True}}]
        },
        "static_resources": {"listeners": [listener]},
    }


@dataclass
class RunningEnvoy:
    admin_port: int
    listener_port: int
    pki: EnvoyPKI
    process: Any = field(repr=False)

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def counter(self, name: str) -> int:
        """A counter from /stats?format=json (0 when absent)."""
        _, body = http_get(f"{self.admin_url}/stats?format=json&filter=^{name}$")
        for stat in json.loads(body)["stats"]:
            if stat.get("name") == name:
                return int(stat["value"])
        return 0

    def request(
        self, client: Issued | None, path: str = "/", ca: CA | None = None, tls: bool = True,
        method: str = "GET", headers: dict[str, str] | None = None,
    ) -> int | None:
        """One HTTPS request with `client`'s certificate; the HTTP status, or None when the
        TLS handshake or connection fails. `tls=False` sends plaintext HTTP to the TLS port.
        `headers` are sent besides Host (user agent, request id, traceparent...)."""
        if not tls:
            conn = http.client.HTTPConnection("127.0.0.1", self.listener_port, timeout=5)
        else:
            context = ssl.create_default_context(cafile=str(self.pki.ca.cert_path))
            context.check_hostname = False
            if client is not None:
                context.load_cert_chain(str(client.cert), str(client.key))
            conn = http.client.HTTPSConnection("127.0.0.1", self.listener_port, timeout=5, context=context)
        try:
            conn.request(method, path, headers={"Host": "backend.default.svc", **(headers or {})})
            response = conn.getresponse()
            response.read()
            return response.status
        except (ssl.SSLError, ConnectionError, http.client.HTTPException, OSError):
            return None
        finally:
            conn.close()


def start_envoy(
    processes, tmp_path: Path, pki: EnvoyPKI | None = None, customize: Callable[[dict], None] | None = None,
    admin_port: int | None = None, **config_kwargs,
) -> RunningEnvoy:
    """Start Envoy with `mtls_rbac_config` on free ports (the admin on `admin_port` if given) and
    wait until its admin says LIVE. `customize` may change the bootstrap dict in place first
    (stats matcher, tracing, clusters)."""
    envoy = require_binary("envoy")
    pki = pki or EnvoyPKI.create(tmp_path)
    admin_port, listener_port = admin_port or free_port(), free_port()
    config = mtls_rbac_config(pki, admin_port, listener_port, **config_kwargs)
    if customize is not None:
        customize(config)
    config_path = tmp_path / "envoy.json"
    config_path.write_text(json.dumps(config, indent=2))
    process = processes(
        [envoy, "-c", str(config_path), "--disable-hot-restart", "--concurrency", "1",
         "--base-id", str(admin_port), "--file-flush-interval-msec", "100", "-l", "warning"],
        tmp_path / "envoy.log",
    )
    process.wait_ready(lambda: http_get(f"http://127.0.0.1:{admin_port}/ready")[0] == 200, what="envoy /ready")
    return RunningEnvoy(admin_port, listener_port, pki, process)
