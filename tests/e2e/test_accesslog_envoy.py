"""The rendered access-log blocks in a real Envoy: every line it writes parses back, field by field."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess

import yaml

from meshobs import accesslog
from meshobs.config import Config
from meshobs.meshes import DIALECTS
from meshobs.render import collectors
from tests.support.envoy import EnvoyPKI, mtls_rbac_config, spiffe, start_envoy
from tests.support.procs import free_port, require_binary, wait_until

ENCODINGS = ("json", "text")
LEVELS = ("http_connection_manager", "listener")
ALLOWED_HEADERS = {
    "User-Agent": 'meshobs-test/1.0 (quote " inside)',
    "X-Request-Id": "req-allowed-1",
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
}


def rendered_blocks(encoding: str, folder) -> dict[str, list[dict]]:
    """The rendered Consul access-log blocks, each level and encoding writing its own file."""
    artefacts = collectors.render(Config(), DIALECTS["consul"])
    blocks = yaml.safe_load(artefacts[f"collectors/consul/envoy/access-log-{encoding}.yaml"])
    for level, entries in blocks.items():
        for entry in entries:
            entry["typed_config"]["path"] = str(folder / f"{level}.{encoding}.log")
    return blocks


def lines(path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_rendered_config_passes_envoy_validate_with_deprecations_fatal(tmp_path):
    """`envoy --mode validate` accepts a standalone config holding the rendered access-log blocks of both
    encodings, Istio's listener EnvoyFilter value and Consul's tracing escape hatches."""
    envoy = require_binary("envoy")
    blocks = {enc: rendered_blocks(enc, tmp_path) for enc in ENCODINGS}
    config = mtls_rbac_config(
        EnvoyPKI.create(tmp_path), free_port(), free_port(),
        http_access_log=[e for enc in ENCODINGS for e in blocks[enc]["http_connection_manager"]],
        listener_access_log=[e for enc in ENCODINGS for e in blocks[enc]["listener"]],
    )
    assert config["layered_runtime"]["layers"][0]["static_layer"] == {"envoy.features.fail_on_any_deprecated_feature": True}
    listener = config["static_resources"]["listeners"][0]
    istio = yaml.safe_load(collectors.render(Config(), DIALECTS["istio"])["collectors/istio/envoyfilter-listener-access-log.yaml"])
    listener["access_log"] += istio["spec"]["configPatches"][0]["patch"]["value"]["access_log"]
    consul = json.loads(collectors.render(Config(), DIALECTS["consul"])["collectors/consul/proxy-defaults.json"])["Config"]
    tracing = json.loads(consul["envoy_listener_tracing_json"])
    assert tracing.pop("@type") == (
        "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.Tracing"
    )
    listener["filter_chains"][0]["filters"][0]["typed_config"]["tracing"] = tracing
    config["static_resources"]["clusters"] = [json.loads(consul["envoy_extra_static_clusters_json"])]
    path = tmp_path / "standalone.json"
    path.write_text(json.dumps(config))
    result = subprocess.run([envoy, "--mode", "validate", "-c", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"configuration '{path}' OK" in result.stdout


def drive_traffic(processes, tmp_path, extra_listener_log: list[dict] = (), customize=None):
    """A real Envoy with the rendered blocks (both encodings, both levels) and one request of each
    kind: allowed 200, RBAC 403, no client certificate, foreign CA, plaintext. Returns the Envoy
    and its lines per (level, encoding)."""
    blocks = {enc: rendered_blocks(enc, tmp_path) for enc in ENCODINGS}
    envoy = start_envoy(
        processes, tmp_path, customize=customize,
        http_access_log=[e for enc in ENCODINGS for e in blocks[enc]["http_connection_manager"]],
        listener_access_log=[e for enc in ENCODINGS for e in blocks[enc]["listener"]] + list(extra_listener_log),
    )
    pki = envoy.pki
    assert envoy.request(pki.allowed, "/orders/42?verbose=1", method="POST", headers=ALLOWED_HEADERS) == 200
    assert envoy.request(pki.denied, "/admin", headers={"X-Request-Id": "req-denied-1"}) == 403
    assert envoy.request(None, "/no-cert") is None
    assert envoy.request(pki.foreign, "/foreign") is None
    assert envoy.request(None, "/plain", tls=False) is None
    for enc in ENCODINGS:
        wait_until(lambda: len(lines(tmp_path / f"listener.{enc}.log")) == 5, timeout=15, what=f"5 listener lines ({enc})")
        wait_until(lambda: len(lines(tmp_path / f"http_connection_manager.{enc}.log")) == 2, timeout=15, what=f"2 http lines ({enc})")
    return envoy, {(level, enc): lines(tmp_path / f"{level}.{enc}.log") for level in LEVELS for enc in ENCODINGS}


def test_every_line_envoy_writes_parses_back_to_what_was_sent(processes, tmp_path):
    """200, 403, no-cert, foreign-CA and plaintext traffic give lines whose parsed fields equal what was sent."""
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    envoy, captured = drive_traffic(processes, tmp_path)
    parsed = {key: sorted(accesslog.parse_lines(found), key=lambda r: r.connection_id) for key, found in captured.items()}
    # JSON and text carry the same facts: they parse to equal records.
    for level in LEVELS:
        assert parsed[(level, "json")] == parsed[(level, "text")]

    allowed, denied = parsed[("http_connection_manager", "json")]
    backend = spiffe("default", "backend")
    assert (allowed.method, allowed.path, allowed.response_code, allowed.response_flags) == ("POST", "/orders/42?verbose=1", 200, None)
    assert allowed.response_code_details == "direct_response"
    assert allowed.peer_principal == allowed.peer_identity == spiffe("default", "frontend")
    assert allowed.local_principal == backend
    assert allowed.tls_version == "TLSv1.3"
    assert allowed.transport_failure_reason is None
    assert allowed.user_agent == ALLOWED_HEADERS["User-Agent"]
    assert allowed.request_id == "req-allowed-1"
    assert allowed.traceparent == ALLOWED_HEADERS["traceparent"]
    assert allowed.authority == "backend.default.svc"
    assert allowed.protocol == "HTTP/1.1"
    assert (allowed.bytes_received, allowed.bytes_sent) == (0, 3)
    assert allowed.downstream_local_address == f"127.0.0.1:{envoy.listener_port}"
    assert re.fullmatch(r"127\.0\.0\.1:\d+", allowed.downstream_remote_address)
    assert before <= allowed.start_time <= dt.datetime.now(dt.timezone.utc)
    assert isinstance(allowed.duration_ms, int) and allowed.kind == "http"
    assert accesslog.security_kind(allowed) is None

    assert (denied.method, denied.path, denied.response_code, denied.response_flags) == ("GET", "/admin", 403, None)
    assert denied.response_code_details == "rbac_access_denied_matched_policy[none]"
    assert denied.peer_identity == spiffe("other", "intruder")
    assert denied.request_id == "req-denied-1"
    assert (denied.user_agent, denied.traceparent) == (None, None)
    assert accesslog.security_kind(denied) == "access_denied"

    ok_conn, denied_conn, no_cert, foreign, plaintext = parsed[("listener", "json")]
    assert [c.kind for c in parsed[("listener", "json")]] == ["connection"] * 5
    assert (ok_conn.connection_id, denied_conn.connection_id) == (allowed.connection_id, denied.connection_id)
    assert ok_conn.peer_identity == spiffe("default", "frontend") and ok_conn.transport_failure_reason is None
    assert (ok_conn.method, ok_conn.response_code, ok_conn.path) == (None, None, None)
    assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in no_cert.transport_failure_reason
    assert no_cert.peer_principal is None
    assert "CERTIFICATE_VERIFY_FAILED" in foreign.transport_failure_reason
    # Envoy still reports the rejected certificate's SAN; it is never an identity.
    assert foreign.peer_principal == spiffe("default", "frontend") and foreign.peer_identity is None
    assert "HTTP_REQUEST" in plaintext.transport_failure_reason
    assert [accesslog.security_kind(c) for c in (ok_conn, denied_conn, no_cert, foreign, plaintext)] == [
        None, None, "tls_failure", "tls_failure", "tls_failure"
    ]


def test_consul_style_listener_log_misses_handshake_failures(processes, tmp_path):
    """A listener log filtered on the NR flag, as Consul builds its listener log, records none of the TLS failures."""
    consul_style = rendered_blocks("json", tmp_path)["listener"][0]
    consul_style["typed_config"]["path"] = str(tmp_path / "consul-listener.log")
    consul_style["filter"] = {"response_flag_filter": {"flags": ["NR"]}}
    _, captured = drive_traffic(processes, tmp_path, extra_listener_log=[consul_style])
    failures = [r for r in accesslog.parse_lines(captured[("listener", "json")]) if r.transport_failure_reason]
    assert len(failures) == 3
    assert lines(tmp_path / "consul-listener.log") == []
