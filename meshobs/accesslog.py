"""The access-log record, defined once: its fields, the Envoy command operator behind each,
the JSON and text formats Envoy writes, the Fluentd parser definition that reads them back,
the Linkerd proxy's JSON names for the same facts, and a parser into typed values.

One format serves the HTTP access log and the listener-level (connection) access log alike:
at listener level the HTTP fields are empty, and TLS handshake failures, which HTTP logs
never see, show up in `transport_failure_reason`. Consul's `accessLogs.jsonFormat` applies
one format to both levels, so a single format is also what every mesh can express.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from meshobs.errors import AccessLogParseError

# Text and Fluentd both write an absent value as "-"; Envoy's JSON writes null.
ABSENT = "-"


@dataclass(frozen=True)
class Field:
    name: str
    operator: str
    kind: str  # "str", "int" or "time"
    doc: str
    # Values that may hold spaces or quotes: matched lazily in the text format.
    free_text: bool = False
    # A value Envoy writes for "nothing here" that is not null/"-" (RESPONSE_CODE 0, RESPONSE_FLAGS "-").
    none_value: Any = None
    # Key of the same fact in the Linkerd proxy's JSON access log, if it logs it.
    linkerd: str | None = None


FIELDS: tuple[Field, ...] = (
    Field("start_time", "%START_TIME%", "time", "request or connection start, UTC, millisecond precision", linkerd="timestamp"),
    Field("method", "%REQ(:METHOD)%", "str", "HTTP method", linkerd="method"),
    Field("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", "str", "path and query as received (Linkerd: the request URI)",
          free_text=True, linkerd="uri"),
    Field("protocol", "%PROTOCOL%", "str", "HTTP/1.1, HTTP/2 ...", linkerd="version"),
    Field("response_code", "%RESPONSE_CODE%", "int", "HTTP status; absent when no response was sent", none_value=0,
          linkerd="status"),
    Field("response_flags", "%RESPONSE_FLAGS%", "str", "Envoy response flags (UF, UH, NR ...); absent when none",
          none_value=ABSENT),
    Field("response_code_details", "%RESPONSE_CODE_DETAILS%", "str",
          "why this status, e.g. rbac_access_denied_matched_policy[none]", free_text=True),
    Field("connection_termination_details", "%CONNECTION_TERMINATION_DETAILS%", "str",
          "why Envoy closed the connection (L4 RBAC denials)", free_text=True),
    Field("duration_ms", "%DURATION%", "int", "milliseconds from start to last byte out", linkerd="total_ns"),
    Field("upstream_host", "%UPSTREAM_HOST%", "str", "upstream address the request went to"),
    Field("upstream_cluster", "%UPSTREAM_CLUSTER%", "str", "upstream cluster name"),
    Field("upstream_transport_failure_reason", "%UPSTREAM_TRANSPORT_FAILURE_REASON%", "str",
          "why the connection to the upstream failed (upstream mTLS)", free_text=True),
    Field("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%", "str", "client address:port",
          linkerd="client.addr"),
    Field("downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%", "str", "address:port the proxy accepted on"),
    Field("requested_server_name", "%REQUESTED_SERVER_NAME%", "str", "TLS SNI sent by the client"),
    Field("peer_principal", "%DOWNSTREAM_PEER_URI_SAN%", "str",
          "client certificate URI SAN (SPIFFE id; Linkerd: the client's identity name); "
          "not an identity when transport_failure_reason is set", linkerd="client.id"),
    Field("local_principal", "%DOWNSTREAM_LOCAL_URI_SAN%", "str", "this proxy's certificate URI SAN"),
    Field("tls_version", "%DOWNSTREAM_TLS_VERSION%", "str", "TLSv1.2, TLSv1.3"),
    Field("transport_failure_reason", "%DOWNSTREAM_TRANSPORT_FAILURE_REASON%", "str",
          "why the client's TLS handshake failed (listener-level log)", free_text=True),
    Field("connection_id", "%CONNECTION_ID%", "int", "downstream connection id: joins HTTP lines to their connection line"),
    # header values are the client's: free text, so that a quote in one cannot break a text line
    Field("request_id", "%REQ(X-REQUEST-ID)%", "str", "x-request-id", free_text=True),
    Field("trace_id", "%TRACE_ID%", "str", "trace id of the span Envoy started (empty without a tracer)",
          linkerd="trace_id"),
    Field("traceparent", "%REQ(TRACEPARENT)%", "str", "W3C trace context received", free_text=True),
    Field("user_agent", "%REQ(USER-AGENT)%", "str", "user agent", free_text=True, linkerd="user_agent"),
    Field("authority", "%REQ(:AUTHORITY)%", "str", "host / :authority", free_text=True, linkerd="host"),
    Field("bytes_received", "%BYTES_RECEIVED%", "int", "body bytes received from the client", linkerd="request_bytes"),
    Field("bytes_sent", "%BYTES_SENT%", "int", "body bytes sent to the client", linkerd="response_bytes"),
)

FIELD_NAMES = tuple(f.name for f in FIELDS)
_BY_NAME = {f.name: f for f in FIELDS}

_PY_TYPES = {"str": str | None, "int": int | None, "time": dt.datetime | None}


def _peer_identity(self) -> str | None:
    """The peer principal, but only when the handshake succeeded: after a failed
    verification Envoy still reports the rejected certificate's SAN."""
    return None if self.transport_failure_reason else self.peer_principal


