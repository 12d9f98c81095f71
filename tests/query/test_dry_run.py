"""A dry-run (shadow) authorization policy in a real Envoy, followed to `meshobs authz`: the
proxy's shadow decision -> the exporter's meshobs_authz_dry_run_denied_total -> the recording
rule in a real Prometheus -> "would deny" for the workload, while the enforced policy allows."""

from __future__ import annotations

import json

import pytest

from meshobs import build, config
from meshobs.render import rules
from tests.e2e.test_exporter_envoy import LABELS, envoy_and_exporter
from tests.e2e.test_exporter_istio_tags import istio_sidecar
from tests.query.conftest import meshobs
from tests.support.envoy import spiffe
from tests.support.procs import http_get
from tests.support.prom import start_prometheus
from tests.verify.stack import static_config

INTRUDER = spiffe("other", "intruder")


def shadow_policy(shadow_prefix: str):
    """Enforce: allow frontend and intruder. Dry run: allow frontend only (intruder would be denied).
    Istio names a dry-run ALLOW policy's stats with the prefix `istio_dry_run_allow_`."""

    def customize(config: dict) -> None:
        hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        rbac = hcm["http_filters"][0]["typed_config"]
        enforced = rbac["rules"]["policies"]["allow-frontend"]
        shadow = json.loads(json.dumps(enforced))
        enforced["principals"].append({"authenticated": {"principal_name": {"exact": INTRUDER}}})
        rbac["shadow_rules"] = {"action": "ALLOW", "policies": {"only-frontend": shadow}}
        if shadow_prefix:
            rbac["shadow_rules_stat_prefix"] = shadow_prefix

    return customize


def istio_with_dry_run(config: dict) -> None:
    shadow_policy("istio_dry_run_allow_")(config)
    istio_sidecar(config)


@pytest.mark.parametrize("mesh, customize, stat", [
    ("consul", shadow_policy(""), 'envoy_http_rbac_shadow_denied{envoy_http_conn_manager_prefix="inbound_http"} 3'),
    ("istio", istio_with_dry_run,
     'envoy_http_inbound_0_0_0_0_8080_rbac{authz_dry_run_action="allow",authz_dry_run_result="denied"} 3'),
])
def test_a_shadow_denied_request_reaches_meshobs_authz(mesh, customize, stat, processes, tmp_path):
    """Requests a dry-run policy would deny (but the enforced one allows) show as "would deny" in `meshobs authz`, with exit 1 under `--fail-if would-deny`."""
    envoy, exporter = envoy_and_exporter(processes, tmp_path, customize=customize, mesh=mesh)
    for client in (envoy.pki.allowed, envoy.pki.denied, envoy.pki.denied, envoy.pki.denied):
        assert envoy.request(client) == 200  # enforcement lets everyone in
    assert stat in http_get(f"{envoy.admin_url}/stats/prometheus")[1].decode()
    rendered = rules.render(config.Config(), build.select_meshes([mesh])[0])
    rule_file = tmp_path / "recording-rules.yaml"
    rule_file.write_bytes(rendered[f"alerts/{mesh}/recording-rules.yaml"])
    prometheus = start_prometheus(processes, tmp_path, {"meshobs-exporter": [static_config(f"127.0.0.1:{exporter.port}")]},
                                  rule_files=[rule_file])
    # the counter's first sample is 3 (the requests were sent before the first scrape): send more once scraped
    prometheus.wait_for(f'meshobs_authz_dry_run_denied_total{{mesh="{mesh}"}} == 3')
    for _ in range(3):
        assert envoy.request(envoy.pki.denied) == 200
    prometheus.wait_for(f'destination_workload:mesh_authz_dry_run_denied:rate5m{{mesh="{mesh}"}} > 0')

    printed = meshobs("authz", "--prometheus", prometheus.url, "--mesh", mesh, "-o", "json")
    assert printed.code == 0, printed.err
    row = json.loads(printed.out)["workloads"][0]
    assert (row["namespace"], row["workload"]) == (LABELS["namespace"], LABELS["workload"])
    assert row["dry_run_denied_per_second"] > 0
    assert row["denied_per_second"] == 0  # nothing is enforced-denied

    table = meshobs("authz", "--prometheus", prometheus.url, "--mesh", mesh, "--fail-if", "would-deny")
    assert table.code == 1
    assert table.err == f"meshobs authz: --fail-if would-deny holds: default/backend ({mesh})\n"
    assert "WOULD DENY" in table.out.splitlines()[1]
