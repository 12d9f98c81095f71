"""The signals beyond HTTP at the destination: where each mesh answers them, why not elsewhere, how
a pod's owner is found from its name, and what the rendered dashboards promise about them."""

from __future__ import annotations

import json
import re

import pytest

from meshobs import build, config
from meshobs import signals_traffic as st
from meshobs.meshes import DIALECTS
from meshobs.meshes.extended import POD_OWNER
from meshobs.render.grafana import FIRST_SCREEN

# Signals each mesh is expected not to report (docs/parity.md, last section).
UNAVAILABLE = {
    "istio": {"tcp_active", "route_requests", "route_errors", "upstream_endpoints", "upstream_healthy_endpoints",
              "cp_grpc", "cp_raft_commit", "cp_leader_contact", "cp_autopilot", "cp_elections", "cp_dataplanes",
              "cp_raft_applies"},
    "linkerd": {"request_size", "response_size", "proxy_live", "no_healthy_upstream", "circuit_breaker_overflow",
                "outlier_ejections", "cp_versions", "cp_pushes_by_type", "cp_push_errors", "cp_push_time",
                "cp_validations", "cp_raft_commit", "cp_leader_contact", "cp_autopilot", "cp_elections", "cp_dataplanes",
                "cp_raft_applies"},
    "consul": {"tcp_mtls_opened", "tcp_closed", "grpc_requests", "route_requests", "route_errors", "request_size", "response_size", "cp_cpu",
               "cp_pushes_by_type", "cp_push_errors", "cp_push_time", "cp_injections", "cp_validations", "cp_grpc"},
}


@pytest.mark.parametrize("mesh", sorted(DIALECTS))
def test_each_mesh_answers_every_signal_but_the_declared_ones(mesh):
    """A mesh answers every new signal except the ones it is known not to report."""
    dialect = DIALECTS[mesh]
    missing = {s.name for s in st.ALL if not s.available(dialect)}
    assert missing == UNAVAILABLE[mesh]


@pytest.mark.parametrize("mesh", sorted(DIALECTS))
def test_every_unavailable_signal_says_why(mesh):
    """Each signal a mesh does not report carries the dialect's own reason, never the generic one."""
    dialect = DIALECTS[mesh]
    for signal in st.ALL:
        reason = st.unavailable_reason(signal, dialect)
        if signal.available(dialect):
            assert reason is None
        else:
            assert reason and reason != "not reported by this mesh", (mesh, signal.name, reason)


def test_consul_tcp_mtls_reason_names_the_public_listener():
    """Consul's TCP mTLS share is unavailable because its public listener refuses plaintext."""
    reason = st.unavailable_reason(st.TCP_MTLS_OPENED, DIALECTS["consul"])
    assert reason.startswith("Consul's public listener accepts mutual TLS only")


@pytest.mark.parametrize("pod, owner", [
    ("reviews-v1-7d4b9c8f5d-x2x7q", "reviews-v1"),  # Deployment (ReplicaSet hash + pod suffix)
    ("checkout-6f7b8c9d4-bz2cd", "checkout"),  # Argo Rollout: its ReplicaSet owner's name
    ("mongodb-0", "mongodb"),  # StatefulSet
    ("node-agent-x7k2p", "node-agent"),  # DaemonSet
    ("backup-28391220-q8w4z", "backup"),  # CronJob's Job (the Job name carries the schedule time)
    ("migrate-h5k2n", "migrate"),  # Job
])
def test_pod_owner_is_cut_from_the_pod_name_for_every_kind(pod, owner):
    """A proxy's workload is its pod's owner, whatever the kind, as Prometheus's anchored label_replace cuts it."""
    match = re.fullmatch(POD_OWNER.regexes[0], pod)
    assert match and match.group(1) == owner


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict]:
    artefacts = build.render(config.Config(), DIALECTS.values())
    return {path: json.loads(content) for path, content in artefacts.items()
            if path.startswith("dashboards/") and path.endswith(".json")}


def _panels(document: dict) -> list[dict]:
    return [p for row in document["panels"] for p in ([row] + row.get("panels", [])) if p["type"] != "row"]


def test_no_panel_issues_more_than_four_queries(dashboards):
    """Every panel of every dashboard asks Prometheus at most four queries."""
    heavy = [(path, p["title"]) for path, d in dashboards.items() for p in _panels(d) if len(p.get("targets", [])) > 4]
    assert heavy == []


def test_rows_below_the_first_screen_are_collapsed(dashboards):
    """A row starting below the first screen is collapsed and carries its panels; rows above it are open."""
    for path, document in dashboards.items():
        for row in (p for p in document["panels"] if p["type"] == "row"):
            assert row["collapsed"] == (row["gridPos"]["y"] >= FIRST_SCREEN), (path, row["title"])
            if row["collapsed"]:
                assert row["panels"], (path, row["title"])


@pytest.mark.parametrize("mesh", sorted(DIALECTS))
def test_tcp_is_charted_on_the_overview_service_and_workload_dashboards(mesh, dashboards):
    """Each mesh's overview, service and workload dashboards carry a TCP row with panels."""
    for name in ("overview", "service", "workload"):
        rows = {r["title"]: r for r in dashboards[f"dashboards/{mesh}/{name}.json"]["panels"] if r["type"] == "row"}
        assert "TCP" in rows, (mesh, name)
