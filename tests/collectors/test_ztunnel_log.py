"""ztunnel's connection log (Istio ambient) read into the meshobs record, on lines in ztunnel's
real format: the layout of src/telemetry.rs `IstioFormat` (time, level, target, message, then
k=v fields in the order of src/proxy/metrics.rs), with values from ztunnel's README example and
tests (tests/namespaced.rs) and error texts from src/proxy.rs and src/tls/lib.rs."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshobs import accesslog, ztunnellog
from meshobs.render.collectors import fluentd
from tests.collectors import fluent_conf

# README.md's example (istio/ztunnel), on one line as ztunnel writes it.
OUTBOUND = ('2024-04-11T15:38:42.182974Z\tinfo\taccess\tconnection complete\tsrc.addr=10.244.0.24:46238 '
            'src.workload="shell-6d8bcd654d-t88gp" src.namespace="default" src.identity="spiffe://cluster.local/ns/default/sa/default" '
            'dst.addr=10.244.0.42:15008 dst.hbone_addr=10.96.108.116:80 dst.service="echo.default.svc.cluster.local" '
            'direction="outbound" bytes_sent=67 bytes_recv=490 duration="13ms"')
# tests/namespaced.rs: an inbound HBONE connection refused by an ALLOW policy that does not match.
DENIED = ('2025-06-02T09:12:01.331408Z\terror\taccess\tconnection complete\tsrc.addr=10.0.2.7:41234 src.workload="client" '
          'src.namespace="default" src.identity="spiffe://cluster.local/ns/default/sa/client" src.cluster="Kubernetes" '
          'dst.addr=10.0.2.9:15008 dst.hbone_addr=10.0.2.9:8080 dst.service="server.default.svc.cluster.local" '
          'dst.workload="server" dst.namespace="default" dst.identity="spiffe://cluster.local/ns/default/sa/server" '
          'dst.cluster="Kubernetes" direction="inbound" bytes_sent=0 bytes_recv=0 duration="0ms" '
          'error="connection closed due to policy rejection: allow policies exist, but none allowed"')
# src/proxy/inbound.rs log_early_deny after a refused handshake: addresses only, tls::TlsError's text.
HANDSHAKE = ('2025-06-02T09:12:02.000113Z\twarn\taccess\tconnection failed\tsrc.addr=10.0.2.7:41240 dst.addr=10.0.2.9:15008 '
             'direction="inbound" error="tls handshake error: Custom { kind: InvalidData, error: \\"invalid peer certificate: UnknownIssuer\\" }"')
# Plaintext from an unmeshed client through the inbound passthrough (no identities; policy unknown).
PLAINTEXT = ('2025-06-02T09:12:03.420001Z\tinfo\taccess\tconnection complete\tsrc.addr=10.0.9.4:52110 '
             'dst.addr=10.0.2.11:5432 dst.service="postgres.bank.svc.cluster.local" dst.workload="postgres-0" '
             'dst.namespace="bank" dst.cluster="Kubernetes" direction="inbound" bytes_sent=5120 bytes_recv=880 duration="2043ms"')


def _kind(record: dict) -> str | None:
    """The security tag the shared routing rules give a record."""
    fields = {name: None for name in accesslog.FIELD_NAMES}
    fields.update({k: v for k, v in record.items() if k in fields})
    return accesslog.security_kind(SimpleNamespace(**fields))


def test_an_outbound_connection_becomes_an_ordinary_record():
    """The README's outbound line: addresses, the local identity, service as authority, bytes as the client saw them, no flag."""
    record = ztunnellog.parse_line(OUTBOUND)
    assert record == {
        "start_time": "2024-04-11T15:38:42.182974Z", "response_flags": None, "duration_ms": 13,
        "upstream_host": "10.244.0.42:15008", "downstream_remote_address": "10.244.0.24:46238",
        "peer_principal": None, "local_principal": "spiffe://cluster.local/ns/default/sa/default",
        "transport_failure_reason": None, "connection_termination_details": None,
        "authority": "echo.default.svc.cluster.local", "bytes_received": 490, "bytes_sent": 67,
        "direction": "outbound", "src_workload": "shell-6d8bcd654d-t88gp", "src_namespace": "default",
        "dst_workload": None, "dst_namespace": None, "error": None,
    }
    assert _kind(record) is None


