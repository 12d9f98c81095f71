"""docs/examples/many-clusters.yaml, built as its comments tell a new user to: what it says it
renders, it renders, and every consumer here accepts the result."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from meshobs import checks
from tests.rules.test_configured_rules import _build as build_with_cli
from tests.support.prom import amtool_routes

EXAMPLE = Path(__file__).resolve().parents[2] / "docs/examples/many-clusters.yaml"


def _build(tmp_path: Path, cluster: str) -> Path:
    """The example built for `cluster` (only deploy.cluster changed, as its comment says)."""
    document = yaml.safe_load(EXAMPLE.read_text())
    document["deploy"]["cluster"] = cluster
    folder = tmp_path / cluster
    folder.mkdir()
    return build_with_cli(folder, document)


@pytest.fixture(scope="module")
def eu(tmp_path_factory) -> Path:
    return _build(tmp_path_factory.mktemp("example"), "eu-1")


def test_the_agent_puts_the_cluster_on_every_series_and_writes_to_mimir(eu):
    """The agent config of eu-1 sets cluster="eu-1" as an external label and on every scrape job, and remote-writes to the example's Mimir."""
    agent = yaml.safe_load((eu / "deploy/prometheus-agent/prometheus.yml").read_text())
    assert agent["global"]["external_labels"] == {"cluster": "eu-1"}
    assert agent["remote_write"] == [{"url": "http://mimir-distributor.mimir.svc:8080/api/v1/push"}]
    for job in agent["scrape_configs"]:
        assert {"target_label": "cluster", "replacement": "eu-1"} in job["relabel_configs"], job["job_name"]


def test_every_ruler_group_gets_mimirs_fields_and_no_other_file_does(eu):
    """Every group under deploy/ruler carries query_offset 1m and the ruler=global label; alerts/ and deploy/prometheus stay without them."""
    groups = [g for path in sorted((eu / "deploy/ruler/rules").glob("*.yaml"))
              for g in yaml.safe_load(path.read_text())["groups"]]
    assert groups and all((g["query_offset"], g["labels"]) == ("1m", {"ruler": "global"}) for g in groups)
    for path in [*eu.glob("alerts/*/*.yaml"), *eu.glob("deploy/prometheus/rules/*.yaml")]:
        assert all(set(g) == {"name", "rules"} | ({"interval"} & set(g)) for g in yaml.safe_load(path.read_text())["groups"]), path


def test_the_ruler_files_are_the_same_for_every_cluster(eu, tmp_path):
    """deploy/ruler built for us-1 is byte-identical to eu-1's, so loading either once serves the fleet."""
    us = _build(tmp_path, "us-1")
    files = sorted(p.relative_to(eu) for p in (eu / "deploy/ruler").rglob("*") if p.is_file())
    assert files and all((eu / f).read_bytes() == (us / f).read_bytes() for f in files)


def test_eu_1_pages_its_own_rotation_and_other_clusters_keep_the_shared_one(eu):
    """amtool routes eu-1's critical alerts to eu-1's pager and chat, and us-1's to the shared pager and mesh chat."""
    config_file = eu / "deploy/alertmanager/alertmanager.yml"
    assert amtool_routes(config_file, cluster="eu-1", severity="critical", mesh="istio") == "meshobs-eu-1-pager,meshobs-eu-1-chat"
    assert amtool_routes(config_file, cluster="us-1", severity="critical", mesh="istio") == "meshobs-pager,meshobs-chat-istio"


def test_meshobs_check_passes_the_built_example(eu):
    """`meshobs check` finds nothing wrong in the example's build, its Mimir ruler fields included."""
    assert checks.check_tree(eu) == []
