"""Security events reach a real forward-protocol receiver, and a dead Fluentd never slows scraping."""

from __future__ import annotations

import json
import time

import pytest
from prometheus_client import CollectorRegistry

from meshobs.exporter.events import FluentdEvents
from meshobs.exporter.state import Event
from tests.exporter import faults, hostile
from tests.exporter.forward import ForwardReceiver
from tests.exporter.running import start_exporter
from tests.support.procs import free_port, wait_until

WORKLOAD = {"mesh": "consul", "namespace": "shop", "workload": "cart"}


class MovingProxy:
    """An Envoy exposition whose counters the test moves."""

    def __init__(self, expires_at: int):
        self.denied = 0
        self.untrusted = 0
        self.bursting = False
        self.expires_at = expires_at

    def body(self) -> bytes:
        if self.bursting:
            self.denied += 50
        return (f"envoy_http_rbac_denied{{}} {self.denied}\n"
                f"envoy_listener_ssl_fail_verify_error{{}} {self.untrusted}\n"
                f'envoy_listener_ssl_certificate_expiration_unix_time_seconds{{envoy_tls_certificate="unnamed_cert_1"}} {self.expires_at}\n'
                ).encode()


@pytest.fixture
def receiver():
    forward = ForwardReceiver()
    yield forward
    forward.stop()


@pytest.fixture
def servers():
    fleet = faults.FaultServers()
    yield fleet
    fleet.stop()


def test_burst_new_reason_and_expiring_cert_are_sent_as_tagged_records(processes, tmp_path, receiver, servers):
    """A denial burst (start and end), a first untrusted_cert failure and a leaf with under a tenth of its lifetime left (1h of Consul's 72h) become meshobs.security.* records."""
    expires_at = int(time.time()) + 3600
    proxy = MovingProxy(expires_at)
    port = servers.add(faults.good(proxy.body))
    exporter = start_exporter(processes, tmp_path, "--target", f"consul/shop/cart=http://127.0.0.1:{port}",
                              "--scrape-interval", "100ms", "--fluentd", receiver.address)
    wait_until(lambda: receiver.tagged("meshobs.security.cert_expiring"), what="cert_expiring")
    [cert] = receiver.tagged("meshobs.security.cert_expiring")
    assert {k: cert[k] for k in ("mesh", "namespace", "workload", "cert", "expires_at")} == {**WORKLOAD, "cert": "leaf", "expires_at": expires_at}

    proxy.untrusted = 3
    [reason] = wait_until(lambda: receiver.tagged("meshobs.security.tls_failure_new_reason"), what="new reason")
    assert reason == {**WORKLOAD, "reason": "untrusted_cert", "failures": 3}

    proxy.bursting = True
    [started] = wait_until(lambda: receiver.tagged("meshobs.security.authz_burst_started"), what="burst started")
    assert {k: started[k] for k in WORKLOAD} == WORKLOAD and started["denied_per_second"] >= 1
    assert exporter.value("meshobs_authz_denied_burst", **WORKLOAD) == 1
    proxy.bursting = False
    [ended] = wait_until(lambda: receiver.tagged("meshobs.security.authz_burst_ended"), what="burst ended")
    assert ended == {**WORKLOAD, "denied_per_second": 0.0}
    assert exporter.value("meshobs_authz_denied_burst", **WORKLOAD) == 0
    assert exporter.value("meshobs_authz_denied_bursts_total", **WORKLOAD) == 1
    assert exporter.value("meshobs_events_dropped_total") is None


def test_a_dead_fluentd_drops_and_counts_events_and_scraping_goes_on(processes, tmp_path, servers):
    """With nothing listening at --fluentd, events are counted as dropped and every scrape still succeeds."""
    proxy = MovingProxy(int(time.time()) + 3600)
    port = servers.add(faults.good(proxy.body))
    exporter = start_exporter(processes, tmp_path, "--target", f"consul/shop/cart=http://127.0.0.1:{port}",
                              "--scrape-interval", "100ms", "--fluentd", f"127.0.0.1:{free_port()}")
    wait_until(lambda: exporter.value("meshobs_events_dropped_total", kind="cert_expiring", reason="send_failed") == 1,
               what="the dropped event counted")
    assert exporter.value("meshobs_target_up", **WORKLOAD) == 1
    assert exporter.value("meshobs_scrape_duration_seconds", **WORKLOAD) < 0.5


def test_a_blackholed_fluentd_never_blocks_the_caller(tmp_path):
    """Against an address that never answers, submitting 5,000 events takes milliseconds and the overflow is counted."""
    registry = CollectorRegistry()
    # TEST-NET-1 (RFC 5737): never routed, so the sender thread blocks in connect for its timeout
    events = FluentdEvents("192.0.2.1", 24224, registry, queue_size=100, timeout=2.0)
    started = time.monotonic()
    for _ in range(5000):
        events.submit(Event("authz_burst_started", dict(WORKLOAD)))
    elapsed = time.monotonic() - started
    assert elapsed < 0.5
    dropped = registry.get_sample_value("meshobs_events_dropped_total", {"kind": "authz_burst_started", "reason": "queue_full"})
    # at most the queue (100) and the few the sender thread took out are not dropped at once
    assert dropped > 4800
    events.close(timeout=0.1)


