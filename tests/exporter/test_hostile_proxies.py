"""Hostile sidecars beside healthy ones, against the real exporter process: poisoned values and
/certs answers are contained per target and counted, the healthy ones are counted exactly."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys


from tests.exporter import hostile
from tests.exporter.kube_api import KubeApi, pod
from tests.exporter.running import start_exporter
from tests.exporter.test_faults import targets_json
from tests.support.procs import wait_until

GOOD_EXPIRY = "2027-01-02T03:04:05Z"


def targets_file(tmp_path, ports: dict[str, int]):
    path = tmp_path / "targets.json"
    path.write_text(targets_json(ports, namespace="shop", __metrics_path__="/stats/prometheus"))
    return path


def test_poisoned_values_and_certs_are_bad_payloads_and_the_good_proxies_are_counted_exactly(processes, tmp_path, proxies):
    """+Inf, NaN, negative and beyond-64-bit counters and deeply nested or malformed /certs never reach a series; every cycle completes and the good proxies' counts are exact."""
    good = {"/stats/prometheus": hostile.envoy(), "/certs": hostile.certs_json(GOOD_EXPIRY)}
    ports = {name: proxies.add(hostile.by_path(answers)) for name, answers in {
        "good1": good,
        "good2": good,
        "deep_list": {**good, "/certs": b"[" * 200_000},
        "deep_object": {**good, "/certs": b'{"certificates": [{"cert_chain": ' * 20_000},
        "bad_time": {**good, "/certs": hostile.certs_json("soon")},
        "inf": {**good, "/stats/prometheus": hostile.envoy(denied="+Inf")},
        "minus_inf": {**good, "/stats/prometheus": hostile.envoy(handshakes="-Inf")},
        "negative": {**good, "/stats/prometheus": hostile.envoy(denied="-5")},
        "huge": {**good, "/stats/prometheus": hostile.envoy(denied="1e300")},
        "nan": {**good, "/stats/prometheus": hostile.envoy(handshakes="NaN")},
        "inf_cert": {**good, "/stats/prometheus": hostile.envoy(
            extra='envoy_listener_ssl_certificate_expiration_unix_time_seconds{envoy_tls_certificate="unnamed_cert_1"} +Inf\n')},
    }.items()}
    exporter = start_exporter(processes, tmp_path, "--targets-file", str(targets_file(tmp_path, ports)),
                              "--scrape-interval", "100ms", "--scrape-timeout", "1s")
    rejected = ("inf", "minus_inf", "negative", "huge")

    def errors(name: str) -> float:
        return exporter.value("meshobs_scrape_errors_total", workload=name, reason="bad_payload")

    wait_until(lambda: all(errors(name) >= 3 for name in rejected), what="poisoned scrapes counted in several cycles")
    samples = exporter.samples()
    assert all(math.isfinite(v) and v >= 0 for v in samples.values()), [k for k, v in samples.items() if not math.isfinite(v) or v < 0]
    expiry = dt.datetime.fromisoformat(GOOD_EXPIRY.replace("Z", "+00:00")).timestamp()
    for name in ("good1", "good2", "deep_list", "deep_object", "bad_time", "nan", "inf_cert"):
        assert exporter.value("meshobs_target_up", workload=name) == 1, name
        assert exporter.value("meshobs_tls_handshakes_total", workload=name) == (0 if name == "nan" else 7), name
        assert exporter.value("meshobs_authz_denied_total", workload=name) == 3, name
    for name in ("good1", "good2", "nan", "inf_cert"):
        assert exporter.value("meshobs_cert_expiry_timestamp_seconds", workload=name, cert="leaf") == expiry, name
        assert errors(name) == 0, name
    for name in ("deep_list", "deep_object", "bad_time"):  # a bad /certs is counted once and not asked for again
        assert exporter.value("meshobs_cert_expiry_timestamp_seconds", workload=name, cert="leaf") is None, name
        assert errors(name) == 1, name
    for name in rejected:
        assert exporter.value("meshobs_target_up", workload=name) == 0, name
        assert exporter.value("meshobs_authz_denied_total", workload=name) is None, name
    log = exporter.process.log()
    assert "RecursionError" not in log and "Traceback" not in log


