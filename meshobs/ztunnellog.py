"""ztunnel's connection log (Istio ambient mode), read into the meshobs access-log record.

ztunnel is not Envoy: it writes one line per finished connection under the tracing target
`access`, in Istio's plain log format (ztunnel src/telemetry.rs `IstioFormat`, fields from
src/proxy/metrics.rs; docs/ambient.md names the version):

    <RFC 3339 time, µs>\\t<level>\\taccess\\tconnection complete\\tsrc.addr=IP:PORT src.workload="..." ...

Fields come in a fixed order, each optional one only when known; strings are Rust-Debug quoted,
addresses and numbers bare; `error` is the failure's Display text, last. A connection refused
before ztunnel knows its workloads is logged as `connection failed` with the addresses only.
ztunnel's metrics label the same outcome with a response flag (DENY, TLS_FAILURE ...) derived
from the error's type; the log carries only its text, so the flag is read back from the text's
fixed prefix here (src/proxy.rs `Error` messages).
"""

from __future__ import annotations

import re

from meshobs.accesslog import ruby_to_python

# The access target's two messages that end a connection ("connection opened" is debug-level and
# says nothing the closing line does not).
MESSAGES = ("connection complete", "connection failed")
LINE_HINT = r"\taccess\tconnection (?:complete|failed)\t"

# (key ztunnel writes, group name, quoted?, optional?) in ztunnel's order.
_FIELDS = (
    ("src.addr", "src_addr", False, False),
    ("src.workload", "src_workload", True, True),
    ("src.namespace", "src_namespace", True, True),
    ("src.identity", "src_identity", True, True),
    ("src.cluster", "src_cluster", True, True),
    ("dst.addr", "dst_addr", False, False),
    ("dst.hbone_addr", "dst_hbone_addr", False, True),
    ("dst.service", "dst_service", True, True),
    ("dst.workload", "dst_workload", True, True),
    ("dst.namespace", "dst_namespace", True, True),
    ("dst.identity", "dst_identity", True, True),
    ("dst.cluster", "dst_cluster", True, True),
    ("direction", "direction", True, False),
)

# ztunnel's response flag for an error, by the fixed start of the error's text; any other error
# is CONNECT, as in ztunnel's own ConnectionResult::extract_failure_reason.
ERROR_FLAGS: tuple[tuple[str, str], ...] = (
    ("DENY", r"^connection closed due to policy (?:rejection|change)"),
    # proxy::Error::Tls ("tls error: "); a refused inbound handshake is logged before any
    # metric, as `connection failed` with tls::TlsError's text (src/tls/lib.rs)
    ("TLS_FAILURE", r"^(?:tls error|tls handshake error|identity verification error|ssl error): "),
    ("H2_HANDSHAKE_FAILURE", r"^(?:http2 handshake|h2) failed: "),
    ("NETWORK_POLICY", r"^connection timed out, maybe a NetworkPolicy is blocking HBONE port"),
    ("IDENTITY_ERROR", r"^identity error: "),
    ("CERT_REVOKED", r"^connection closed: peer certificate revoked by CRL"),
)
OTHER_ERROR_FLAG = "CONNECT"
# Flags that are a failed handshake or certificate: they go to transport_failure_reason, the
# record's TLS-failure field; every other error to connection_termination_details.
TLS_FLAGS = frozenset({"TLS_FAILURE", "IDENTITY_ERROR", "CERT_REVOKED"})
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%NZ"  # tracing-subscriber's SystemTime: UTC, microseconds


def _field(key: str, group: str, quoted: bool, optional: bool, first: bool) -> str:
    value = f'"(?<{group}>(?:[^"\\\\]|\\\\.)*)"' if quoted else f"(?<{group}>\\S+)"
    piece = ("" if first else " ") + re.escape(key) + "=" + value
    return f"(?:{piece})?" if optional else piece


def line_regexp() -> str:
    """A ztunnel access line, in Fluentd's (Ruby) syntax: `(?<name>...)` groups named as the keys
    with `.` as `_`, plus time, level, message, bytes, duration_ms and error."""
    fields = "".join(_field(*f, first=i == 0) for i, f in enumerate(_FIELDS))
    counts = ' bytes_sent=(?<bytes_sent>\\d+) bytes_recv=(?<bytes_recv>\\d+) duration="(?<duration_ms>\\d+)ms"'
    error = ' error="(?<error>(?:[^"\\\\]|\\\\.)*)"'
    messages = "|".join(MESSAGES)
    return (f"^(?<time>\\S+)\\t(?<level>[a-z]+)\\taccess\\t(?<message>{messages})\\t"
            f"{fields}(?:{counts})?(?:{error})?$")