def _kind(self) -> str:
    """`connection` for listener-level lines (no HTTP request seen), else `http`."""
    return "http" if self.method is not None or self.response_code is not None else "connection"


# The record's attributes are generated from FIELDS so that the two cannot drift apart.
Record = dataclasses.make_dataclass(
    "Record",
    [(f.name, _PY_TYPES[f.kind], dataclasses.field(default=None)) for f in FIELDS],
    frozen=True,
    namespace={"peer_identity": property(_peer_identity), "kind": property(_kind),
               "__doc__": "One access-log line in typed values; absent values are None."},
)


# --- what Envoy is told to write -------------------------------------------------------------

def envoy_json_format() -> dict[str, str]:
    """`json_format` of the Envoy log_format: field name -> command operator."""
    return {f.name: f.operator for f in FIELDS}


def envoy_json_format_string() -> str:
    """The JSON format as one compact JSON string (Istio `accessLogFormat`, Consul `JSONFormat`)."""
    return json.dumps(envoy_json_format(), separators=(",", ":"))


def envoy_text_format() -> str:
    """The text variant: `name="value"` pairs in field order, one line per record."""
    return " ".join(f'{f.name}="{f.operator}"' for f in FIELDS) + "\n"


def envoy_log_format(encoding: str) -> dict[str, Any]:
    """Envoy `SubstitutionFormatString` for `encoding` ("json" or "text")."""
    if encoding == "json":
        return {"json_format": envoy_json_format()}
    if encoding == "text":
        return {"text_format_source": {"inline_string": envoy_text_format()}}
    raise ValueError(f"unknown access-log encoding {encoding!r} (json or text)")


def envoy_file_access_log(path: str, encoding: str) -> dict[str, Any]:
    """One entry of an Envoy `access_log` list (HTTP connection manager or Listener)."""
    return {
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": path,
            "log_format": envoy_log_format(encoding),
        },
    }


# --- what Fluentd and meshobs read back --------------------------------------------------------

def _value_pattern(f: Field) -> str:
    # Lazy for free text: a quote inside a user agent still matches, as the next ` name="` anchors it.
    return ".*?" if f.free_text else '[^"]*'


def _text_pieces() -> list[str]:
    return [f'{f.name}="(?<{f.name}>{_value_pattern(f)})"' for f in FIELDS]


def text_regexp() -> str:
    """The text format as a regular expression in Fluentd's (Ruby) syntax: `(?<name>...)`."""
    return "^" + " ".join(_text_pieces()) + "$"


def ruby_to_python(pattern: str) -> str:
    """Ruby named groups `(?<name>` are `(?P<name>` in Python's `re`."""
    return re.sub(r"\(\?<([A-Za-z_]\w*)>", r"(?P<\1>", pattern)


_TEXT = re.compile(ruby_to_python(text_regexp()))
# Growing prefixes of the pattern: the first one that fails names the field that does not match.
_TEXT_PREFIXES = [re.compile(ruby_to_python("^" + " ".join(_text_pieces()[: i + 1]))) for i in range(len(FIELDS))]

FLUENTD_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%L%z"


def fluentd_types() -> str:
    """Fluentd `types` parameter: the integer fields (the rest stay strings)."""
    return ",".join(f"{f.name}:integer" for f in FIELDS if f.kind == "int")


# --- parsing into typed values -----------------------------------------------------------------

def _parse_time(text: str) -> dt.datetime:
    # Linkerd writes nanoseconds; datetime keeps microseconds.
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)", text)
    if not match:
        raise ValueError(f"expected an ISO 8601 UTC time such as 2026-01-02T03:04:05.678Z, got {text!r}")
    base, fraction, zone = match.groups()
    value = dt.datetime.fromisoformat(f"{base}.{(fraction or '0')[:6].ljust(6, '0')}")
    offset = dt.timedelta(0) if zone == "Z" else dt.datetime.strptime(zone.replace(":", ""), "%z").utcoffset()
    return value.replace(tzinfo=dt.timezone(offset))


def _typed(f: Field, raw: Any) -> Any:
    if raw is None or raw == f.none_value:
        return None
    if f.kind == "int":
        if isinstance(raw, bool) or not (isinstance(raw, int) or (isinstance(raw, str) and re.fullmatch(r"\d+", raw))):
            raise ValueError(f"expected an integer, got {raw!r}")
        value = int(raw)
        return None if value == f.none_value else value
    if not isinstance(raw, str):
        raise ValueError(f"expected a string, got {raw!r}")
    return _parse_time(raw) if f.kind == "time" else raw