def test_an_l4_policy_denial_is_an_access_denied_record():
    """A policy rejection carries ztunnel's DENY flag, the error as termination details, the caller's identity as peer, and routes to access_denied."""
    record = ztunnellog.parse_line(DENIED)
    assert (record["response_flags"], record["connection_termination_details"], record["transport_failure_reason"]) == (
        "DENY", "connection closed due to policy rejection: allow policies exist, but none allowed", None)
    assert (record["peer_principal"], record["local_principal"]) == (
        "spiffe://cluster.local/ns/default/sa/client", "spiffe://cluster.local/ns/default/sa/server")
    assert (record["src_workload"], record["dst_workload"], record["dst_namespace"]) == ("client", "server", "default")
    assert _kind(record) == "access_denied"


def test_a_refused_handshake_is_a_tls_failure_record():
    """The early `connection failed` line of a refused handshake is TLS_FAILURE, its text (unescaped) the transport failure reason."""
    record = ztunnellog.parse_line(HANDSHAKE)
    assert (record["response_flags"], record["transport_failure_reason"], record["bytes_sent"], record["duration_ms"]) == (
        "TLS_FAILURE", 'tls handshake error: Custom { kind: InvalidData, error: "invalid peer certificate: UnknownIssuer" }', None, None)
    assert _kind(record) == "tls_failure"


def test_plaintext_from_outside_the_mesh_has_no_identity():
    """An inbound passthrough connection from an unknown source has neither identity and is ordinary traffic."""
    record = ztunnellog.parse_line(PLAINTEXT)
    assert (record["peer_principal"], record["local_principal"], record["src_workload"], record["dst_workload"]) == (
        None, None, None, "postgres-0")
    assert _kind(record) is None


@pytest.mark.parametrize("error,flag", [
    ("connection closed due to policy change", "DENY"),
    ("tls error: tls: invalid peer certificate: UnknownIssuer", "TLS_FAILURE"),
    ("identity verification error: peer did not present the expected SAN (spiffe://cluster.local/ns/a/sa/b), got ", "TLS_FAILURE"),
    ("http2 handshake failed: connection reset", "H2_HANDSHAKE_FAILURE"),
    ("connection timed out, maybe a NetworkPolicy is blocking HBONE port 15008: deadline has elapsed", "NETWORK_POLICY"),
    ("identity error: failed to fetch certificate", "IDENTITY_ERROR"),
    ("connection closed: peer certificate revoked by CRL", "CERT_REVOKED"),
    ("connection failed: Connection refused (os error 111)", "CONNECT"),
    ("ip mismatch: 10.0.2.9 != 10.0.2.7", "CONNECT"),
    (None, None),
])
def test_error_texts_map_to_ztunnels_own_response_flags(error, flag):
    """Each error text gets the response flag ztunnel's metrics give its error type; anything else is CONNECT."""
    assert ztunnellog.flag(error) == flag


def test_a_line_that_is_not_a_connection_line_is_refused_by_name():
    """An operational ztunnel line is no record: the error names the line number and shows the line; Fluentd's grep hint skips it too."""
    line = '2025-06-02T09:12:00.000001Z\tinfo\txds\treceived response'
    with pytest.raises(ztunnellog.ZtunnelLogError) as raised:
        ztunnellog.parse_line(line, 7)
    assert str(raised.value) == "line 7: not a ztunnel access line: '2025-06-02T09:12:00.000001Z\\tinfo\\txds\\treceived response'"
    assert re.search(ztunnellog.LINE_HINT, line) is None and re.search(ztunnellog.LINE_HINT, DENIED)


