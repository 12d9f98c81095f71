"""`meshobs verify` on a Linkerd cluster linked to no other: the panels of traffic between clusters
and of gateway probes are empty, noted with their reason, not failed."""

from __future__ import annotations

from meshobs import cli
from tests.verify.test_verify_replayed import VERIFY_ARGS, start_replayed


def _multicluster(series) -> bool:
    """A series that exists only once the cluster is linked to another."""
    return series.name.startswith("gateway_") or any(label == "dst_target_cluster" for label, _ in series.labels)


def test_a_cluster_linked_to_no_other_passes_with_notes(processes, tmp_path, request, capsys):
    """Without gateway calls or probes, verify passes and names each empty cross-cluster panel's reason."""
    out, prometheus = start_replayed(processes, tmp_path, request, "linkerd", keep=lambda s: not _multicluster(s))
    code = cli.main(["verify", "--prometheus", prometheus.url, "--dir", str(out), "--mesh", "linkerd", "-v", *VERIFY_ARGS])
    printed = capsys.readouterr().out
    assert [line for line in printed.splitlines() if line.startswith("FAIL")] == [] and code == 0, printed
    for title in ("Requests by cluster pair", "Requests by caller and cluster", "Remote clusters reachable",
                  "Gateway probe p99 latency"):
        assert f"panel '{title}'" in _noted(printed, "linked to no other"), printed


def _noted(printed: str, reason: str) -> str:
    """The places verify notes with `reason`: on the note's own line, or listed under a note of several queries."""
    places, grouped = [], False
    for line in printed.splitlines():
        if line.startswith("note"):
            grouped = reason in line and line.endswith("queries:")
            if reason in line and not grouped:
                places.append(line)
        elif line.startswith("    ") and grouped:
            places.append(line)
        else:
            grouped = False
    return "\n".join(places)
