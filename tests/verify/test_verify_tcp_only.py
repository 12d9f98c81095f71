"""A mesh that carries only TCP (Consul's default protocol; databases and queues anywhere): the
dashboards still list its cluster and workloads, and the TCP panels return data."""

from __future__ import annotations

from meshobs import cli
from tests.verify.test_verify_replayed import VERIFY_ARGS, start_replayed

_HTTP = ("istio_requests_total", "istio_request_duration_milliseconds", "istio_request_bytes", "istio_response_bytes")


def test_tcp_only_data_keeps_variables_and_tcp_panels(processes, tmp_path, request, capsys):
    """Istio data without any HTTP series fails HTTP panels only: no $cluster failure, TCP panels answer."""
    out, prometheus = start_replayed(processes, tmp_path, request, "istio",
                                     keep=lambda s: not s.name.startswith(_HTTP))
    cli.main(["verify", "--prometheus", prometheus.url, "--dir", str(out), "--mesh", "istio", *VERIFY_ARGS])
    failures = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL")]

    assert not [f for f in failures if "variable $cluster" in f]
    assert not [f for f in failures if "workload.json" in f and "variable $" in f]
    tcp_panels = ("'TCP connections opened'", "'TCP workloads'", "'TCP connections opened and closed'", "'Inbound TCP bytes'")
    assert not [f for f in failures if any(title in f for title in tcp_panels)]
