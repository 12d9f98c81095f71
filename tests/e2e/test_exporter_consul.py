"""The exporter on Consul-shaped sidecars: real Envoys with Consul's bootstrap stats tags,
callers reaching the backend over mTLS upstreams, the backend's intentions RBAC deciding."""

from __future__ import annotations

from tests.exporter.running import start_exporter
from tests.support.consul_envoy import start_consul_mesh
from tests.support.procs import wait_until


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
