"""The Istio proxyStatsMatcher inclusions, as an Envoy stats matcher, keep exactly what the exporter reads."""

from __future__ import annotations

import json

import yaml

from meshobs.config import Config
from meshobs.meshes import DIALECTS
from meshobs.render import collectors
from tests.e2e.test_accesslog_envoy import drive_traffic
from tests.support import envoy as harness
from tests.support.procs import http_get


def test_included_stats_survive_and_others_are_dropped(processes, tmp_path):
    """With only the rendered inclusion regexps, listener ssl and filter-chain misses, certificate expiry and RBAC stats exist; others do not."""
    mesh_config = yaml.safe_load(collectors.render(Config(), DIALECTS["istio"])["collectors/istio/meshconfig.yaml"].decode())
    regexps = mesh_config["meshConfig"]["defaultConfig"]["proxyStatsMatcher"]["inclusionRegexps"]

    def with_stats_matcher(config: dict) -> None:
        # Istio turns inclusionRegexps into safe_regex patterns of the bootstrap's stats matcher.
        config["stats_config"] = {"stats_matcher": {"inclusion_list": {"patterns": [{"safe_regex": {"regex": r}} for r in regexps]}}}

    envoy, _ = drive_traffic(processes, tmp_path, customize=with_stats_matcher)

    _, body = http_get(f"{envoy.admin_url}/stats?format=json")
    names = {s["name"] for s in json.loads(body)["stats"] if "name" in s}
    prefix = f"listener.{harness.LISTENER_STAT_PREFIX}.ssl."
    for kept in ("handshake", "connection_error", "no_certificate", "fail_verify_no_cert", "fail_verify_error", "fail_verify_san"):
        assert prefix + kept in names
    assert any(n.startswith(prefix + "certificate.") and n.endswith(".expiration_unix_time_seconds") for n in names)
    assert f"listener.{harness.LISTENER_STAT_PREFIX}.no_filter_chain_match" in names
    assert "server.days_until_first_cert_expiring" in names
    assert {f"http.{harness.HTTP_STAT_PREFIX}.rbac.allowed", f"http.{harness.HTTP_STAT_PREFIX}.rbac.denied"} <= names
    assert envoy.counter(prefix + "fail_verify_error") == 1
    assert envoy.counter(f"http.{harness.HTTP_STAT_PREFIX}.rbac.denied") == 1
    # Everything else is dropped: the matcher is an allow-list, not a pass-through.
    assert f"http.{harness.HTTP_STAT_PREFIX}.downstream_rq_total" not in names
    assert prefix + "ciphers.TLS_AES_256_GCM_SHA384" not in names
