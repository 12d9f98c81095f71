"""The access-log parser: typed values from JSON, text and Linkerd lines, and errors naming line and field."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re

import pytest

from meshobs import accesslog
from meshobs.errors import AccessLogParseError

UTC = dt.timezone.utc

# From Linkerd's access-logging documentation (config.linkerd.io/access-log: json).
LINKERD_LINE = (
    '{"client.addr":"10.42.0.70:32996","client.id":"traffic.booksapp.serviceaccount.identity.linkerd.cluster.local",'
    '"host":"webapp:7000","method":"POST","processing_ns":"30036","request_bytes":"33","response_bytes":"0",'
    '"status":303,"timestamp":"2022-08-23T20:33:42.436964052Z","total_ns":"14122403","trace_id":"",'
    '"uri":"http://webapp:7000/authors","user_agent":"Go-http-client/1.1","version":"HTTP/2.0"}'
)


def text_line(**values: str) -> str:
    """A text-format line with every field absent except `values`."""
    return " ".join(f'{f.name}="{values.get(f.name, "-")}"' for f in accesslog.FIELDS)


def test_text_line_gives_typed_values_and_dash_is_absent():
    """Integers and times are typed, "-" is None, RESPONSE_CODE 0 and RESPONSE_FLAGS "-" mean none."""
    record = accesslog.parse_text(text_line(
        start_time="2026-11-25T20:52:19.156Z", method="GET", response_code="0", duration_ms="12",
        bytes_sent="3", user_agent='agent "quoted" / 1', connection_id="7",
    ))
    assert record.start_time == dt.datetime(2026, 11, 25, 20, 52, 19, 156000, tzinfo=UTC)
    assert (record.method, record.response_code, record.response_flags, record.duration_ms) == ("GET", None, None, 12)
    assert (record.bytes_sent, record.connection_id, record.path) == (3, 7, None)
    assert record.user_agent == 'agent "quoted" / 1'


def test_a_quote_in_a_traced_header_does_not_break_a_denied_text_line():
    """x-request-id and traceparent are the client's: quotes in them still give the 403 record, field by field."""
    record = accesslog.parse_text(text_line(
        start_time="2026-11-25T20:52:19.156Z", method="GET", response_code="403",
        response_code_details="rbac_access_denied_matched_policy[none]",
        request_id='abc" evil="1', traceparent='00-"x"-01', user_agent="curl",
    ))
    assert (record.response_code, record.request_id, record.traceparent, record.user_agent) == (
        403, 'abc" evil="1', '00-"x"-01', "curl")
    assert accesslog.security_kind(record) == "access_denied"


def test_json_and_text_of_the_same_values_parse_equal():
    """A JSON line as Envoy writes it (numbers, nulls) and the text line of the same values give equal records."""
    values = dict(start_time="2026-11-25T20:52:19.156Z", method="GET", path="/a?b=1", response_code=403,
                  response_flags="-", response_code_details="rbac_access_denied_matched_policy[none]", duration_ms=0)
    as_text = text_line(**{k: str(v) for k, v in values.items()})
    assert accesslog.parse_json(json_line(**values)) == accesslog.parse_text(as_text)
    assert accesslog.security_kind(accesslog.parse_json(json_line(**values))) == "access_denied"


def test_peer_identity_is_withheld_when_the_handshake_failed():
    """After a failed verification the rejected SAN stays in peer_principal but is not an identity."""
    record = accesslog.parse_text(text_line(
        start_time="2026-11-25T20:52:19.156Z", peer_principal="spiffe://cluster.local/ns/default/sa/frontend",
        transport_failure_reason="TLS_error:|268435581:SSL_routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED:TLS_error_end",
    ))
    assert record.peer_principal == "spiffe://cluster.local/ns/default/sa/frontend"
    assert record.peer_identity is None
    assert record.kind == "connection"
    assert accesslog.security_kind(record) == "tls_failure"


def test_linkerd_json_maps_onto_the_record():
    """Linkerd's keys, string numbers and nanoseconds become the record's fields and units."""
    record = accesslog.parse_linkerd_json(LINKERD_LINE)
    assert record.start_time == dt.datetime(2022, 8, 23, 20, 33, 42, 436964, tzinfo=UTC)
    assert (record.method, record.path, record.protocol, record.response_code) == ("POST", "http://webapp:7000/authors", "HTTP/2.0", 303)
    assert (record.duration_ms, record.bytes_received, record.bytes_sent) == (14, 33, 0)
    assert record.peer_principal == "traffic.booksapp.serviceaccount.identity.linkerd.cluster.local"
    assert (record.authority, record.user_agent, record.trace_id) == ("webapp:7000", "Go-http-client/1.1", None)
    assert record.downstream_remote_address == "10.42.0.70:32996"
    assert record.tls_version is None


def test_text_mismatch_names_line_and_first_field_that_does_not_match():
    """A line that stops matching at `protocol` is reported with its line number and that field."""
    good = text_line(start_time="2026-11-25T20:52:19.156Z")
    broken = good.replace('protocol="-"', "protocol=-")
    with pytest.raises(AccessLogParseError) as err:
        accesslog.parse_lines([good, "", broken])
    assert str(err.value) == 'access log line 3, field protocol: does not match the text format (expected protocol="...")'
    assert (err.value.lineno, err.value.field) == (3, "protocol")


def json_line(**values) -> str:
    """A JSON line as Envoy writes it: every field, null unless given."""
    return json.dumps({f.name: values.get(f.name) for f in accesslog.FIELDS})


def test_json_errors_name_line_and_field():
    """Bad JSON, a wrong type, a bad time, an unknown and a missing key each give an exact message."""
    cases = {
        '{"method": "GET"': "access log line 1: not JSON: Expecting ',' delimiter at column 17",
        json_line(response_code="abc"): "access log line 1, field response_code: expected an integer, got 'abc'",
        json_line(method=5): "access log line 1, field method: expected a string, got 5",
        json_line(start_time="yesterday"): (
            "access log line 1, field start_time: expected an ISO 8601 UTC time such as 2026-01-02T03:04:05.678Z, got 'yesterday'"
        ),
        '{"status": 200}': "access log line 1, field status: not a field of the meshobs access-log record",
        '{"method": "GET"}': (
            "access log line 1, field start_time: missing from the line (the proxy's format is not the meshobs record)"
        ),
        "[1]": "access log line 1: expected a JSON object, got list",
    }
    for line, message in cases.items():
        with pytest.raises(AccessLogParseError) as err:
            accesslog.parse_json(line)
        assert str(err.value) == message


def test_record_fields_are_the_definition():
    """The Record's attributes, the JSON format keys and the text regexp groups are FIELDS, in order."""
    names = [f.name for f in accesslog.FIELDS]
    assert [f.name for f in dataclasses.fields(accesslog.Record)] == names
    assert list(accesslog.envoy_json_format()) == names
    assert re.findall(r"\(\?<(\w+)>", accesslog.text_regexp()) == names
    required = {"start_time", "method", "path", "protocol", "response_code", "response_flags", "response_code_details",
                "duration_ms", "upstream_host", "upstream_cluster", "peer_principal", "local_principal", "tls_version",
                "transport_failure_reason", "request_id", "trace_id", "traceparent", "user_agent", "authority",
                "bytes_received", "bytes_sent"}
    assert required <= set(names)
