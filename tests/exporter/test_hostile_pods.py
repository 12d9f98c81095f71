"""Hostile pods against the real exporter process with the list/watch test server: whatever one
pod's annotations, labels or fields are, the others are discovered, scraped and counted exactly."""

from __future__ import annotations

import os


from tests.exporter import faults
from tests.exporter.kube_api import KubeApi, pod
from tests.exporter.running import start_exporter
from tests.support.procs import wait_until

CONSUL = {"consul.hashicorp.com/connect-inject-status": "injected"}
PORT = "consul.hashicorp.com/prometheus-scrape-port"
PATH = "consul.hashicorp.com/prometheus-scrape-path"


def good_pod(name: str, port: int, **kwargs) -> dict:
    return pod(f"{name}-0", "shop", "127.0.0.1", {**CONSUL, PORT: str(port)}, ("StatefulSet", name), **kwargs)


def hostile_pods(port: int) -> list:
    evil = {"owner": ("StatefulSet", "evil")}
    not_a_mapping = pod("evil-annotations", "shop", "127.0.0.1", CONSUL)
    not_a_mapping["metadata"]["annotations"] = ["x"]
    return [
        pod("evil-port", "shop", "127.0.0.1", {**CONSUL, PORT: "99999"}, **evil),
        pod("evil-word", "shop", "127.0.0.1", {**CONSUL, PORT: "abc"}, **evil),
        pod("evil-userinfo", "shop", "127.0.0.1", {**CONSUL, PORT: "1@evil.example:80"}, **evil),
        pod("evil-path", "shop", "127.0.0.1", {**CONSUL, PORT: str(port), PATH: "@evil.example/metrics"}, **evil),
        pod("evil-host", "shop", "evil.example", {**CONSUL, PORT: str(port)}, **evil),
        not_a_mapping,
        ["not", "a", "pod"],
    ]


def test_hostile_pods_are_skipped_logged_once_and_counted_while_the_others_are_scraped_exactly(processes, tmp_path, proxies):
    """Bad ports, user info, paths, hosts and malformed objects are rejected per pod (counted and logged once per change); every good pod is scraped and counted exactly."""
    good_ports = [proxies.add(faults.good()) for _ in range(2)]
    kube = KubeApi(tmp_path, [good_pod("cart", good_ports[0]), *hostile_pods(good_ports[1]),
                              good_pod("pay", good_ports[1], labels={"app": "cart"})])
    try:
        exporter = start_exporter(processes, tmp_path, "--kubernetes", "--scrape-interval", "100ms",
                                  "--scrape-timeout", "500ms", env={**os.environ, **kube.env()})
        rejected = {"bad_port": 3, "bad_path": 1, "bad_address": 1, "bad_object": 2}
        for workload in ("cart", "pay"):
            labels = {"mesh": "consul", "namespace": "shop", "workload": workload}
            assert exporter.value("meshobs_target_up", **labels) == 1
            assert exporter.value("meshobs_tls_handshakes_total", **labels) == 7
            assert exporter.value("meshobs_authz_denied_total", **labels) == 3
        assert {reason: exporter.value("meshobs_discovery_rejected_total", reason=reason) for reason in rejected} == rejected

        # a re-list (the watch ended) sees the same pods: nothing more is counted or logged
        wait_until(lambda: kube.watches_opened == 1, what="a watch")
        kube.close_watches()
        wait_until(lambda: kube.watches_opened == 2, what="a list and a watch again")
        # a changed pod is news: logged and counted again
        kube.push("MODIFIED", pod("evil-port", "shop", "127.0.0.1", {**CONSUL, PORT: "65536"}, ("StatefulSet", "evil")))
        wait_until(lambda: exporter.value("meshobs_discovery_rejected_total", reason="bad_port") == 4, what="the change counted")
        assert {reason: exporter.value("meshobs_discovery_rejected_total", reason=reason) for reason in rejected} == {
            **rejected, "bad_port": 4}
        log = exporter.process.log()
        assert log.count("pod 'shop'/'evil-port' skipped (bad_port: port '99999' is not an integer 1-65535)") == 1
        assert log.count("pod 'shop'/'evil-port' skipped (bad_port: port '65536' is not an integer 1-65535)") == 1
        assert log.count("pod 'shop'/'evil-path' skipped (bad_path: path '@evil.example/metrics' is not one of "
                         "/metrics, /stats/prometheus)") == 1
        instances = {dict(items)["instance"] for (name, items) in exporter.samples() if name == "meshobs_target_up"}
        assert instances == {f"127.0.0.1:{port}" for port in good_ports}
        assert {line for _, line in proxies.requests} == {"GET /metrics HTTP/1.1"}
        assert exporter.value("meshobs_tls_handshakes_total", mesh="consul", namespace="shop", workload="evil") is None
    finally:
        kube.stop()