def _record(values: dict[str, Any], lineno: int, converters: dict[str, Callable[[Any], Any]] | None = None):
    typed = {}
    for name, raw in values.items():
        f = _BY_NAME[name]
        try:
            if converters and name in converters:
                raw = converters[name](raw)
            typed[name] = _typed(f, raw)
        except (ValueError, TypeError, OverflowError) as exc:  # e.g. int() of a list or of Infinity
            raise AccessLogParseError(lineno, name, str(exc)) from None
    return Record(**typed)


def _json_object(line: str, lineno: int) -> dict:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise AccessLogParseError(lineno, None, f"not JSON: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise AccessLogParseError(lineno, None, "not JSON: nested too deep") from None
    except ValueError as exc:  # an integer of more than 4300 digits
        raise AccessLogParseError(lineno, None, f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise AccessLogParseError(lineno, None, f"expected a JSON object, got {type(data).__name__}")
    return data


def parse_json(line: str, lineno: int = 1):
    """A Record from one line of the JSON format. Envoy writes every key (null when empty), so a
    missing or unknown key means the proxy's format and this record have drifted apart."""
    data = _json_object(line, lineno)
    unknown = sorted(set(data) - set(FIELD_NAMES))
    if unknown:
        raise AccessLogParseError(lineno, unknown[0], "not a field of the meshobs access-log record")
    missing = [name for name in FIELD_NAMES if name not in data]
    if missing:
        raise AccessLogParseError(lineno, missing[0], "missing from the line (the proxy's format is not the meshobs record)")
    return _record({name: data.get(name) for name in FIELD_NAMES}, lineno)


def _first_mismatch(line: str) -> str:
    for f, prefix in zip(FIELDS, _TEXT_PREFIXES):
        if not prefix.match(line):
            return f.name
    return FIELDS[-1].name


def parse_text(line: str, lineno: int = 1):
    """A Record from one line of the text format; "-" is an absent value."""
    match = _TEXT.match(line.rstrip("\n"))
    if not match:
        field = _first_mismatch(line.rstrip("\n"))
        raise AccessLogParseError(lineno, field, f'does not match the text format (expected {field}="...")')
    return _record({k: None if v == ABSENT else v for k, v in match.groupdict().items()}, lineno)


def _ns_to_ms(raw: Any) -> Any:
    return None if raw in (None, "") else int(raw) // 1_000_000


def _empty_is_none(raw: Any) -> Any:
    return None if raw == "" else raw


# Linkerd writes numbers as strings, "" for absent, and durations in nanoseconds.
LINKERD_CONVERSIONS: dict[str, Callable[[Any], Any]] = {
    "duration_ms": _ns_to_ms,
    **{f.name: _empty_is_none for f in FIELDS if f.linkerd and f.name != "duration_ms"},
}


def parse_linkerd_json(line: str, lineno: int = 1):
    """A Record from one line of the Linkerd proxy's JSON access log (`config.linkerd.io/access-log: json`)."""
    data = _json_object(line, lineno)
    values = {f.name: data.get(f.linkerd) for f in FIELDS if f.linkerd}
    return _record(values, lineno, LINKERD_CONVERSIONS)


def parse_line(line: str, lineno: int = 1):
    """A Record from a line in either Envoy format (JSON when it starts with `{`)."""
    return parse_json(line, lineno) if line.lstrip().startswith("{") else parse_text(line, lineno)


def parse_lines(lines: Iterable[str]) -> list:
    """Records of every non-empty line; the error names the first bad line (1-based)."""
    return [parse_line(line, n) for n, line in enumerate(lines, 1) if line.strip()]


# --- security routing, shared by Fluentd and Python ------------------------------------------

SECURITY_TAG_PREFIX = "meshobs.security"

# (tag kind, field, regexp): the first rule whose field matches decides the record's tag.
SECURITY_RULES: tuple[tuple[str, str, str], ...] = (
    ("tls_failure", "transport_failure_reason", ".+"),
    ("access_denied", "response_code", "^403$"),
    ("access_denied", "response_code_details", "rbac_access_denied"),
    ("access_denied", "connection_termination_details", "rbac_access_denied"),
    # ztunnel's L4 denial (meshobs.ztunnellog): its own flag, which no Envoy response flag equals
    ("access_denied", "response_flags", "^DENY$"),
)


def security_kind(record) -> str | None:
    """Which `meshobs.security.<kind>` tag a record goes to, or None for ordinary traffic."""
    for kind, name, pattern in SECURITY_RULES:
        value = getattr(record, name)
        if value is not None and re.search(pattern, str(value)):
            return kind
    return None
