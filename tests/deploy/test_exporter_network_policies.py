"""The exporter's and Fluentd's rendered NetworkPolicies, evaluated with Kubernetes' semantics
(tests/support/netpol.py): the exporter reaches only what it needs, and only the exporter's
namespace reaches Fluentd's forward input."""

from __future__ import annotations

from tests.deploy.conftest import documents
from tests.support.netpol import Cluster, External, Pod

NAMESPACES = {name: {} for name in ("meshobs", "monitoring", "kube-system", "logging", "observability", "shop",
                                    "istio-system")}
EXPORTER = Pod("meshobs", "exporter-0", "10.0.0.2", {"app.kubernetes.io/name": "meshobs-exporter"}, (("metrics", 9942, "TCP"),))
PROMETHEUS = Pod("monitoring", "prometheus-0", "10.0.0.3")
DNS = Pod("kube-system", "coredns-1", "10.0.0.4", {"k8s-app": "kube-dns"}, (("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")))
FLUENTD = Pod("logging", "fluentd-x", "10.0.0.5", {"app.kubernetes.io/name": "fluentd"}, (("forward", 24224, "TCP"),))
COLLECTOR = Pod("observability", "otel-collector-1", "10.0.0.6", {"app.kubernetes.io/name": "otel-collector"})
SIDECAR = Pod("shop", "cart-1", "10.0.1.7", {"app": "cart"})
INTRUDER = Pod("shop", "evil", "10.0.1.8", {"app.kubernetes.io/name": "meshobs-exporter"})
ZTUNNEL = Pod("istio-system", "ztunnel-x", "10.0.0.9", {"app": "ztunnel"}, (("ztunnel-stats", 15020, "TCP"),))
FAKE_ZTUNNEL = Pod("shop", "ztunnel-y", "10.0.1.9", {"app": "ztunnel"}, (("ztunnel-stats", 15020, "TCP"),))
API_SERVER = External("172.18.0.2", "kube-apiserver")


def test_the_exporter_reaches_only_dns_the_api_the_proxies_fluentd_and_otlp(out):
    """Egress: DNS, the API server's ports, the meshes' proxy metrics ports (not a port a pod names), ztunnels' 15020 in istio-system only, Fluentd forward, OTLP; nothing else."""
    policies = documents(out / "deploy/exporter/base/networkpolicy.yaml")
    policies += [d for d in documents(out / "collectors/istio/fluentd/fluentd.yaml") if d["kind"] == "NetworkPolicy"]
    cluster = Cluster(NAMESPACES, [EXPORTER, PROMETHEUS, DNS, FLUENTD, COLLECTOR, SIDECAR, INTRUDER, ZTUNNEL, FAKE_ZTUNNEL],
                      policies)
    allowed = [(DNS, 53, "UDP"), (DNS, 53, "TCP"), (API_SERVER, 443, "TCP"), (API_SERVER, 6443, "TCP"),
               (SIDECAR, 15090, "TCP"), (SIDECAR, 4191, "TCP"), (SIDECAR, 20200, "TCP"), (FLUENTD, 24224, "TCP"),
               (COLLECTOR, 4317, "TCP"), (COLLECTOR, 4318, "TCP"), (ZTUNNEL, 15020, "TCP")]
    denied = [(FAKE_ZTUNNEL, 15020, "TCP"), (SIDECAR, 15020, "TCP"), (ZTUNNEL, 15000, "TCP"), (SIDECAR, 19000, "TCP"), (SIDECAR, 15000, "TCP"), (External("203.0.113.9"), 80, "TCP"),
              (DNS, 9153, "TCP"), (COLLECTOR, 9411, "TCP"), (FLUENTD, 9880, "TCP"), (PROMETHEUS, 9090, "TCP")]
    assert [(d.name, port) for d, port, proto in allowed if not cluster.allowed(EXPORTER, d, port, proto)] == []
    assert [(d.name, port) for d, port, proto in denied if cluster.allowed(EXPORTER, d, port, proto)] == []
    # ingress: Prometheus's namespace only; Fluentd's forward input: the exporter's namespace only
    assert cluster.allowed(PROMETHEUS, EXPORTER, 9942) and not cluster.allowed(SIDECAR, EXPORTER, 9942)
    assert not cluster.allowed(INTRUDER, FLUENTD, 24224) and not cluster.allowed(SIDECAR, FLUENTD, 24224)
