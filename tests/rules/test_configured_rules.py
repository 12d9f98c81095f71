"""The configuration is the one source of truth of the rules and dashboards: non-default windows,
SLO periods and thresholds build output that `meshobs check` and promtool accept, dashboards read
only windows the rules record, and an SLO period without a burn-rate table is a config error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from meshobs import checks, config
from meshobs.errors import ConfigError
from meshobs.recordings import burn_windows
from tests.support.procs import require_binary

NON_DEFAULT = {
    "cluster_label": "k8s_cluster",
    "alerts": {
        "error_rate": {"window": "2m", "ratio": 0.2, "min_requests": 50},
        "latency": {"window": "10m", "quantile": 0.95},
        "unauthorized_burst": {"window": "3m", "baseline_window": "30m", "factor": 10},
        "unauthorized_sustained": {"min_denials_per_second": 0.5, "for": "20m"},
        "mtls_failure": {"window": "1m"},
        "plaintext": {"window": "10m"},
        "cert_expiry": {"leaf_warning_fraction": 0.2, "leaf_critical_fraction": 0.1, "warning": "14d", "critical": "2d"},
        "config_rejected": {"window": "30m"},
        "ztunnel": {"down_for": "4m", "gone_within": "30m", "window": "10m", "min_xds_failures_per_second": 0.02,
                    "min_identity_failures_per_second": 0.5, "for": "15m", "severity": "critical"},
        "cross_cluster": {"window": "10m", "error_ratio": 0.25, "min_requests": 100, "errors_for": "15m",
                          "errors_severity": "critical", "unreachable_for": "2m", "unreachable_severity": "warning"},
    },
    "slo": {"availability_percent": 99.5, "period": "28d", "min_failed_requests": 10},
}


def _build(tmp_path: Path, data: dict) -> Path:
    cfg = tmp_path / "meshobs.yaml"
    cfg.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "meshobs", "build", "--out", str(out), "--config", str(cfg)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def non_default(tmp_path_factory) -> Path:
    """The output of `meshobs build` for NON_DEFAULT, built once for the tests that only read it."""
    return _build(tmp_path_factory.mktemp("non-default"), NON_DEFAULT)


@pytest.mark.parametrize("name, data", [
    ("non-default windows, thresholds and a 28d SLO", NON_DEFAULT),
    ("error and latency windows of 10m", {"alerts": {"error_rate": {"window": "10m"}, "latency": {"window": "10m"}}}),
    ("burst baseline shorter than an hour", {"alerts": {"unauthorized_burst": {"window": "1m", "baseline_window": "10m"}}}),
    ("an alert that fires at once", {"alerts": {"plaintext": {"for": "0s"}}}),
])
def test_a_non_default_config_builds_output_meshobs_check_accepts(name, data, tmp_path):
    """`meshobs check` and `promtool check rules` pass on what `meshobs build` writes for a non-default config."""
    out = _build(tmp_path, data)
    check = subprocess.run([sys.executable, "-m", "meshobs", "check", str(out)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert checks.check_tree(out) == []
    files = sorted(str(p) for p in out.glob("alerts/*/*.yaml"))
    result = subprocess.run([require_binary("promtool"), "check", "rules", *files], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboards_and_alerts_read_the_configured_windows(non_default):
    """With a 2m error window and a 28d SLO, dashboards read the 2m series and the 28d table's windows."""
    out = non_default
    overview = (out / "dashboards/istio/overview.json").read_text()
    assert 'destination_service:mesh_requests:rate2m{mesh=\\"istio\\"' in overview
    assert "rate5m" not in overview
    alerts = yaml.safe_load((out / "alerts/istio/alerting-rules.yaml").read_text())["groups"][0]["rules"]
    burns = [(r["labels"]["long_window"], r["labels"]["short_window"], r["annotations"]["summary"])
             for r in alerts if r["alert"] == "MeshErrorBudgetBurn"]
    assert burns == [
        ("1h", "5m", "Istio: {{ $labels.destination_service }} burns its error budget 13.44x too fast"),
        ("6h", "30m", "Istio: {{ $labels.destination_service }} burns its error budget 5.6x too fast"),
        ("1d", "2h", "Istio: {{ $labels.destination_service }} burns its error budget 2.8x too fast"),
        ("3d", "6h", "Istio: {{ $labels.destination_service }} burns its error budget 0.933x too fast"),
    ]
    recorded = yaml.safe_load((out / "alerts/istio/recording-rules.yaml").read_text())["groups"][0]["rules"]
    names = {r["record"] for r in recorded}
    for window in burn_windows(config.from_dict(NON_DEFAULT)) + ["2m"]:
        assert f"destination_service:mesh_request_errors:ratio_rate{window}" in names


def test_long_windows_are_derived_from_recorded_rates():
    """Windows of 30 minutes or more average the shortest recorded rate instead of re-reading raw samples."""
    from meshobs import recordings
    from meshobs.meshes import DIALECTS

    rules = {r.record: r.expr for r in recordings.traffic_rules(config.Config(), DIALECTS["istio"])}
    assert rules["destination_service:mesh_requests:rate3d"] == 'avg_over_time(destination_service:mesh_requests:rate5m{mesh="istio"}[3d])'
    assert "istio_requests_total" not in rules["destination_service:mesh_request_errors:rate1d"]
    assert "istio_requests_total" not in rules["destination_service:mesh_request_errors:rate30m"]
    assert "istio_requests_total" in rules["destination_service:mesh_request_errors:rate5m"]


