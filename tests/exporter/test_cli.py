"""`meshobs exporter` as a process: start-up errors, health endpoints, clean stop."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from tests.exporter import faults
from tests.exporter.running import start_exporter
from tests.support.procs import http_get


def run_exporter(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "meshobs", "exporter", "--listen", "127.0.0.1:0", *args],
                          capture_output=True, text=True, timeout=30, env=env)


@pytest.mark.parametrize("args, message", [
    ((), "no targets: give --target, --targets-file or --kubernetes"),
    (("--target", "http://h:1", "--shard", "2/2"), "--shard '2/2': expected INDEX/COUNT with 0 <= INDEX < COUNT"),
    (("--target", "consul=http://h:1/runtime_modify"),
     "target 'http://h:1/runtime_modify': path /runtime_modify is not one of the read-only paths /certs, /metrics, /stats/prometheus"),
    (("--kubernetes-namespace", "shop", "--target", "http://h:1"), "--kubernetes-namespace needs --kubernetes"),
])
def test_start_up_errors_exit_2_with_the_reason(args, message):
    """Bad flags stop the exporter before it listens, with exit code 2 and the reason on stderr."""
    result = run_exporter(*args)
    assert (result.returncode, result.stderr.strip()) == (2, f"meshobs exporter: error: {message}")


def test_kubernetes_outside_a_cluster_is_an_error():
    """--kubernetes without the in-cluster environment names what is missing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    result = run_exporter("--kubernetes", env=env)
    assert (result.returncode, result.stderr.strip()) == (
        2, "meshobs exporter: error: --kubernetes: KUBERNETES_SERVICE_HOST/PORT are not set (not running in a pod?)")


def test_a_busy_listen_port_is_a_start_up_error():
    """A --listen address already in use ends the exporter with exit code 2 and the address."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "meshobs", "exporter", "--listen", f"127.0.0.1:{port}",
                                 "--target", "http://127.0.0.1:1"], capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stderr.strip()) == (
        2, f"meshobs exporter: error: cannot listen on 127.0.0.1:{port}: Address already in use")


def test_health_endpoints_metrics_and_a_clean_stop(processes, tmp_path):
    """/healthz and /readyz answer 200, /metrics is a Prometheus exposition, SIGTERM ends the process with 0."""
    servers = faults.FaultServers()
    try:
        port = servers.add(faults.good())
        exporter = start_exporter(processes, tmp_path, "--target", f"consul/shop/a=http://127.0.0.1:{port}")
        assert http_get(f"{exporter.url}/healthz") == (200, b"ok\n")
        assert http_get(f"{exporter.url}/readyz") == (200, b"ready: 1/1 targets up\n")
        assert exporter.value("meshobs_target_up", workload="a") == 1
        exporter.process.popen.terminate()
        assert exporter.process.popen.wait(10) == 0
    finally:
        servers.stop()


def test_threshold_flags_default_to_the_configuration_defaults():
    """Each threshold flag's default is the meshobs.yaml default of its key (durations in seconds), and --help names the key."""
    import argparse

    from meshobs import config
    from meshobs.exporter.cli import add_arguments
    from meshobs.exporter.settings import CONFIG_FLAGS

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([])
    defaults = config.Config()
    assert {flag.flag: getattr(args, flag.dest) for flag in CONFIG_FLAGS} == {
        "--scrape-interval": config.duration_seconds(defaults.deploy.scrape_interval),
        "--burst-denials-per-second": defaults.alerts.unauthorized_burst.absolute_denials_per_second,
        "--burst-factor": defaults.alerts.unauthorized_burst.factor,
        "--burst-min-denials-per-second": defaults.alerts.unauthorized_burst.min_denials_per_second,
        "--burst-baseline-window": config.duration_seconds(defaults.alerts.unauthorized_burst.baseline_window),
        "--ca-expiry-window": config.duration_seconds(defaults.alerts.cert_expiry.warning),
        "--leaf-warning-fraction": defaults.alerts.cert_expiry.leaf_warning_fraction,
    }
    assert "(meshobs.yaml alerts.unauthorized_burst.factor; default 5.0)" in " ".join(parser.format_help().split())


@pytest.mark.parametrize("args, message", [
    (("--burst-factor", "0"), "argument --burst-factor: '0' must be greater than 0"),
    (("--burst-factor", "five"), "argument --burst-factor: 'five': expected a number"),
    (("--leaf-warning-fraction", "1.5"),
     "argument --leaf-warning-fraction: '1.5' must be a ratio between 0 and 1 (exclusive), e.g. 0.05 for 5%"),
    (("--ca-expiry-window", "7 days"),
     "argument --ca-expiry-window: '7 days' is not a Prometheus duration such as 30s, 5m, 1h or 7d"),
])
def test_a_bad_threshold_flag_is_refused_as_the_configuration_refuses_the_key(args, message):
    """A threshold flag is checked by its meshobs.yaml key's own check: exit 2 naming the flag and the reason."""
    result = run_exporter("--target", "http://h:1", *args)
    assert (result.returncode, result.stderr.strip().splitlines()[-1]) == (2, f"meshobs exporter: error: {message}")