def test_istios_fluentd_reads_ztunnel_files_with_the_same_definitions(rendered):
    """Istio's fluent.conf tails ztunnel's files apart, keeps only connection lines, parses them with line_regexp and builds the record with fluentd_record."""
    conf = fluent_conf.parse(rendered[("istio", "json")]["fluentd/fluent.conf"])
    sources = [d for d in conf if d.name == "source" and d.params["@type"] == "tail"]
    assert [(s.params["path"], s.params.get("exclude_path"), s.params["tag"]) for s in sources] == [
        ("/var/log/containers/*_istio-proxy-*.log", f'["{fluentd.ZTUNNEL_PATH}"]', "kubernetes.*"),
        (fluentd.ZTUNNEL_PATH, None, "ztunnel.*"),
    ]
    steps = [d for d in conf if d.name == "filter" and d.arg == fluentd.ZTUNNEL_TAG]
    assert [d.params["@type"] for d in steps] == ["concat", "record_transformer", "grep", "parser", "record_transformer"]
    assert steps[1].child("record").params == {"log": ztunnellog.fluentd_json_to_plain()}
    assert steps[2].child("regexp").params == {"key": "log", "pattern": f"/{ztunnellog.LINE_HINT}/"}
    parse = steps[3].child("parse").params
    assert (parse["expression"], parse["time_key"], parse["time_format"]) == (
        f"/{ztunnellog.line_regexp()}/", "time", "%Y-%m-%dT%H:%M:%S.%NZ")
    assert steps[4].child("record").params == ztunnellog.fluentd_record()
    assert set(ztunnellog.fluentd_record()) == set(ztunnellog.parse_line(OUTBOUND))
    for mesh in ("linkerd", "consul"):
        assert "ztunnel" not in rendered[(mesh, "json")]["fluentd/fluent.conf"]


# The same events as ztunnel writes them with LOG_FORMAT=json (logAsJson): src/telemetry.rs
# IstioJsonFormat writes level, time, scope, then the event's fields in the order of the event!
# call (addresses through Display as strings, u64 as numbers, Strings as strings), `message` last;
# a field that is None is left out.
def _json(level: str, time: str, message: str, *fields: tuple[str, object]) -> str:
    return json.dumps({"level": level, "time": time, "scope": "access", **dict(fields), "message": message},
                      separators=(",", ":"))


JSON_LINES = {
    OUTBOUND: _json("info", "2024-04-11T15:38:42.182974Z", "connection complete",
                    ("src.addr", "10.244.0.24:46238"), ("src.workload", "shell-6d8bcd654d-t88gp"),
                    ("src.namespace", "default"), ("src.identity", "spiffe://cluster.local/ns/default/sa/default"),
                    ("dst.addr", "10.244.0.42:15008"), ("dst.hbone_addr", "10.96.108.116:80"),
                    ("dst.service", "echo.default.svc.cluster.local"), ("direction", "outbound"),
                    ("bytes_sent", 67), ("bytes_recv", 490), ("duration", "13ms")),
    DENIED: _json("error", "2025-06-02T09:12:01.331408Z", "connection complete",
                  ("src.addr", "10.0.2.7:41234"), ("src.workload", "client"), ("src.namespace", "default"),
                  ("src.identity", "spiffe://cluster.local/ns/default/sa/client"), ("src.cluster", "Kubernetes"),
                  ("dst.addr", "10.0.2.9:15008"), ("dst.hbone_addr", "10.0.2.9:8080"),
                  ("dst.service", "server.default.svc.cluster.local"), ("dst.workload", "server"),
                  ("dst.namespace", "default"), ("dst.identity", "spiffe://cluster.local/ns/default/sa/server"),
                  ("dst.cluster", "Kubernetes"), ("direction", "inbound"), ("bytes_sent", 0), ("bytes_recv", 0),
                  ("duration", "0ms"),
                  ("error", "connection closed due to policy rejection: allow policies exist, but none allowed")),
    HANDSHAKE: _json("warn", "2025-06-02T09:12:02.000113Z", "connection failed",
                     ("src.addr", "10.0.2.7:41240"), ("dst.addr", "10.0.2.9:15008"), ("direction", "inbound"),
                     ("error", 'tls handshake error: Custom { kind: InvalidData, error: "invalid peer certificate: UnknownIssuer" }')),
    PLAINTEXT: _json("info", "2025-06-02T09:12:03.420001Z", "connection complete",
                     ("src.addr", "10.0.9.4:52110"), ("dst.addr", "10.0.2.11:5432"),
                     ("dst.service", "postgres.bank.svc.cluster.local"), ("dst.workload", "postgres-0"),
                     ("dst.namespace", "bank"), ("dst.cluster", "Kubernetes"), ("direction", "inbound"),
                     ("bytes_sent", 5120), ("bytes_recv", 880), ("duration", "2043ms")),
}


