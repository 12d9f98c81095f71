"""Each mesh's proxy series map onto the same meshobs series."""

from __future__ import annotations

import json

import pytest

from meshobs.exporter.normalize import (
    ALLOWED, DENIED, DIALECTS, FAILURES, HANDSHAKES, PLAINTEXT, admin_certs, cert_kind, certs_from_admin, normalize,
)

ISTIO, CONSUL, LINKERD = DIALECTS["istio"], DIALECTS["consul"], DIALECTS["linkerd"]
from meshobs.exporter.parse import PayloadError, parse


def read(dialect, text: str):
    return normalize(dialect, parse(text.encode(), dialect.prefixes, dialect.names))


def test_istio_tag_rules_rbac_label_and_permissive_plaintext():
    """Istio's RBAC family is split by authz_enforce_result whether or not the prefix stayed in the name, dry-run series are ignored, plaintext comes from the destination reporter, certificate names come from the metric name."""
    reading = read(ISTIO, """\
envoy_http_rbac{authz_enforce_result="allowed",http_conn_manager_prefix="inbound_0.0.0.0_8080"} 10
envoy_http_rbac{authz_enforce_result="denied",http_conn_manager_prefix="inbound_0.0.0.0_8080"} 4
envoy_http_rbac{authz_dry_run_action="allow",authz_dry_run_result="denied",http_conn_manager_prefix="inbound_0.0.0.0_8080"} 99
envoy_listener_ssl_handshake{listener_address="0.0.0.0_15006"} 14
envoy_listener_ssl_fail_verify_san{listener_address="0.0.0.0_15006"} 2
istio_requests_total{reporter="destination",connection_security_policy="none",response_code="200"} 5
istio_requests_total{reporter="source",connection_security_policy="unknown",response_code="200"} 50
istio_requests_total{reporter="destination",connection_security_policy="mutual_tls",response_code="200"} 9
envoy_listener_ssl_certificate_default_expiration_unix_time_seconds{listener_address="0.0.0.0_15006"} 1800000000
envoy_listener_ssl_certificate_ROOTCA_expiration_unix_time_seconds{listener_address="0.0.0.0_15006"} 1900000000
envoy_http_inbound_0_0_0_0_9090_rbac{authz_enforce_result="denied"} 1
envoy_http_inbound_0_0_0_0_9090_downstream_rq_total{} 70
""")
    assert reading.counters[(ALLOWED, "")] == 10
    assert reading.counters[(DENIED, "")] == 5  # labelled prefix (4) and prefix left in the name (1)
    assert reading.counters[(HANDSHAKES, "")] == 14
    assert reading.counters[(FAILURES, "san_mismatch")] == 2
    assert reading.counters[(PLAINTEXT, "")] == 5
    assert reading.certs == {"leaf": 1800000000, "ca": 1900000000}


def test_istio_403s_are_never_denials():
    """Destination-reported 403s (an application's look the same) are not RBAC denials: without the RBAC family the exporter reports none."""
    requests = """\
istio_requests_total{reporter="destination",response_code="403",connection_security_policy="mutual_tls"} 6
istio_requests_total{reporter="source",response_code="403",connection_security_policy="unknown"} 6
"""
    assert read(ISTIO, requests).counters[(DENIED, "")] == 0
    with_rbac = requests + 'envoy_http_rbac{authz_enforce_result="denied",http_conn_manager_prefix="x"} 2\n'
    assert read(ISTIO, with_rbac).counters[(DENIED, "")] == 2


def test_consul_intentions_l4_and_l7_add_up():
    """Consul's connect_authz network RBAC and HTTP RBAC decisions are summed per decision; shadow rules are not decisions."""
    reading = read(CONSUL, """\
envoy_rbac_denied{envoy_rbac_prefix="connect_authz"} 3
envoy_rbac_allowed{envoy_rbac_prefix="connect_authz"} 8
envoy_http_rbac_denied{envoy_http_conn_manager_prefix="public_listener"} 2
envoy_http_rbac_shadow_denied{envoy_http_conn_manager_prefix="public_listener"} 70
envoy_listener_ssl_fail_verify_no_cert{envoy_listener_address="public_listener"} 1
""")
    assert (reading.counters[(DENIED, "")], reading.counters[(ALLOWED, "")]) == (5, 8)
    assert reading.counters[(FAILURES, "no_client_cert")] == 1
    assert [reading.counters[(FAILURES, r)] for r in ("untrusted_cert", "san_mismatch", "not_tls", "other")] == [0] * 4


def test_linkerd_authz_tls_connections_and_plaintext():
    """Linkerd's authz counters, inbound TLS connections and inbound non-TLS requests are read; loopback and kubelet probes (the default probe route, a pod-IP authority) are not plaintext findings."""
    reading = read(LINKERD, """\
inbound_http_authz_allow_total{srv_name="web"} 20
inbound_http_authz_deny_total{srv_name="web"} 6
inbound_tcp_authz_deny_total{srv_name="db"} 1
tcp_open_total{direction="inbound",tls="true"} 11
tcp_open_total{direction="outbound",tls="true"} 40
request_total{direction="inbound",tls="no_identity",no_tls_reason="not_provided_by_remote",authority="web.shop.svc.cluster.local:8080"} 7
request_total{direction="inbound",tls="no_identity",no_tls_reason="loopback"} 30
request_total{direction="inbound",tls="no_identity",no_tls_reason="not_provided_by_remote",route_kind="default",route_name="probe",authority="web:8080"} 50
request_total{direction="inbound",tls="no_identity",no_tls_reason="not_provided_by_remote",authority="10.42.0.7:4191"} 9
request_total{direction="inbound",tls="true"} 100
identity_cert_expiration_timestamp_seconds 1800000123
""")
    assert (reading.counters[(ALLOWED, "")], reading.counters[(DENIED, "")]) == (20, 7)
    assert reading.counters[(HANDSHAKES, "")] == 11
    assert reading.counters[(PLAINTEXT, "")] == 7
    assert reading.certs == {"leaf": 1800000123}


