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

With `LOG_FORMAT=json` (the Helm chart's `logAsJson`) ztunnel writes the same event as one JSON
object per line (src/telemetry.rs `IstioJsonFormat`): `level`, `time`, `scope` (the target),
then the fields under the same keys in the same order, then `message`; strings as JSON strings
(addresses too), numbers bare, absent fields left out:

    {"level":"info","time":"...","scope":"access","src.addr":"IP:PORT",...,"bytes_sent":67,...,"message":"connection complete"}

Such a line is rewritten into the plain line (`plain_from_json`, and in Fluentd the Ruby of
`fluentd_json_to_plain`), so both formats go through the one line regexp and record builder.
"""

from __future__ import annotations

import json
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

# The counts ztunnel writes after the fields when a connection completed, then the error text.
_COUNTS = ("bytes_sent", "bytes_recv", "duration")
_ERROR = "error"
# What the JSON format writes first: (key, the plain format's column), joined by tabs.
_JSON_HEAD = ("time", "level", "scope", "message")

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
    # ztunnel's counts are u64 (at most 20 digits): a longer number is no ztunnel line
    counts = ' bytes_sent=(?<bytes_sent>\\d{1,20}) bytes_recv=(?<bytes_recv>\\d{1,20}) duration="(?<duration_ms>\\d{1,20})ms"'
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


def _quoted(value: object) -> str:
    # Rust's Debug form of a string, as far as the line regexp reads it back: JSON's quoting
    return json.dumps(str(value), ensure_ascii=False)


def plain_from_json(document: dict) -> str:
    """A ztunnel JSON log object as the plain line ztunnel would have written for it."""
    fields = [f"{key}={_quoted(document[key]) if quoted else document[key]}"
              for key, _, quoted, _ in _FIELDS if key in document]
    if all(key in document for key in _COUNTS):
        fields += [f"{key}={document[key]}" for key in _COUNTS[:-1]] + [f"{_COUNTS[-1]}={_quoted(document[_COUNTS[-1]])}"]
    if _ERROR in document:
        fields.append(f"{_ERROR}={_quoted(document[_ERROR])}")
    return "\t".join(str(document.get(key, "")) for key in _JSON_HEAD) + "\t" + " ".join(fields)


def _plain(line: str, lineno: int) -> str:
    if not line.lstrip().startswith("{"):
        return line
    try:
        document = json.loads(line)
    except (ValueError, RecursionError):
        document = None
    if not isinstance(document, dict):
        raise ZtunnelLogError(f"line {lineno}: not a ztunnel access line: {line[:120]!r}")
    return plain_from_json(document)


def parse_line(line: str, lineno: int = 1) -> dict:
    """One ztunnel access line, plain or JSON, as a meshobs record (the access-log record's field
    names; what Fluentd's `record_transformer` in collectors/istio/fluentd builds), plus ztunnel's
    own `direction`, `src_workload`, `src_namespace`, `dst_workload`, `dst_namespace` and `error`."""
    line = _plain(line.rstrip("\n"), lineno)
    match = _LINE.match(line)
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


def _ruby_or_nil(key: str, convert: str = "") -> str:
    return f'(v = record["{key}"]).to_s.empty? ? nil : v{convert}'


def fluentd_record() -> dict[str, str]:
    """record_transformer `<record>` entries (enable_ruby) building the record `parse_line` builds."""
    tls = "[" + ", ".join(f'"{name}"' for name in sorted(TLS_FLAGS)) + "]"
    inbound = 'record["direction"] == "inbound"'
    fields = {
        "start_time": 'record["time"]',
        "response_flags": _ruby_flag(),
        "duration_ms": _ruby_or_nil("duration_ms", ".to_i"),
        "upstream_host": 'record["dst_addr"]',
        "downstream_remote_address": 'record["src_addr"]',
        "peer_principal": f'{inbound} ? record["src_identity"] : record["dst_identity"]',
        "local_principal": f'{inbound} ? record["dst_identity"] : record["src_identity"]',
        "transport_failure_reason": f'{tls}.include?({_ruby_flag()}) ? record["error"] : nil',
        "connection_termination_details": f'(f = {_ruby_flag()}).nil? || {tls}.include?(f) ? nil : record["error"]',
        "authority": _ruby_or_nil("dst_service"),
        "bytes_received": _ruby_or_nil("bytes_recv", ".to_i"),
        "bytes_sent": _ruby_or_nil("bytes_sent", ".to_i"),
        "direction": 'record["direction"]',
        **{key: _ruby_or_nil(key) for key in ("src_workload", "src_namespace", "dst_workload", "dst_namespace", "error")},
    }
    return {name: f"${{{expr}}}" for name, expr in fields.items()}


def fluentd_json_to_plain() -> str:
    """A Ruby expression (record_transformer, enable_ruby) giving `record["log"]` as the plain
    line when it is one of ztunnel's JSON log objects (what `plain_from_json` does), else as it is."""
    def present(*keys: str) -> str:
        return " && ".join(f'j.key?("{key}")' for key in keys)

    def text(key: str, quoted: bool) -> str:
        return f'j["{key}"].to_s.to_json' if quoted else f'j["{key}"].to_s'

    parts = [f'({present(key)} ? "{key}=" + {text(key, quoted)} : nil)' for key, _, quoted, _ in _FIELDS]
    counts = ' + " " + '.join(f'"{key}=" + {text(key, key == _COUNTS[-1])}' for key in _COUNTS)
    parts.append(f"({present(*_COUNTS)} ? {counts} : nil)")
    parts.append(f'({present(_ERROR)} ? "{_ERROR}=" + {text(_ERROR, True)} : nil)')
    head = "[" + ", ".join(f'j["{key}"].to_s' for key in _JSON_HEAD) + ']'
    is_json = '(l = record["log"].to_s).lstrip.start_with?("{") && (j = (JSON.parse(l) rescue nil)).is_a?(Hash)'
    return f'${{{is_json} ? {head}.join("\\t") + "\\t" + [{", ".join(parts)}].compact.join(" ") : l}}'
