"""The exposition parser keeps only the wanted families and rejects what is not an exposition."""

from __future__ import annotations

import pytest

from meshobs.exporter.parse import PayloadError, Sample, parse

BODY = (
    b"# TYPE envoy_listener_ssl_handshake counter\n"
    b'envoy_listener_ssl_handshake{envoy_listener_address="0.0.0.0_15006"} 12\n'
    b"envoy_listener_ssl_handshake{} 3\n"
    b'envoy_cluster_upstream_rq{envoy_cluster_name="x"} 99\n'
    b'envoy_http_rbac{authz_enforce_result="denied",http_conn_manager_prefix="a\\"b\\\\c"} 4 1700000000000\n'
    b"envoy_listener_ssl_certificate_expiration_unix_time_seconds{} NaN\n"
)


def test_only_families_with_the_given_prefixes_are_returned_with_labels_and_values():
    """Kept lines are split into name, unescaped labels and value; others and NaN samples are left out."""
    samples = parse(BODY, ("envoy_listener_ssl_", "envoy_http_rbac"))
    assert samples == [
        Sample("envoy_listener_ssl_handshake", {"envoy_listener_address": "0.0.0.0_15006"}, 12.0),
        Sample("envoy_listener_ssl_handshake", {}, 3.0),
        Sample("envoy_http_rbac", {"authz_enforce_result": "denied", "http_conn_manager_prefix": 'a"b\\c'}, 4.0),
    ]


@pytest.mark.parametrize("body, message", [
    (b"<html>nope</html>\n", "malformed line: '<html>nope</html>'"),
    (b'envoy_listener_ssl_handshake{a="\xff"} 1\n', "invalid UTF-8 near byte 32"),
    (b"envoy_listener_ssl_handshake{a=1} 1\nenvoy_x{} 2\n", "malformed labels in line: 'envoy_listener_ssl_handshake{a=1} 1'"),
    (b"envoy_x{} 1\nenvoy_listener_ssl_handshake{} one\nenvoy_y{} 2\n", "malformed value in line: 'envoy_listener_ssl_handshake{} one'"),
])
def test_what_is_not_an_exposition_is_rejected_with_the_line(body, message):
    """Garbage, invalid UTF-8, bad labels and bad values raise PayloadError naming the problem."""
    with pytest.raises(PayloadError) as error:
        parse(body, ("envoy_listener_ssl_",))
    assert str(error.value) == message
