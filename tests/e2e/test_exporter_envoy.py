"""The exporter against a real Envoy with mTLS and RBAC: counts per reason and exact expiry."""

from __future__ import annotations

import json

from cryptography import x509

from tests.exporter.running import start_exporter
from meshobs.exporter.normalize import REASONS
from tests.support.envoy import LISTENER_STAT_PREFIX, spiffe, start_envoy
from tests.support.procs import http_get, wait_until

LABELS = {"mesh": "consul", "namespace": "default", "workload": "backend"}


def write_targets(path, envoy, mesh: str = "consul"):
    path.write_text(json.dumps([{"targets": [f"127.0.0.1:{envoy.admin_port}"],
                                 "labels": {**LABELS, "mesh": mesh, "__metrics_path__": "/stats/prometheus"}}]))


def envoy_and_exporter(processes, tmp_path, customize=None, interval: str = "100ms", mesh: str = "consul"):
    """A real Envoy, and an exporter reading its admin through a file_sd targets file."""
    envoy = start_envoy(processes, tmp_path, customize=customize)
    targets = tmp_path / "targets.json"
    write_targets(targets, envoy, mesh)
    return envoy, start_exporter(processes, tmp_path, "--targets-file", str(targets), "--scrape-interval", interval)


def test_counters_per_reason_equal_the_attempts_and_leaf_expiry_is_not_after(processes, tmp_path):
    """Allowed, denied, no-cert, foreign-CA and refused plaintext attempts each land in their own series, once per attempt; refused plaintext is a not_tls failure and never plaintext traffic; expiry and notBefore are the certificates' own."""
    envoy, exporter = envoy_and_exporter(processes, tmp_path)
    pki = envoy.pki
    attempts = {"allowed": 3, "denied": 4, "no_cert": 2, "foreign": 5, "plaintext": 6}
    for _ in range(attempts["allowed"]):
        assert envoy.request(pki.allowed) == 200
    for _ in range(attempts["denied"]):
        assert envoy.request(pki.denied) == 403
    for _ in range(attempts["no_cert"]):
        assert envoy.request(None) is None
    for _ in range(attempts["foreign"]):
        assert envoy.request(pki.foreign) is None
    for _ in range(attempts["plaintext"]):
        assert envoy.request(None, tls=False) is None

    expected = {
        ("meshobs_authz_allowed_total", ()): 3,
        ("meshobs_authz_denied_total", ()): 4,
        ("meshobs_tls_handshakes_total", ()): 7,
        ("meshobs_tls_handshake_failures_total", (("reason", "no_client_cert"),)): 2,
        ("meshobs_tls_handshake_failures_total", (("reason", "untrusted_cert"),)): 5,
        ("meshobs_tls_handshake_failures_total", (("reason", "not_tls"),)): 6,
        ("meshobs_tls_handshake_failures_total", (("reason", "san_mismatch"),)): 0,
        ("meshobs_tls_handshake_failures_total", (("reason", "other"),)): 0,
        # refused by the mTLS-only listener: nothing was served in plaintext
        ("meshobs_plaintext_requests_total", ()): 0,
    }

    def observed():
        return {key: exporter.value(key[0], **LABELS, **dict(key[1])) for key in expected}

    wait_until(lambda: observed() == expected, timeout=10, what=f"exporter counters {expected}")

    leaf = x509.load_pem_x509_certificate(pki.server.cert.read_bytes())
    ca = x509.load_pem_x509_certificate(pki.ca.cert_path.read_bytes())
    assert exporter.value("meshobs_cert_expiry_timestamp_seconds", **LABELS, cert="leaf") == leaf.not_valid_after_utc.timestamp()
    assert exporter.value("meshobs_cert_expiry_timestamp_seconds", **LABELS, cert="ca") == ca.not_valid_after_utc.timestamp()
    # no stat carries a notBefore: it comes from /certs (valid_from), for the same certificates
    assert exporter.value("meshobs_cert_not_before_timestamp_seconds", **LABELS, cert="leaf") == leaf.not_valid_before_utc.timestamp()
    assert exporter.value("meshobs_cert_not_before_timestamp_seconds", **LABELS, cert="ca") == ca.not_valid_before_utc.timestamp()
    # what Envoy itself counted for the refused plaintext: connection_error only
    assert envoy.counter(f"listener.{LISTENER_STAT_PREFIX}.ssl.connection_error") == 6
    assert envoy.counter(f"listener.{LISTENER_STAT_PREFIX}.ssl.no_certificate") == 0
    assert exporter.value("meshobs_target_up", **LABELS) == 1
    assert exporter.value("meshobs_scrape_errors_total", **LABELS, reason="refused") == 0


def drop_validation_context(config: dict) -> None:
    tls = config["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"]["typed_config"]
    del tls["common_tls_context"]["validation_context"]


