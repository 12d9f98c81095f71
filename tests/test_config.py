"""Configuration: defaults, overrides, and errors that name the key and the reason."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from meshobs import config
from meshobs.errors import ConfigError


def _error(data) -> str:
    with pytest.raises(ConfigError) as info:
        config.from_dict(data)
    return str(info.value)


def test_documented_defaults_load_back_to_the_defaults():
    """`meshobs config --defaults` output is a valid meshobs.yaml equal to the built-in defaults."""
    assert config.from_dict(yaml.safe_load(config.documented_defaults())) == config.Config()


def test_every_key_is_documented():
    """Every key is preceded by a comment line in the documented defaults."""
    lines = config.documented_defaults().splitlines()
    for index, line in enumerate(lines):
        if line.strip() and not line.lstrip().startswith("#") and index > 2:
            assert lines[index - 1].lstrip().startswith("# "), line


def test_overrides_keep_other_defaults():
    """A partial config changes only the keys it names."""
    cfg = config.from_dict({"alerts": {"error_rate": {"ratio": 0.05, "for": "10m"}}, "cluster_label": "k8s_cluster"})
    assert cfg.alerts.error_rate.ratio == 0.05
    assert cfg.alerts.error_rate.for_ == "10m"
    assert cfg.alerts.error_rate.window == "5m"
    assert cfg.cluster_label == "k8s_cluster"


def test_unknown_key_is_named_with_the_known_ones():
    """A misspelt key is rejected with its dotted path and the keys that exist there."""
    assert _error({"alerts": {"error_rate": {"treshold": 0.1}}}) == (
        "alerts.error_rate.treshold: unknown key (known keys here: for, min_requests, ratio, severity, window)"
    )


def test_wrong_type_is_rejected():
    """A string where a number belongs names the key, the expected and the given type."""
    assert _error({"alerts": {"error_rate": {"ratio": "ten"}}}) == "alerts.error_rate.ratio: expected a number, got str 'ten'"


def test_boolean_is_not_a_number():
    """YAML's `yes` is not accepted as a number."""
    assert _error({"slo": {"availability_percent": True}}) == "slo.availability_percent: expected a number, got bool True"


def test_impossible_slo_is_rejected():
    """An SLO of 101% is impossible."""
    assert _error({"slo": {"availability_percent": 101}}) == (
        "slo.availability_percent: 101.0 must be a percentage above 0 and below 100"
    )


def test_bad_duration_is_rejected():
    """A window must be a Prometheus duration."""
    assert _error({"alerts": {"latency": {"window": "5 minutes"}}}) == (
        "alerts.latency.window: '5 minutes' is not a Prometheus duration such as 30s, 5m, 1h or 7d"
    )


def test_a_for_of_0s_fires_at_once_but_a_window_of_0s_is_rejected():
    """`for: 0s` (fire at once) is a valid setting; a rate window of 0s is not."""
    assert config.from_dict({"alerts": {"plaintext": {"for": "0s"}}}).alerts.plaintext.for_ == "0s"
    assert _error({"alerts": {"plaintext": {"window": "0s"}}}) == "alerts.plaintext.window: '0s' must be longer than 0s"


def test_number_as_duration_is_rejected():
    """A bare number is not a duration (5 could mean seconds or minutes)."""
    assert _error({"alerts": {"plaintext": {"for": 5}}}) == "alerts.plaintext.for: expected a duration string such as '5m', got 5"


def test_critical_expiry_must_be_shorter_than_warning():
    """Certificate expiry thresholds must be ordered."""
    assert _error({"alerts": {"cert_expiry": {"warning": "1d", "critical": "2d"}}}) == (
        "alerts.cert_expiry.critical: 2d must be shorter than warning (1d)"
    )


def test_bad_selector_is_rejected():
    """Extra matchers must be PromQL label matchers."""
    assert _error({"selectors": {"istio": "namespace=prod"}}) == (
        "selectors.istio: 'namespace=prod' must be label matchers without braces, e.g. namespace!~\"kube-.*\",env=\"prod\""
    )


def test_config_file_errors_name_the_file(tmp_path):
    """Errors from a file name the file."""
    path = tmp_path / "meshobs.yaml"
    path.write_text("slo:\n  availability_percent: 101\n")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert str(info.value) == f"{path}: slo.availability_percent: 101.0 must be a percentage above 0 and below 100"