_LINE = re.compile(ruby_to_python(line_regexp()))


def _unquote(text: str | None) -> str | None:
    # Rust's Debug form of a string: `\` and `"` escaped (control characters stay escaped here)
    return None if text is None else re.sub(r'\\(["\\])', r"\1", text)


def flag(error: str | None) -> str | None:
    """ztunnel's response flag for an error text; None for a connection that ended well."""
    if not error:
        return None
    return next((name for name, pattern in ERROR_FLAGS if re.search(pattern, error)), OTHER_ERROR_FLAG)


class ZtunnelLogError(ValueError):
    pass


def parse_line(line: str, lineno: int = 1) -> dict:
    """One ztunnel access line as a meshobs record (the access-log record's field names; what
    Fluentd's `record_transformer` in collectors/istio/fluentd builds), plus ztunnel's own
    `direction`, `src_workload`, `src_namespace`, `dst_workload`, `dst_namespace` and `error`."""
    match = _LINE.match(line.rstrip("\n"))
    if match is None:
        raise ZtunnelLogError(f"line {lineno}: not a ztunnel access line: {line[:120]!r}")
    g = {k: _unquote(v) for k, v in match.groupdict().items()}
    inbound = g["direction"] == "inbound"
    failure = flag(g["error"])
    return {
        "start_time": g["time"],
        "response_flags": failure,
        "duration_ms": int(g["duration_ms"]) if g["duration_ms"] else None,
        "upstream_host": g["dst_addr"],
        "downstream_remote_address": g["src_addr"],
        "peer_principal": g["src_identity"] if inbound else g["dst_identity"],
        "local_principal": g["dst_identity"] if inbound else g["src_identity"],
        "transport_failure_reason": g["error"] if failure in TLS_FLAGS else None,
        "connection_termination_details": g["error"] if failure and failure not in TLS_FLAGS else None,
        "authority": g["dst_service"],
        "bytes_received": int(g["bytes_recv"]) if g["bytes_recv"] else None,
        "bytes_sent": int(g["bytes_sent"]) if g["bytes_sent"] else None,
        "direction": g["direction"],
        "src_workload": g["src_workload"], "src_namespace": g["src_namespace"],
        "dst_workload": g["dst_workload"], "dst_namespace": g["dst_namespace"],
        "error": g["error"],
    }


def _ruby_flag() -> str:
    """The same classification as `flag`, as a Ruby expression over `record["error"]`."""
    chain = OTHER_ERROR_FLAG.join(('"', '"'))
    for name, pattern in reversed(ERROR_FLAGS):
        chain = f'(e =~ /{pattern}/ ? "{name}" : {chain})'
    return f'(e = record["error"].to_s).empty? ? nil : {chain}'


def _ruby_or_nil(key: str) -> str:
    return f'(v = record["{key}"]).to_s.empty? ? nil : v'


def fluentd_record() -> dict[str, str]:
    """record_transformer `<record>` entries (enable_ruby) building the record `parse_line` builds."""
    tls = "[" + ", ".join(f'"{name}"' for name in sorted(TLS_FLAGS)) + "]"
    inbound = 'record["direction"] == "inbound"'
    fields = {
        "start_time": 'record["time"]',
        "response_flags": _ruby_flag(),
        "duration_ms": '(v = record["duration_ms"]).to_s.empty? ? nil : v.to_i',
        "upstream_host": 'record["dst_addr"]',
        "downstream_remote_address": 'record["src_addr"]',
        "peer_principal": f'{inbound} ? record["src_identity"] : record["dst_identity"]',
        "local_principal": f'{inbound} ? record["dst_identity"] : record["src_identity"]',
        "transport_failure_reason": f'{tls}.include?({_ruby_flag()}) ? record["error"] : nil',
        "connection_termination_details": f'(f = {_ruby_flag()}).nil? || {tls}.include?(f) ? nil : record["error"]',
        "authority": _ruby_or_nil("dst_service"),
        "bytes_received": '(v = record["bytes_recv"]).to_s.empty? ? nil : v.to_i',
        "bytes_sent": '(v = record["bytes_sent"]).to_s.empty? ? nil : v.to_i',
        "direction": 'record["direction"]',
        **{key: _ruby_or_nil(key) for key in ("src_workload", "src_namespace", "dst_workload", "dst_namespace", "error")},
    }
    return {name: f"${{{expr}}}" for name, expr in fields.items()}