def test_a_bare_pod_labelled_like_a_deployment_is_its_own_workload(processes, tmp_path, proxies):
    """A bare pod labelled app=checkout, with its own denials and an expiring certificate, never touches the Deployment checkout's series."""
    checkout = proxies.add(hostile.by_path({"/metrics": hostile.envoy()}))
    soon = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)).timestamp()
    evil = proxies.add(hostile.by_path({"/metrics": hostile.envoy(denied="5000", extra=(
        f'envoy_listener_ssl_certificate_expiration_unix_time_seconds{{envoy_tls_certificate="unnamed_cert_1"}} {soon}\n'))}))
    consul = {"consul.hashicorp.com/connect-inject-status": "injected"}
    labels = {"app": "checkout", "app.kubernetes.io/name": "checkout", "pod-template-hash": "5d8f7"}
    port = "consul.hashicorp.com/prometheus-scrape-port"
    kube = KubeApi(tmp_path, [
        pod("checkout-5d8f7-abcde", "shop", "127.0.0.1", {**consul, port: str(checkout)}, ("ReplicaSet", "checkout-5d8f7"), labels),
        pod("evil", "shop", "127.0.0.1", {**consul, port: str(evil)}, labels=labels),
    ])
    try:
        exporter = start_exporter(processes, tmp_path, "--kubernetes", "--scrape-interval", "100ms",
                                  env={**os.environ, **kube.env()})
        workloads = {dict(items)["workload"] for (name, items) in exporter.samples() if name == "meshobs_target_up"}
        assert workloads == {"checkout", "pod/evil"}
        assert exporter.value("meshobs_authz_denied_total", workload="checkout") == 3
        assert exporter.value("meshobs_cert_expiry_timestamp_seconds", workload="checkout") is None
        assert exporter.value("meshobs_authz_denied_total", workload="pod/evil") == 5000
    finally:
        kube.stop()


def test_user_info_in_a_target_is_refused_and_never_shown(tmp_path):
    """A static target or targets-file address with user info stops the exporter with an error that masks the credentials."""
    result = subprocess.run([sys.executable, "-m", "meshobs", "exporter", "--listen", "127.0.0.1:0",
                             "--target", "consul/shop/a=http://admin:s3cret@127.0.0.1:19000/stats/prometheus"],
                            capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stderr.strip()) == (2, "meshobs exporter: error: target "
                                                          "'http://***@127.0.0.1:19000/stats/prometheus': user info is not allowed")
    path = tmp_path / "targets.json"
    path.write_text(json.dumps([{"targets": ["admin:s3cret@127.0.0.1:19000"],
                                 "labels": {"mesh": "consul", "namespace": "shop", "workload": "a"}}]))
    result = subprocess.run([sys.executable, "-m", "meshobs", "exporter", "--listen", "127.0.0.1:0", "--targets-file", str(path)],
                            capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stderr.strip()) == (2, f"meshobs exporter: error: {path}: entry 0: target "
                                                          "'http://***@127.0.0.1:19000/stats/prometheus': user info is not allowed")


def test_workloads_beyond_the_cap_are_not_scraped_and_counted(processes, tmp_path, proxies):
    """With --max-workloads 2 and three workloads, the first two in label order are scraped and the third is counted as dropped each cycle."""
    good = {"/stats/prometheus": hostile.envoy(), "/certs": hostile.certs_json(GOOD_EXPIRY)}
    ports = {name: proxies.add(hostile.by_path(good)) for name in ("a", "b", "c")}
    exporter = start_exporter(processes, tmp_path, "--targets-file", str(targets_file(tmp_path, ports)),
                              "--scrape-interval", "100ms", "--max-workloads", "2")
    wait_until(lambda: exporter.value("meshobs_workloads_dropped_total") >= 3, what="drops in several cycles")
    workloads = {dict(items)["workload"] for (name, items) in exporter.samples() if name == "meshobs_target_up"}
    assert workloads == {"a", "b"}
    assert {port for port, _ in proxies.requests} == {ports["a"], ports["b"]}