@pytest.mark.parametrize("plain", list(JSON_LINES), ids=["outbound", "denied", "handshake", "plaintext"])
def test_a_json_line_is_the_same_record_as_its_plain_line(plain):
    """ztunnel's JSON format (logAsJson) gives exactly the record of the same event in the plain format, and is rewritten into that plain line."""
    line = JSON_LINES[plain]
    assert ztunnellog.parse_line(line) == ztunnellog.parse_line(plain)
    assert ztunnellog.plain_from_json(json.loads(line)) == plain


def test_a_json_denial_routes_as_access_denied_and_a_json_handshake_failure_as_tls_failure():
    """The JSON lines reach the same security kinds as the plain ones."""
    assert _kind(ztunnellog.parse_line(JSON_LINES[DENIED])) == "access_denied"
    assert _kind(ztunnellog.parse_line(JSON_LINES[HANDSHAKE])) == "tls_failure"


@pytest.mark.parametrize("line", [
    '{"level":"info","time":"2025-06-02T09:12:00.000001Z","scope":"xds","message":"received response"}',
    '{"level":"info","scope":"access","message":"connection complete","src.addr":"10.0.0.1:1 x"}',
    '{"level": "info", "time": ',
    '["not", "an", "object"]',
    "{" * 100_000,
])
def test_a_json_line_that_is_not_a_connection_line_is_refused_by_name(line):
    """Another scope, a field that breaks the format, broken or deeply nested JSON: the project's error, naming the line and showing its start."""
    with pytest.raises(ztunnellog.ZtunnelLogError) as raised:
        ztunnellog.parse_line(line, 3)
    assert str(raised.value).startswith("line 3: not a ztunnel access line: ")


def test_fluentds_json_rewrite_is_built_from_the_same_field_table():
    """The Ruby rewrite names every key of the plain format's table, quotes what the plain format quotes, and leaves non-JSON lines as they are."""
    ruby = ztunnellog.fluentd_json_to_plain()
    for key, _, quoted, _ in ztunnellog._FIELDS:
        assert f'"{key}=" + j["{key}"].to_s{".to_json" if quoted else ""} : nil' in ruby
    assert ruby.startswith("${") and ruby.endswith(" : l}") and ruby.count("}") == 1


_KEYS = [key for key, *_ in ztunnellog._FIELDS] + ["bytes_sent", "bytes_recv", "duration", "error", "time", "level",
                                                   "scope", "message"]
_VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30),
                    st.sampled_from(["1" * 30, "9" * 5000, "10.0.0.1:80", "13ms", "connection complete", "access"]),
                    st.lists(st.integers(), max_size=3))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(line=st.one_of(
    st.text(max_size=300),
    st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=20).map(lambda d: json.dumps({**json.loads(JSON_LINES[DENIED]), **d})),
    st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=20).map(json.dumps),
    st.tuples(st.sampled_from(list(JSON_LINES) + list(JSON_LINES.values())), st.integers(0, 400), st.text(max_size=10)).map(
        lambda t: t[0][:t[1]] + t[2] + t[0][t[1]:]),
    st.sampled_from(["bytes_sent", "bytes_recv", "duration"]).map(
        lambda key: DENIED.replace(f"{key}=0", f"{key}={'1' * 5000}").replace('duration="0ms"', f'duration="{"1" * 5000}ms"')),
))
def test_the_ztunnel_log_parser_gives_a_record_or_its_own_error(line):
    """Any line, plain or JSON, broken anywhere, with any values under ztunnel's keys, gives a record or a ZtunnelLogError."""
    try:
        record = ztunnellog.parse_line(line)
    except ztunnellog.ZtunnelLogError:
        return
    assert set(record) == set(ztunnellog.fluentd_record())