class RotatingAdmin:
    """An Envoy admin whose leaf certificate the test rotates: the expiry in the stats and, with its
    notBefore, in /certs."""

    def __init__(self, valid_from: int, lifetime: int):
        self.valid_from, self.lifetime = valid_from, lifetime

    def rotate(self, valid_from: int) -> None:
        self.valid_from = valid_from

    def _iso(self, ts: int) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))

    def stats(self) -> bytes:
        expires = self.valid_from + self.lifetime
        return (f'envoy_listener_ssl_certificate_expiration_unix_time_seconds{{envoy_tls_certificate="unnamed_cert_1"}} '
                f'{expires}\n').encode()

    def certs(self) -> bytes:
        chain = [{"valid_from": self._iso(self.valid_from), "expiration_time": self._iso(self.valid_from + self.lifetime)}]
        return json.dumps({"certificates": [{"cert_chain": chain, "ca_cert": []}]}).encode()


def test_certs_is_asked_again_only_when_the_stats_show_a_rotation(processes, tmp_path, servers):
    """The notBefore comes from /certs once per certificate: while the stats' expiry stays the same /certs is not asked again; a rotation is read at the next scrape."""
    now = int(time.time())
    admin = RotatingAdmin(now - 3600, 72 * 3600)
    port = servers.add(hostile.by_path({"/stats/prometheus": admin.stats, "/certs": admin.certs}))
    exporter = start_exporter(processes, tmp_path, "--target", f"consul/shop/cart=http://127.0.0.1:{port}/stats/prometheus",
                              "--scrape-interval", "100ms")

    def asked(path: str) -> int:
        return sum(1 for _, line in servers.requests if line.split(" ")[1].partition("?")[0] == path)

    wait_until(lambda: exporter.value("meshobs_cert_not_before_timestamp_seconds", **WORKLOAD, cert="leaf") == now - 3600,
               what="the first notBefore")
    scrapes = asked("/stats/prometheus")
    wait_until(lambda: asked("/stats/prometheus") >= scrapes + 5, what="five more scrapes")
    assert asked("/certs") == 1
    admin.rotate(now)
    wait_until(lambda: exporter.value("meshobs_cert_not_before_timestamp_seconds", **WORKLOAD, cert="leaf") == now,
               what="the rotated certificate's notBefore")
    assert exporter.value("meshobs_cert_expiry_timestamp_seconds", **WORKLOAD, cert="leaf") == now + 72 * 3600
    assert asked("/certs") == 2


def test_events_go_only_through_the_shared_key_handshake(processes, tmp_path, servers):
    """With --fluentd-shared-key-file, events reach a receiver that checks the key; a receiver with another key refuses the PING and one that cannot prove the key gets nothing; both count as send_failed."""
    key_file = tmp_path / "shared-key"
    key_file.write_text("s3cret-forward-key\n")
    right, wrong, impostor = (ForwardReceiver(b"s3cret-forward-key"), ForwardReceiver(b"another-key"),
                              ForwardReceiver(b"another-key", prove=False))
    try:
        for receiver in (right, wrong, impostor):
            proxy = MovingProxy(int(time.time()) + 3600)
            port = servers.add(faults.good(proxy.body))
            exporter = start_exporter(processes, tmp_path, "--target", f"consul/shop/cart=http://127.0.0.1:{port}",
                                      "--scrape-interval", "100ms", "--fluentd", receiver.address,
                                      "--fluentd-shared-key-file", str(key_file), name=f"exporter-{receiver.address}")
            if receiver is right:
                [cert] = wait_until(lambda: right.tagged("meshobs.security.cert_expiring"), what="an event over the handshake")
                assert cert["workload"] == "cart"
            else:
                wait_until(lambda: exporter.value("meshobs_events_dropped_total", kind="cert_expiring", reason="send_failed") == 1,
                           what="the refused event counted")
                assert receiver.records == []
        assert (right.refused, wrong.refused, impostor.refused) == (0, 1, 0)
    finally:
        for receiver in (right, wrong, impostor):
            receiver.stop()


def test_a_shared_key_file_that_cannot_be_read_stops_the_exporter(tmp_path):
    """A missing or empty key file is an error naming the file, before anything listens."""
    import subprocess
    import sys

    for path, reason in ((tmp_path / "missing", "No such file or directory"), (tmp_path / "empty", "empty")):
        if path.name == "empty":
            path.write_text("\n")
        result = subprocess.run([sys.executable, "-m", "meshobs", "exporter", "--listen", "127.0.0.1:0", "--target",
                                 "http://127.0.0.1:1", "--fluentd", "127.0.0.1:1", "--fluentd-shared-key-file", str(path)],
                                capture_output=True, text=True, timeout=30)
        assert (result.returncode, result.stderr.strip()) == (
            2, f"meshobs exporter: error: --fluentd-shared-key-file {path}: {reason}")