def test_a_listener_that_silently_accepts_clients_without_certificates_counts_as_plaintext(processes, tmp_path):
    """Without a validation context Envoy serves clients with no certificate; each such connection is plaintext traffic (served without mutual TLS) and never a TLS failure."""
    envoy, exporter = envoy_and_exporter(processes, tmp_path, customize=drop_validation_context)
    for _ in range(3):
        assert envoy.request(None) == 403  # the handshake succeeds; RBAC sees no principal
    wait_until(lambda: exporter.value("meshobs_plaintext_requests_total", **LABELS) == 3, timeout=10,
               what="three plaintext requests")
    assert exporter.value("meshobs_tls_handshakes_total", **LABELS) == 3
    assert {reason: exporter.value("meshobs_tls_handshake_failures_total", **LABELS, reason=reason)
            for reason in REASONS} == dict.fromkeys(REASONS, 0)
    # what Envoy itself counted: successful handshakes without a client certificate, no connection_error
    assert envoy.counter(f"listener.{LISTENER_STAT_PREFIX}.ssl.no_certificate") == 3
    assert envoy.counter(f"listener.{LISTENER_STAT_PREFIX}.ssl.connection_error") == 0


def test_counts_carry_on_when_the_workloads_proxy_is_replaced(processes, tmp_path):
    """A workload's proxy replaced by a new Envoy (fresh counters, new address) continues the workload's counters."""
    (tmp_path / "first").mkdir()
    first = start_envoy(processes, tmp_path / "first")
    targets = tmp_path / "targets.json"
    write_targets(targets, first)
    exporter = start_exporter(processes, tmp_path, "--targets-file", str(targets), "--scrape-interval", "100ms")
    for _ in range(2):
        assert first.request(first.pki.denied) == 403
    wait_until(lambda: exporter.value("meshobs_authz_denied_total", **LABELS) == 2, timeout=10, what="2 denials")
    first.process.stop()
    (tmp_path / "second").mkdir()
    second = start_envoy(processes, tmp_path / "second")
    write_targets(targets, second)
    for _ in range(3):
        assert second.request(second.pki.denied) == 403
    wait_until(lambda: exporter.value("meshobs_authz_denied_total", **LABELS) == 5, timeout=10, what="2 + 3 denials")


def drop_certificate_stats(config: dict) -> None:
    config["stats_config"] = {"stats_matcher": {"exclusion_list": {"patterns": [{"contains": "expiration_unix_time_seconds"}]}}}


def test_certificate_expiry_from_the_admin_certs_endpoint_when_stats_lack_it(processes, tmp_path):
    """With the expiry gauges filtered out of the stats, leaf and CA expiry come from Envoy's /certs, exact to the second."""
    envoy, exporter = envoy_and_exporter(processes, tmp_path, customize=drop_certificate_stats)
    leaf = x509.load_pem_x509_certificate(envoy.pki.server.cert.read_bytes())
    ca = x509.load_pem_x509_certificate(envoy.pki.ca.cert_path.read_bytes())
    wait_until(lambda: exporter.value("meshobs_cert_expiry_timestamp_seconds", **LABELS, cert="leaf") is not None,
               timeout=10, what="leaf expiry")
    assert "expiration_unix_time_seconds" not in http_get(f"{envoy.admin_url}/stats/prometheus")[1].decode()
    assert exporter.value("meshobs_cert_expiry_timestamp_seconds", **LABELS, cert="leaf") == leaf.not_valid_after_utc.timestamp()
    assert exporter.value("meshobs_cert_expiry_timestamp_seconds", **LABELS, cert="ca") == ca.not_valid_after_utc.timestamp()
    assert exporter.value("meshobs_cert_not_before_timestamp_seconds", **LABELS, cert="leaf") == leaf.not_valid_before_utc.timestamp()
    assert exporter.value("meshobs_cert_not_before_timestamp_seconds", **LABELS, cert="ca") == ca.not_valid_before_utc.timestamp()


def require_frontend_san(config: dict) -> None:
    tls = config["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"]["typed_config"]
    tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"] = [
        {"san_type": "URI", "matcher": {"exact": spiffe("default", "frontend")}}]


def test_a_trusted_certificate_with_the_wrong_san_is_a_san_mismatch(processes, tmp_path):
    """With a SAN matcher on the listener, a trusted client whose SAN does not match fails as san_mismatch, once per attempt."""
    envoy, exporter = envoy_and_exporter(processes, tmp_path, customize=require_frontend_san)
    assert envoy.request(envoy.pki.allowed) == 200
    for _ in range(4):
        assert envoy.request(envoy.pki.denied) is None
    wait_until(lambda: exporter.value("meshobs_tls_handshake_failures_total", **LABELS, reason="san_mismatch") == 4,
               timeout=10, what="four SAN mismatches")
    assert exporter.value("meshobs_tls_handshakes_total", **LABELS) == 1
    assert exporter.value("meshobs_tls_handshake_failures_total", **LABELS, reason="untrusted_cert") == 0
