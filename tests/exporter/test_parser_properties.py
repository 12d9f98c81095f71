"""Property runs (hypothesis) over the two parsers that read what pods write: whatever the bytes,
the exposition parser and the access-log parser either give their result or raise the project's
own error, never anything else."""

from __future__ import annotations

import json

import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshobs import accesslog
from meshobs.errors import AccessLogParseError
from meshobs.exporter.normalize import DIALECTS, admin_certs, normalize
from meshobs.exporter.parse import LineFilter, PayloadError, Sample

ENVOY = DIALECTS["istio"]
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# pieces of an exposition, so that examples get past the first line often
_NAMES = st.sampled_from(["envoy_listener_ssl_handshake", "envoy_http_rbac", "istio_requests_total", "envoy_x",
                          "envoy_listener_ssl_certificate_default_expiration_unix_time_seconds", "#", "", "{"])
_VALUES = st.sampled_from(["1", "0", "-1", "NaN", "+Inf", "-Inf", "1e400", "0x10", "1_0", "", " ", "١", "7 1700000000000"])
_LABELS = st.lists(st.tuples(st.sampled_from(["a", "authz_enforce_result", "reporter", "1", ""]),
                             st.text(max_size=8)), max_size=3)


@st.composite
def _sample_lines(draw) -> bytes:
    name = draw(_NAMES)
    labels = ",".join(f'{k}="{v}"' for k, v in draw(_LABELS))
    value = draw(_VALUES)
    brace = draw(st.sampled_from([f"{{{labels}}}", "", "{", f"{{{labels}"]))
    return f"{name}{brace} {value}".encode("utf-8", "surrogatepass")


_BODIES = st.one_of(
    st.binary(max_size=400),
    st.lists(st.one_of(_sample_lines(), st.binary(max_size=30)), max_size=12).map(b"\n".join),
)


@SETTINGS
@given(body=_BODIES, cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6))
def test_the_exposition_parser_gives_samples_or_a_payload_error_whatever_the_bytes_and_chunks(body, cuts):
    """Any body, cut into any chunks, gives finite-or-NaN-free samples normalized without error, or a PayloadError."""
    pieces, start = [], 0
    for cut in sorted(set(cuts)):
        pieces.append(body[start:cut])
        start = max(start, cut)
    pieces.append(body[start:])
    lines = LineFilter(ENVOY.prefixes, ENVOY.names)
    try:
        for piece in pieces:
            lines.feed(piece)
        samples = lines.samples()
        assert all(isinstance(s, Sample) for s in samples)
        reading = normalize(ENVOY, samples)
    except PayloadError:
        return
    assert all(0 <= value <= 2**64 for value in reading.counters.values())


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


@SETTINGS
@given(document=st.one_of(_JSON, st.fixed_dictionaries({"certificates": st.lists(st.fixed_dictionaries(
    {"cert_chain": _JSON, "ca_cert": st.lists(st.fixed_dictionaries({"expiration_time": _JSON}), max_size=2)}), max_size=2)})),
       raw=st.binary(max_size=60))
def test_certs_answers_give_timestamps_or_a_payload_error(document, raw):
    """Any /certs answer, JSON or not, gives expiry (and notBefore) timestamps or a PayloadError."""
    for body in (json.dumps(document).encode(), raw):
        try:
            certs, not_before = admin_certs(body)
        except PayloadError:
            continue
        assert set(not_before) <= set(certs) <= {"leaf", "ca"}


_RECORD = {f.name: "x" for f in accesslog.FIELDS}


@SETTINGS
@given(line=st.one_of(
    st.text(max_size=300),
    _JSON.map(json.dumps),
    st.dictionaries(st.sampled_from(sorted(_RECORD)), _JSON).map(lambda d: json.dumps({**_RECORD, **d})),
    st.dictionaries(st.sampled_from(sorted(f.linkerd for f in accesslog.FIELDS if f.linkerd)), _JSON).map(json.dumps),
    st.tuples(st.sampled_from(sorted(_RECORD)), st.sampled_from(["1" * 5000, "1e400", "-1e400", "NaN"])).map(
        lambda kv: json.dumps(_RECORD)[:-1] + f', "{kv[0]}": {kv[1]}}}'),
    st.tuples(st.sampled_from(['{"total_ns": ', '{"a": ', ""]), st.integers(min_value=1, max_value=200_000)).map(
        lambda pn: pn[0] + "[" * pn[1]),
    st.text(max_size=40).map(lambda v: " ".join(f'{f.name}="{v}"' for f in accesslog.FIELDS)),
))
def test_the_access_log_parsers_give_a_record_or_an_access_log_parse_error(line):
    """Any line, through the Envoy (JSON or text) and Linkerd parsers, gives a Record or an AccessLogParseError."""
    for parser in (accesslog.parse_line, accesslog.parse_linkerd_json):
        try:
            parser(line)
        except AccessLogParseError:
            pass


@pytest.mark.parametrize("line, message", [
    ('{"total_ns": ' + "[" * 3000, "access log line 1: not JSON: nested too deep"),
    ('{"total_ns": Infinity}', "access log line 1, field duration_ms: cannot convert float infinity to integer"),
    ('{"total_ns": [1]}', "access log line 1, field duration_ms: int() argument must be a string, a bytes-like object "
                          "or a real number, not 'list'"),
    ('{"status": 1' + "0" * 5000 + "}", "access log line 1: not JSON: Exceeds the limit (4300 digits) for integer "
                                        "string conversion: value has 5001 digits; use sys.set_int_max_str_digits() to increase the limit"),
])
def test_what_hypothesis_found_in_the_linkerd_parser(line, message):
    """Deep nesting, Infinity, a list as a duration and a 5,000-digit number are AccessLogParseErrors (they were RecursionError, OverflowError, TypeError and ValueError)."""
    with pytest.raises(AccessLogParseError) as error:
        accesslog.parse_linkerd_json(line)
    assert str(error.value) == message