def test_invalid_yaml_names_the_line(tmp_path):
    """A YAML syntax error names the file and line."""
    path = tmp_path / "meshobs.yaml"
    path.write_text("alerts:\n  error_rate: [\n")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert str(info.value).startswith(f"{path}: line 3, column 1: not valid YAML")


def test_bad_config_exits_2_and_writes_nothing(tmp_path):
    """`meshobs build --config bad.yaml` exits 2 naming key and reason, and creates no output."""
    path = tmp_path / "meshobs.yaml"
    path.write_text("slo:\n  availability_percent: 101\n")
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "meshobs", "build", "--config", str(path), "--out", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr == (
        f"meshobs build: error: {path}: slo.availability_percent: 101.0 must be a percentage above 0 and below 100\n"
    )
    assert not out.exists()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "meshobs", *args], capture_output=True, text=True)


def test_every_error_is_reported_at_once_with_did_you_mean(tmp_path):
    """A file with several mistakes names each, with its dotted key, and suggests the key meant; exit 2."""
    path = tmp_path / "meshobs.yaml"
    path.write_text(
        "cluster_lable: k8s_cluster\n"
        "error_rate: {ratio: 0.05}\n"
        "alerts:\n"
        "  latency: {treshold_seconds: 2, window: 5 minutes}\n"
        "  error_rate: {ratio: 5}\n"
        "slo: {availability_percent: 101}\n"
    )
    result = _cli("build", "--config", str(path), "--out", str(tmp_path / "out"))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"meshobs build: error: {path}: 6 errors:\n"
        "  cluster_lable: unknown key; did you mean cluster_label?\n"
        "  error_rate: unknown key here; did you mean alerts.error_rate?\n"
        "  alerts.error_rate.ratio: 5.0 must be a ratio between 0 and 1 (exclusive), e.g. 0.05 for 5%\n"
        "  alerts.latency.treshold_seconds: unknown key; did you mean threshold_seconds?\n"
        "  alerts.latency.window: '5 minutes' is not a Prometheus duration such as 30s, 5m, 1h or 7d\n"
        "  slo.availability_percent: 101.0 must be a percentage above 0 and below 100\n"
    )
    assert not (tmp_path / "out").exists()


def test_a_rule_across_keys_is_not_judged_on_an_invalid_key():
    """When one of two compared keys is itself wrong, only that key is reported."""
    assert _error({"alerts": {"cert_expiry": {"warning": "soon", "critical": "30d"}}}) == (
        "alerts.cert_expiry.warning: 'soon' is not a Prometheus duration such as 30s, 5m, 1h or 7d"
    )


def test_cluster_label_alone_labels_series_through_the_default_cluster(tmp_path):
    """`cluster_label` alone is enough: every scrape job attaches it with deploy.cluster's default value."""
    path = tmp_path / "meshobs.yaml"
    path.write_text("cluster_label: k8s_cluster\n")
    out = tmp_path / "out"
    result = _cli("build", "--config", str(path), "--out", str(out), "--mesh", "consul")
    assert (result.returncode, result.stderr) == (0, "")
    jobs = yaml.safe_load((out / "deploy/prometheus/prometheus.yml").read_text())["scrape_configs"]
    assert {(job["relabel_configs"][-1]["target_label"], job["relabel_configs"][-1]["replacement"]) for job in jobs} == {
        ("k8s_cluster", "default")}


def test_a_setting_that_needs_another_is_warned_about(tmp_path):
    """cluster_label with deploy.cluster emptied, or forward_port without forward_host, is a warning naming both keys."""
    path = tmp_path / "meshobs.yaml"
    path.write_text("cluster_label: k8s_cluster\ndeploy: {cluster: ''}\nlogging: {forward_port: 24225}\n")
    result = _cli("config", "--validate", str(path))
    assert result.returncode == 0
    assert result.stderr == (
        f"meshobs config: warning: {path}: cluster_label: no scrape job attaches this label while deploy.cluster is "
        "empty, so the dashboards' cluster variable is empty unless your Prometheus adds the label; set deploy.cluster\n"
        f"meshobs config: warning: {path}: logging.forward_port: has no effect while logging.forward_host is empty; "
        "set logging.forward_host\n"
    )
