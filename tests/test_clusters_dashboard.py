"""The multi-cluster dashboard: clusters side by side for every mesh, and traffic between clusters
from each mesh's own cluster labels (Istio's source/destination cluster, Linkerd's gateway target
cluster, Consul's datacenter or peer); the same row on the overview, callers by cluster on the
service dashboard."""

from __future__ import annotations

import json

import pytest

from meshobs import config
from meshobs.meshes import DIALECTS
from meshobs.render import clusters_dashboard, dashboards

BETWEEN = ["Requests by cluster pair", "Failure ratio by cluster pair", "mTLS share by cluster pair",
           "p99 latency by cluster pair"]
# Consul's upstreams to mesh services are mTLS by construction: no share to chart
PAIR_PANELS = {"istio": BETWEEN, "linkerd": BETWEEN, "consul": [t for t in BETWEEN if not t.startswith("mTLS")]}
# remote clusters reachable (Linkerd's gateway probes, Consul's peerings), on the clusters dashboard only
GATEWAYS = {"istio": [], "linkerd": ["Remote clusters reachable", "Gateway probe p99 latency"],
            "consul": ["Remote clusters reachable"]}
PAIR_LEGEND = {"istio": "{{source_cluster}} → {{destination_cluster}}", "linkerd": "{{cluster}} → {{destination_cluster}}",
               "consul": "{{source_cluster}} → {{destination_cluster}}"}


def _panels(content: bytes) -> list[dict]:
    """Every panel, those inside collapsed rows too."""
    return [p for row in json.loads(content)["panels"] for p in [row] + row.get("panels", [])]


def _row(panels: list[dict], title: str) -> list[dict]:
    """The panels under the row titled `title`."""
    start = next(i for i, p in enumerate(panels) if p["type"] == "row" and p["title"] == title)
    end = next((i for i, p in enumerate(panels) if i > start and p["type"] == "row"), len(panels))
    return panels[start + 1:end]


@pytest.mark.parametrize("mesh", ["istio", "linkerd", "consul"])
def test_rows_per_mesh(mesh):
    """Every mesh gets the side-by-side rows and a row of traffic between clusters in its own cluster names."""
    [(path, content)] = clusters_dashboard.render(config.Config(), DIALECTS[mesh]).items()
    panels = _panels(content)
    assert path == f"dashboards/{mesh}/clusters.json"
    assert [p["title"] for p in panels if p["type"] == "row"] == ["Clusters side by side", "Clusters over time",
                                                                  "Traffic between clusters"]
    between = _row(panels, "Traffic between clusters")
    assert [p["title"] for p in between] == PAIR_PANELS[mesh] + GATEWAYS[mesh]
    assert {t["legendFormat"] for p in between[:len(PAIR_PANELS[mesh])] for t in p["targets"]} == {PAIR_LEGEND[mesh]}


@pytest.mark.parametrize("mesh, native", [("istio", 'destination_cluster'), ("linkerd", 'dst_target_cluster!=""'),
                                          ("consul", '"consul_destination_peer"')])
def test_overview_and_service_read_the_same_pairs(mesh, native):
    """The overview's row is the clusters dashboard's; the service dashboard charts its callers by cluster from the same source."""
    cfg = config.Config()
    rendered = dashboards.render(cfg, DIALECTS[mesh])
    [(_, clusters)] = clusters_dashboard.render(cfg, DIALECTS[mesh]).items()
    overview = _row(_panels(rendered[f"dashboards/{mesh}/overview.json"]), "Traffic between clusters")
    assert [(p["title"], p["targets"]) for p in overview] == [(p["title"], p["targets"])
                                                              for p in _row(_panels(clusters), "Traffic between clusters")
                                                              if p["title"] not in GATEWAYS[mesh]]
    callers = _row(_panels(rendered[f"dashboards/{mesh}/service.json"]), "Callers by cluster")
    assert [p["title"] for p in callers] == [t.replace("by cluster pair", "by caller and cluster") for t in PAIR_PANELS[mesh]]
    request = callers[0]["targets"][0]
    assert native in request["expr"] and "$service" in request["expr"]
    assert request["legendFormat"] == f"{{{{source_workload}}}}.{{{{source_namespace}}}} ({PAIR_LEGEND[mesh]})"


def test_callers_counted_by_callers_come_from_every_cluster():
    """Linkerd's callers count calls in their own clusters: the service dashboard's callers ignore $cluster; Istio's destination counts them in the selected cluster."""
    for mesh, filtered in (("linkerd", False), ("consul", False), ("istio", True)):
        rendered = dashboards.render(config.Config(), DIALECTS[mesh])
        [request] = _row(_panels(rendered[f"dashboards/{mesh}/service.json"]), "Callers by cluster")[0]["targets"]
        assert ('cluster=~"$cluster"' in request["expr"]) is filtered, mesh


def test_cluster_label_name_comes_from_the_config():
    """With cluster_label k8s_cluster every panel groups and filters by k8s_cluster."""
    [(_, content)] = clusters_dashboard.render(config.from_dict({"cluster_label": "k8s_cluster"}), DIALECTS["linkerd"]).items()
    exprs = [t["expr"] for p in _panels(content) for t in p.get("targets", [])]
    assert all("k8s_cluster" in e for e in exprs) and not any("by (cluster" in e for e in exprs)
