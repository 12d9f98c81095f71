"""The exporter on Consul-shaped sidecars: real Envoys with Consul's bootstrap stats tags,
callers reaching the backend over mTLS upstreams, the backend's intentions RBAC deciding."""

from __future__ import annotations

import json

from tests.exporter.running import start_exporter
from tests.support.consul_envoy import start_consul_mesh
from tests.support.procs import http_get, wait_until


def test_intentions_at_the_backend_and_quiet_callers(processes, tmp_path):
    """The allowed caller's requests and the denied caller's 403s are counted at the backend only; the callers show no decisions."""
    mesh = start_consul_mesh(processes, tmp_path)
    targets = [arg for name, envoy in mesh.sidecars().items()
               for arg in ("--target", f"consul/default/{name}={envoy.admin_url}/stats/prometheus")]
    exporter = start_exporter(processes, tmp_path, *targets, "--scrape-interval", "100ms")
    for _ in range(3):
        assert mesh.frontend.request() == 200
    for _ in range(4):
        assert mesh.intruder.request() == 403

    def decisions(workload: str) -> tuple:
        labels = {"mesh": "consul", "namespace": "default", "workload": workload}
        return (exporter.value("meshobs_authz_allowed_total", **labels), exporter.value("meshobs_authz_denied_total", **labels))

    wait_until(lambda: decisions("backend") == (3, 4), timeout=10, what="3 allowed and 4 denied at the backend")
    assert decisions("frontend") == decisions("intruder") == (0, 0)
    backend = {"mesh": "consul", "namespace": "default", "workload": "backend"}
    assert exporter.value("meshobs_tls_handshakes_total", **backend) >= 2  # callers reuse their connections
    assert all(exporter.value("meshobs_tls_handshake_failures_total", **backend, reason=r) == 0
               for r in ("no_client_cert", "untrusted_cert", "san_mismatch", "not_tls", "other"))
    assert exporter.value("meshobs_cert_expiry_timestamp_seconds", **backend, cert="leaf") == mesh.backend.pki.server.not_after.timestamp()


def _envoy_stat_total(envoy, suffix: str) -> int:
    """Envoy's own count of `suffix` summed over its listeners (from /stats?format=json)."""
    _, body = http_get(f"{envoy.admin_url}/stats?format=json&filter={suffix}$")
    return sum(int(stat["value"]) for stat in json.loads(body)["stats"] if "name" in stat and stat["name"].endswith(suffix))


def test_refused_plaintext_at_the_public_listeners_is_a_tls_failure_and_never_plaintext_traffic(processes, tmp_path):
    """Plaintext sent to Consul's mTLS-only public listeners (HTTP backend, TCP db) is refused: Envoy counts ssl.connection_error only, the exporter a not_tls failure per connection and no plaintext request."""
    mesh = start_consul_mesh(processes, tmp_path)
    targets = [arg for name in ("backend", "db")
               for arg in ("--target", f"consul/default/{name}={mesh.sidecars()[name].admin_url}/stats/prometheus")]
    exporter = start_exporter(processes, tmp_path, *targets, "--scrape-interval", "100ms")
    attempts = {"backend": 3, "db": 2}
    for name, times in attempts.items():
        for _ in range(times):
            assert mesh.sidecars()[name].request(None, tls=False) is None  # nothing was served
    for name, times in attempts.items():
        labels = {"mesh": "consul", "namespace": "default", "workload": name}
        wait_until(lambda: exporter.value("meshobs_tls_handshake_failures_total", **labels, reason="not_tls") == times,
                   timeout=10, what=f"{times} not_tls failures at {name}")
        assert exporter.value("meshobs_plaintext_requests_total", **labels) == 0
        envoy = mesh.sidecars()[name]
        assert (_envoy_stat_total(envoy, "ssl.connection_error"), _envoy_stat_total(envoy, "ssl.no_certificate")) == (times, 0)
