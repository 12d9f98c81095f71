"""Certificate events from a real Envoy's own certificates: a leaf is news only when its rotation
has failed (little of its lifetime left), never at its normal age."""

from __future__ import annotations

import datetime as dt
import json

from cryptography import x509

from tests.exporter.forward import ForwardReceiver
from tests.exporter.running import start_exporter
from tests.support.envoy import EnvoyPKI, spiffe, start_envoy
from tests.support.pki import CA, NOW
from tests.support.procs import wait_until

DAY = dt.timedelta(hours=24)


def _pki(folder, issued_hours_ago: float) -> EnvoyPKI:
    """The usual test PKI, but the server's leaf lives 24h (as Istio's and Linkerd's) and was issued `issued_hours_ago`."""
    folder.mkdir()
    ca, other = CA(folder, "mesh-ca"), CA(folder, "other-ca")
    server = ca.issue("backend", spiffe("default", "backend"), dns=("localhost",), lifetime=DAY,
                      valid_from=NOW - dt.timedelta(hours=issued_hours_ago))
    return EnvoyPKI(ca=ca, server=server, allowed=ca.issue("frontend", spiffe("default", "frontend")),
                    denied=ca.issue("intruder", spiffe("other", "intruder")),
                    foreign=other.issue("stranger", spiffe("default", "frontend")), foreign_ca=other)


def test_only_a_leaf_with_little_of_its_lifetime_left_sends_a_cert_event(processes, tmp_path):
    """Of two 24h leaves, the one with 12h left (normal age) sends nothing and the one with 1h left (failed rotation) sends one cert_expiring record with its real notBefore."""
    envoys = {name: start_envoy(processes, tmp_path / name, pki=_pki(tmp_path / name, hours_ago))
              for name, hours_ago in (("fresh", 12), ("stale", 23))}
    targets = tmp_path / "targets.json"
    targets.write_text(json.dumps([
        {"targets": [f"127.0.0.1:{envoy.admin_port}"],
         "labels": {"mesh": "consul", "namespace": "default", "workload": name, "__metrics_path__": "/stats/prometheus"}}
        for name, envoy in envoys.items()]))
    receiver = ForwardReceiver()
    try:
        exporter = start_exporter(processes, tmp_path, "--targets-file", str(targets), "--scrape-interval", "100ms",
                                  "--fluentd", receiver.address)
        leaves = {name: x509.load_pem_x509_certificate(envoy.pki.server.cert.read_bytes()) for name, envoy in envoys.items()}
        for name, leaf in leaves.items():
            wait_until(lambda: exporter.value("meshobs_cert_not_before_timestamp_seconds", workload=name, cert="leaf")
                       == leaf.not_valid_before_utc.timestamp(), timeout=10, what=f"{name}'s notBefore")
        [event] = wait_until(lambda: receiver.tagged("meshobs.security.cert_expiring"), what="the stale leaf's event")
        # a later cycle has judged the fresh leaf too: its scrape duration has changed since
        durations: list[float] = []

        def another_cycle() -> bool:
            durations.append(exporter.value("meshobs_scrape_duration_seconds", workload="fresh"))
            return len(set(durations)) >= 3

        wait_until(another_cycle, timeout=10, what="two more scrapes of the fresh leaf's proxy")
        assert receiver.tagged("meshobs.security.cert_expiring") == [event]
        stale = leaves["stale"]
        assert {k: event[k] for k in ("workload", "cert", "expires_at", "not_before")} == {
            "workload": "stale", "cert": "leaf", "expires_at": int(stale.not_valid_after_utc.timestamp()),
            "not_before": int(stale.not_valid_before_utc.timestamp())}
        assert 0 < event["seconds_left"] <= 3600
    finally:
        receiver.stop()
