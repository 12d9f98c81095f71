"""The Istio dialect against a real Envoy whose stats are tagged with Istio's own rules."""

from __future__ import annotations

from cryptography import x509

from tests.e2e.test_exporter_envoy import LABELS, envoy_and_exporter
from tests.support.procs import http_get, wait_until

# From Istio's sidecar bootstrap (envoy_bootstrap.json, `stats_config`): Envoy's default tags off,
# Istio's regexes instead. An HTTP connection manager prefix with letters (`inbound_...`) does not
# match the http_conn_manager_prefix regex, so it stays in the name, as on released Istio sidecars.
_ADDRESS = r"(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)"
ISTIO_STATS_TAGS = [
    {"tag_name": "http_conn_manager_prefix", "regex": r"^http\." + _ADDRESS},
    {"tag_name": "listener_address", "regex": r"^listener\." + _ADDRESS},
    {"tag_name": "authz_enforce_result", "regex": r"rbac(\.(allowed|denied))"},
    {"tag_name": "authz_dry_run_action", "regex": r"(\.istio_dry_run_(allow|deny)_)"},
    {"tag_name": "authz_dry_run_result", "regex": r"(\.shadow_(allowed|denied))"},
]
ISTIO = {**LABELS, "mesh": "istio"}


def istio_sidecar(config: dict) -> None:
    """Name the listener by address and the inbound HTTP manager by port, as Istio does."""
    listener = config["static_resources"]["listeners"][0]
    del listener["stat_prefix"]
    listener["filter_chains"][0]["filters"][0]["typed_config"]["stat_prefix"] = "inbound_0.0.0.0_8080"
    config["stats_config"] = {"use_all_default_tags": False, "stats_tags": ISTIO_STATS_TAGS}


def test_istio_tagged_stats_give_the_same_counts(processes, tmp_path):
    """With Istio's tag rules (decision as a label, prefix and certificate names in metric names) each attempt is counted once under its reason; refused plaintext is not_tls only; no notBefore without /certs."""
    envoy, exporter = envoy_and_exporter(processes, tmp_path, customize=istio_sidecar, mesh="istio")
    exposition = http_get(f"{envoy.admin_url}/stats/prometheus")[1].decode()
    assert 'envoy_http_inbound_0_0_0_0_8080_rbac{authz_enforce_result="denied"}' in exposition
    assert "envoy_listener_ssl_certificate_unnamed_cert_" in exposition
    pki = envoy.pki
    for client, status, times in ((pki.allowed, 200, 2), (pki.denied, 403, 3), (None, None, 1), (pki.foreign, None, 2)):
        for _ in range(times):
            assert envoy.request(client) == status
    assert envoy.request(None, tls=False) is None
    expected = {("meshobs_authz_allowed_total", ""): 2, ("meshobs_authz_denied_total", ""): 3,
                ("meshobs_tls_handshakes_total", ""): 5, ("meshobs_plaintext_requests_total", ""): 0,
                ("meshobs_tls_handshake_failures_total", "no_client_cert"): 1,
                ("meshobs_tls_handshake_failures_total", "untrusted_cert"): 2,
                ("meshobs_tls_handshake_failures_total", "not_tls"): 1}

    def observed():
        return {(name, reason): exporter.value(name, **ISTIO, **({"reason": reason} if reason else {}))
                for name, reason in expected}

    wait_until(lambda: observed() == expected, timeout=10, what=f"exporter counters {expected}")
    leaf = x509.load_pem_x509_certificate(pki.server.cert.read_bytes())
    ca = x509.load_pem_x509_certificate(pki.ca.cert_path.read_bytes())
    assert exporter.value("meshobs_cert_expiry_timestamp_seconds", **ISTIO, cert="leaf") == leaf.not_valid_after_utc.timestamp()
    assert exporter.value("meshobs_cert_expiry_timestamp_seconds", **ISTIO, cert="ca") == ca.not_valid_after_utc.timestamp()
    # Istio's stats port has no /certs: the notBefore is unknown, the alert falls back to Istio's 24h leaf lifetime
    assert exporter.value("meshobs_cert_not_before_timestamp_seconds", **ISTIO, cert="leaf") is None


def istio_strict_sidecar(config: dict) -> None:
    """As `istio_sidecar`, with the inbound listener in STRICT mode's shape: a TLS inspector and
    only filter chains that require TLS (Istio's `transportProtocol: tls` chains)."""
    istio_sidecar(config)
    listener = config["static_resources"]["listeners"][0]
    listener["listener_filters"] = [{"name": "envoy.filters.listener.tls_inspector", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}}]
    listener["filter_chains"][0]["filter_chain_match"] = {"transport_protocol": "tls"}


def test_plaintext_refused_in_strict_mode_is_a_not_tls_failure(processes, tmp_path):
    """Plaintext to a STRICT-shaped inbound listener finds no filter chain (Envoy moves no_filter_chain_match, not ssl.connection_error): the exporter counts a not_tls failure per connection and no plaintext traffic."""
    envoy, exporter = envoy_and_exporter(processes, tmp_path, customize=istio_strict_sidecar, mesh="istio")
    assert envoy.request(envoy.pki.allowed) == 200
    for _ in range(3):
        assert envoy.request(None, tls=False) is None
    wait_until(lambda: exporter.value("meshobs_tls_handshake_failures_total", **ISTIO, reason="not_tls") == 3,
               timeout=10, what="three not_tls failures")
    assert exporter.value("meshobs_plaintext_requests_total", **ISTIO) == 0
    assert exporter.value("meshobs_tls_handshakes_total", **ISTIO) == 1
    exposition = http_get(f"{envoy.admin_url}/stats/prometheus")[1].decode()
    address = f"127.0.0.1_{envoy.listener_port}"
    assert f'envoy_listener_no_filter_chain_match{{listener_address="{address}"}} 3' in exposition
    assert f'envoy_listener_ssl_connection_error{{listener_address="{address}"}} 0' in exposition