def test_an_slo_period_without_a_burn_rate_table_is_a_config_error():
    """An SLO period with no burn-rate table is rejected, naming the supported ones."""
    with pytest.raises(ConfigError) as info:
        config.from_dict({"slo": {"period": "7d"}})
    assert str(info.value) == "slo.period: '7d' is not a supported SLO period (supported: 28d, 30d)"


def test_leaf_fractions_must_be_ordered():
    """The critical share of a leaf's lifetime must be below the warning share."""
    with pytest.raises(ConfigError) as info:
        config.from_dict({"alerts": {"cert_expiry": {"leaf_warning_fraction": 0.05, "leaf_critical_fraction": 0.1}}})
    assert str(info.value) == "alerts.cert_expiry.leaf_critical_fraction: 0.1 must be smaller than leaf_warning_fraction (0.05)"


def test_the_ztunnel_alerts_read_the_configured_thresholds(non_default):
    """Non-default `alerts.ztunnel` settings reach the ztunnel alerts and their recorded windows."""
    out = non_default
    groups = yaml.safe_load((out / "alerts/istio/alerting-rules.yaml").read_text())["groups"]
    rules = [r for g in groups for r in g["rules"] if r.get("alert", "").startswith("MeshZtunnel")]
    by_alert: dict[str, list[tuple[str, str, str]]] = {}
    for rule in rules:
        by_alert.setdefault(rule["alert"], []).append((rule["expr"], rule["for"], rule["labels"]["severity"]))
    assert {(f, sev) for _, f, sev in by_alert["MeshZtunnelDown"]} == {("4m", "critical")}
    down, gone = sorted(by_alert["MeshZtunnelDown"], key=lambda r: r[0].startswith("max_over_time"))
    assert down[0] == 'node:mesh_ztunnel_up:min{mesh="istio"} == 0'
    assert gone[0].startswith('max_over_time(node:mesh_ztunnel_up:min{mesh="istio"}[30m])')
    assert by_alert["MeshZtunnelIdentityFailures"] == [
        ('node_response_flags:mesh_ztunnel_identity_failures:rate10m{mesh="istio"} > 0.5', "15m", "critical")]
    assert by_alert["MeshZtunnelXdsFailures"] == [
        ('node_reason:mesh_ztunnel_xds_failures:rate10m{mesh="istio"} > 0.02', "15m", "critical")]


def test_the_cross_cluster_alerts_read_the_configured_thresholds(non_default):
    """Non-default `alerts.cross_cluster` settings and cluster label reach both alerts and the recorded pairs: the
    alert's window and the dashboards' traffic window are recorded, and the panels read the latter."""
    out = non_default
    groups = yaml.safe_load((out / "alerts/linkerd/alerting-rules.yaml").read_text())["groups"]
    rules = {r["alert"]: r for g in groups for r in g["rules"]
             if r.get("alert") in ("MeshCrossClusterErrors", "MeshRemoteClusterUnreachable")}
    errors, unreachable = rules["MeshCrossClusterErrors"], rules["MeshRemoteClusterUnreachable"]
    assert errors["expr"] == (
        'source_cluster_destination_cluster:mesh_cross_cluster_request_errors:ratio_rate10m{mesh="linkerd"} > 0.25\n'
        'and source_cluster_destination_cluster:mesh_cross_cluster_requests:rate10m{mesh="linkerd"} * 600 >= 100')
    assert (errors["for"], errors["labels"]["severity"]) == ("15m", "critical")
    assert "(threshold 25%, at least 100 requests)" in errors["annotations"]["description"]
    assert unreachable["expr"] == 'destination_cluster:mesh_remote_cluster_up:min{mesh="linkerd"} < 1'
    assert (unreachable["for"], unreachable["labels"]["severity"]) == ("2m", "warning")
    assert unreachable["annotations"]["summary"] == (
        "Linkerd: cluster {{ $labels.k8s_cluster }} cannot reach cluster {{ $labels.destination_cluster }}")
    recorded = {r["record"]: r["expr"] for g in yaml.safe_load((out / "alerts/linkerd/recording-rules.yaml").read_text())["groups"]
                for r in g["rules"]}
    for window in ("2m", "10m"):
        pairs = recorded[f"source_cluster_destination_cluster:mesh_cross_cluster_requests:rate{window}"]
        # Linkerd's caller is the reporting proxy's own cluster: copied from the configured label
        assert pairs.startswith("label_replace(sum by (k8s_cluster, source_cluster, destination_cluster) (")
        assert pairs.endswith(', "source_cluster", "$1", "k8s_cluster", "(.*)")')
    clusters = (out / "dashboards/linkerd/clusters.json").read_text()
    assert 'source_cluster_destination_cluster:mesh_cross_cluster_requests:rate2m{mesh=\\"linkerd\\", k8s_cluster=~\\"$cluster\\"}' in clusters