def test_pods_are_listed_page_by_page_and_a_rotated_api_ca_is_trusted_at_the_next_connection(processes, tmp_path, proxies):
    """1,200 pods come in pages of 500 (running pods only); after the API server's CA rotates, the exporter lists and watches again with the new ca.crt."""
    port = proxies.add(faults.good())
    pending = [pod(f"idle-{i}", "shop", "", CONSUL, ("StatefulSet", "idle"), phase="Pending") for i in range(200)]
    plain = [pod(f"plain-{i}", "shop", f"10.1.{i // 250}.{i % 250}") for i in range(1199)]
    kube = KubeApi(tmp_path, [*pending, *plain, good_pod("cart", port)])
    try:
        exporter = start_exporter(processes, tmp_path, "--kubernetes", "--scrape-interval", "100ms",
                                  "--scrape-timeout", "500ms", env={**os.environ, **kube.env()})
        assert exporter.value("meshobs_target_up", workload="cart") == 1
        lists = [path for _, path, _ in kube.requests if "watch=1" not in path]
        assert lists == ["/api/v1/pods?limit=500&fieldSelector=status.phase%3DRunning",
                         "/api/v1/pods?limit=500&fieldSelector=status.phase%3DRunning&continue=500",
                         "/api/v1/pods?limit=500&fieldSelector=status.phase%3DRunning&continue=1000"]

        wait_until(lambda: kube.watches_opened == 1, what="a watch")
        kube.rotate_ca()
        kube.close_watches()
        wait_until(lambda: kube.watches_opened == 2, timeout=15, what="a watch over the rotated CA")
        kube.push("ADDED", good_pod("pay", port))
        wait_until(lambda: exporter.value("meshobs_target_up", workload="pay") == 1, what="a pod watched after the rotation")
    finally:
        kube.stop()


def test_churning_uniquely_named_pods_leave_no_series_behind(processes, tmp_path, proxies):
    """Fifty bare pods created and deleted one after another: each workload's series go with its pod, so the series count comes back to the steady fleet's."""
    port = proxies.add(faults.good())
    kube = KubeApi(tmp_path, [good_pod("cart", port)])
    try:
        exporter = start_exporter(processes, tmp_path, "--kubernetes", "--scrape-interval", "100ms",
                                  "--scrape-timeout", "500ms", env={**os.environ, **kube.env()})

        def meshobs_series() -> int:
            return sum(name.startswith("meshobs_") for name, _ in exporter.samples())

        steady = meshobs_series()
        wait_until(lambda: kube.watches_opened == 1, what="a watch")
        for i in range(50):
            churned = pod(f"job-{i}", "shop", "127.0.0.1", {**CONSUL, PORT: str(port)})
            kube.push("ADDED", churned)
            kube.push("DELETED", churned)
        kube.push("ADDED", pod("last", "shop", "127.0.0.1", {**CONSUL, PORT: str(port)}))
        wait_until(lambda: exporter.value("meshobs_target_up", workload="pod/last") == 1, what="the last pod scraped")
        kube.push("DELETED", pod("last", "shop", "127.0.0.1", {**CONSUL, PORT: str(port)}))
        wait_until(lambda: exporter.value("meshobs_target_up", workload="pod/last") is None, what="the last pod gone")
        assert meshobs_series() == steady
        assert exporter.value("meshobs_tls_handshakes_total", workload="cart") == 7
    finally:
        kube.stop()


def test_a_pod_with_large_annotations_arrives_over_the_watch_without_restarting_it(processes, tmp_path, proxies):
    """A watched pod object of 600 kB (the API server stores up to 1.5 MB; aiohttp's own line reader stops at 512 kB) is taken on the same watch."""
    port = proxies.add(faults.good())
    kube = KubeApi(tmp_path, [])
    try:
        exporter = start_exporter(processes, tmp_path, "--kubernetes", "--scrape-interval", "100ms",
                                  env={**os.environ, **kube.env()})
        wait_until(lambda: kube.watches_opened == 1, what="a watch")
        big = pod("big-0", "shop", "127.0.0.1", {**CONSUL, PORT: str(port)}, ("StatefulSet", "big"))
        big["spec"]["containers"][0]["env"] = [{"name": f"V{i}", "value": "x" * 1000} for i in range(600)]
        kube.push("ADDED", big)
        wait_until(lambda: exporter.value("meshobs_target_up", workload="big") == 1, what="the big pod scraped")
        assert kube.watches_opened == 1
        assert "retrying" not in exporter.process.log()
    finally:
        kube.stop()
