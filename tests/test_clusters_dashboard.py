"""The multi-cluster dashboard: clusters side by side for every mesh, traffic between clusters
where the mesh names the caller's cluster (Istio only)."""

from __future__ import annotations

import json

import pytest

from meshobs import config
from meshobs.meshes import DIALECTS
from meshobs.render import clusters_dashboard


@pytest.mark.parametrize("mesh, between", [("istio", True), ("linkerd", False), ("consul", False)])
def test_rows_per_mesh(mesh, between):
    """Every mesh gets the side-by-side rows; only Istio gets the rows of traffic between clusters."""
    [(path, content)] = clusters_dashboard.render(config.Config(), DIALECTS[mesh]).items()
    board = json.loads(content)
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert path == f"dashboards/{mesh}/clusters.json"
    assert rows == ["Clusters side by side", "Clusters over time"] + (["Traffic between clusters"] if between else [])
    # a collapsed row carries its panels inside it
    legends = {t["legendFormat"] for row in board["panels"] for p in [row] + row.get("panels", []) for t in p.get("targets", [])}
    assert legends == ({"{{cluster}}", "{{source_cluster}} → {{cluster}}"} if between else {"{{cluster}}"})


def test_cluster_label_name_comes_from_the_config():
    """With cluster_label k8s_cluster every panel groups and filters by k8s_cluster."""
    [(_, content)] = clusters_dashboard.render(config.from_dict({"cluster_label": "k8s_cluster"}), DIALECTS["istio"]).items()
    exprs = [t["expr"] for p in json.loads(content)["panels"] for t in p.get("targets", [])]
    assert all("k8s_cluster" in e for e in exprs) and not any("by (cluster" in e for e in exprs)
