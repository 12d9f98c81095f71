"""The exposition parser keeps only the wanted families and rejects what is not an exposition."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from meshobs.exporter.normalize import DIALECTS
from meshobs.exporter.parse import ParseLimits, PayloadError, Sample, line_filter, parse

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from exposition import envoy_exposition  # noqa: E402

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


def test_a_last_line_longer_than_the_edge_window_is_read():
    """A body whose last sample line is longer than the 4 kB edge window (its start cut off there) parses."""
    long_line = b'other_family{path="' + b"a" * 6000 + b'"} 1\n'
    body = b"envoy_listener_ssl_handshake{} 3\n" + long_line
    assert parse(body, ("envoy_listener_ssl_",)) == [Sample("envoy_listener_ssl_handshake", {}, 3.0)]


def test_a_last_line_longer_than_the_edge_window_still_needs_a_value():
    """A long last line that ends without a value is still rejected as malformed."""
    body = b"envoy_listener_ssl_handshake{} 3\n" + b"x" * 6000 + b"\n"
    with pytest.raises(PayloadError) as error:
        parse(body, ("envoy_listener_ssl_",))
    assert str(error.value).startswith("malformed line: 'xxxx")


def _reference(body: bytes, dialect) -> list[bytes]:
    """What the filter must keep: every line of a kept family, found the slow, obvious way."""
    prefixes, markers, marked = dialect.scan
    kept = []
    for line in body.split(b"\n"):
        by_prefix = line.startswith(tuple(p.encode() for p in prefixes))
        by_marker = any(m.encode() in line for m in markers) and line.startswith(tuple(p.encode() for p in marked))
        if (by_prefix or by_marker) and (dialect.names is None or dialect.names.match(line)):
            kept.append(line)
    return kept


TRICKY = (
    b'envoy_http_inbound_0_0_0_0_8080_rbac{authz_enforce_result="denied"} 5\n'
    b'envoy_http_rbac_denied{} 2\n'
    b'envoy_http_downstream_rq_total{x="rbac{"} 9\n'
    b'envoy_tcp_outbound_rbac{authz_enforce_result="allowed"} 1\n'
    b'envoy_listener_ssl_certificate_ROOTCA_expiration_unix_time_seconds{} 1800000000\n'
    b'envoy_listener_ssl_handshake 4\n'
)


@pytest.mark.parametrize("mesh", ["istio", "consul"])
def test_the_kept_lines_do_not_depend_on_how_the_body_is_cut_into_chunks(mesh):
    """Fed in random chunk sizes (1 byte to 64 kB, seeded), the filter keeps exactly the lines of the kept families."""
    dialect = DIALECTS[mesh]
    body = envoy_exposition(40) + TRICKY + envoy_exposition(3, seed=1)
    expected = _reference(body, dialect)
    assert len(expected) > 20
    chooser = random.Random(11)
    for _ in range(40):
        lines = line_filter(dialect)
        pos = 0
        while pos < len(body):
            size = chooser.choice((1, 2, 7, 30, 100, 4096, 65536))
            lines.feed(body[pos:pos + size])
            pos += size
        assert lines.lines() == expected


def test_an_endless_kept_line_is_cut_off_at_the_line_cap():
    """A line of a kept family longer than the cap ends the read with a too_large error naming the cap."""
    lines = line_filter(DIALECTS["consul"], ParseLimits(line_bytes=10_000))
    lines.feed(b"envoy_server_live{} 1\nenvoy_listener_ssl_handshake{a=\"")
    with pytest.raises(PayloadError) as error:
        for _ in range(10):
            lines.feed(b"x" * 4096)
    assert (error.value.reason, str(error.value)) == (
        "too_large", "a line of a kept family is longer than 10000 bytes (from byte 22)")


def test_more_kept_samples_than_the_cap_is_too_large():
    """A body with more lines of kept families than the sample cap is rejected as too_large."""
    lines = line_filter(DIALECTS["consul"], ParseLimits(samples=100))
    with pytest.raises(PayloadError) as error:
        lines.feed(b"".join(b'envoy_listener_ssl_handshake{n="%d"} 1\n' % i for i in range(101)))
    assert (error.value.reason, str(error.value)) == ("too_large", "more than 100 samples of the kept families")


def test_the_name_memo_stays_bounded_whatever_names_a_proxy_invents():
    """New names every scrape never grow the rules_for memo past its entry cap, and long names are never kept in it."""
    from meshobs.meshes.proxy import NAME_CACHE_ENTRIES, NAME_CACHE_MAX_NAME

    dialect = DIALECTS["consul"]
    for index in range(2 * NAME_CACHE_ENTRIES):
        dialect.rules_for(f"envoy_listener_ssl_handshake_{index}")
    assert len(dialect._by_name) <= NAME_CACHE_ENTRIES
    long_name = "envoy_listener_ssl_handshake" + "x" * NAME_CACHE_MAX_NAME
    assert dialect.rules_for(long_name) == ((), ())
    assert long_name not in dialect._by_name