def test_certificate_kinds_and_admin_certs():
    """CA names are told from leaf names; /certs gives the chain's first certificate and the earliest CA, each with the notBefore of that same certificate."""
    assert [cert_kind(n) for n in ("unnamed_ca_cert_123", "ROOTCA", "unnamed_cert_123", "default", "")] == [
        "ca", "ca", "leaf", "leaf", "leaf"]
    document = {"certificates": [{
        "ca_cert": [{"expiration_time": "2028-01-01T00:00:00Z", "valid_from": "2025-01-01T00:00:00Z"},
                    {"expiration_time": "2027-01-02T03:04:05Z", "valid_from": "2026-01-02T03:04:05Z"}],
        "cert_chain": [{"expiration_time": "2026-12-01T00:00:01Z", "valid_from": "2026-11-30T00:00:01Z"},
                       {"expiration_time": "2026-06-01T00:00:00Z", "valid_from": "2026-01-01T00:00:00Z"}],
    }]}
    assert certs_from_admin(document) == (
        {"leaf": 1796083201.0, "ca": 1798859045.0}, {"leaf": 1796083201.0 - 86400, "ca": 1798859045.0 - 365 * 86400})
    assert certs_from_admin({"certificates": [{"cert_chain": [{"expiration_time": "2026-12-01T00:00:01Z"}]}]}) == (
        {"leaf": 1796083201.0}, {})
    assert admin_certs(json.dumps(document).encode()) == certs_from_admin(document)


def test_promql_matchers_select_samples_as_prometheus_does():
    """A dialect's PromQL matchers filter the exporter's samples with Prometheus' meaning: anchored regexes, an absent label is empty, escapes undone."""
    from meshobs.meshes.proxy import matching

    match = matching('route_name!="probe"', 'authority!~"[0-9.]+(:[0-9]+)?"', 'tls=~"no_.*"', 'path="a\\\\b\\"c"')
    base = {"tls": "no_identity", "path": 'a\\b"c'}
    assert match({**base, "authority": "web:80"})
    assert match(base)  # absent labels are "": not "probe", and "" does not match the IP regex
    assert not match({**base, "route_name": "probe"})
    assert not match({**base, "authority": "10.0.0.1:80"})
    assert not match({**base, "tls": "true"})
    assert not match({**base, "path": "ab"})
    with pytest.raises(ValueError, match="not a PromQL label matcher: 'route_name'"):
        matching("route_name")


@pytest.mark.parametrize("value", ["-1", "+Inf", "-Inf", "1e300"])
def test_counter_values_that_no_counter_can_hold_reject_the_scrape(value):
    """A negative, infinite or beyond-64-bit counter value is a bad payload, never added to a workload."""
    with pytest.raises(PayloadError) as error:
        read(CONSUL, f"envoy_listener_ssl_handshake{{}} 3\nenvoy_http_rbac_denied{{}} {value}\n")
    assert str(error.value) == (f"counter envoy_http_rbac_denied has value {float(value)!r}: "
                                "a counter is a finite number from 0 to 2^64")


def test_non_finite_or_negative_certificate_expiry_is_ignored():
    """An infinite or negative expiry gauge is no certificate, and never exported."""
    reading = read(ISTIO, """\
envoy_listener_ssl_certificate_default_expiration_unix_time_seconds{} +Inf
envoy_listener_ssl_certificate_ROOTCA_expiration_unix_time_seconds{} -5
""")
    assert reading.certs == {}


@pytest.mark.parametrize("body, message", [
    (b"[" * 200_000, "/certs: JSON nested too deep"),
    (b'{"certificates": [' * 50_000, "/certs: JSON nested too deep"),
    (b"\xff\xfe", "/certs: not JSON: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"),
    (b"[]", '/certs: expected {"certificates": [...]}'),
    (b'{"certificates": {"a": 1}}', '/certs: expected {"certificates": [...]}'),
    (b'{"certificates": [1]}', "/certs: a certificates entry is not an object"),
    (b'{"certificates": [{"cert_chain": "x"}]}', "/certs: cert_chain is not a list of objects"),
    (b'{"certificates": [{"ca_cert": [{"expiration_time": 5}]}]}', "/certs: expiration_time '5' is not an RFC 3339 time"),
    (b'{"certificates": [{"ca_cert": [{"expiration_time": "soon"}]}]}', "/certs: expiration_time 'soon' is not an RFC 3339 time"),
    (b'{"certificates": [{"ca_cert": [{"expiration_time": "2027-01-01T00:00:00Z", "valid_from": "then"}]}]}',
     "/certs: valid_from 'then' is not an RFC 3339 time"),
])
def test_hostile_certs_answers_raise_payload_errors(body, message):
    """Deep nesting, invalid UTF-8 and wrong shapes in /certs are PayloadErrors naming the problem, never RecursionError or TypeError."""
    with pytest.raises(PayloadError) as error:
        admin_certs(body)
    assert str(error.value) == message
