"""A pod becomes a target only with validated annotations, and belongs to its controller."""

from __future__ import annotations

import pytest

from meshobs.exporter.pods import PodRejected, pod_target
from tests.exporter.kube_api import pod

CONSUL = {"consul.hashicorp.com/connect-inject-status": "injected"}
PORT = "consul.hashicorp.com/prometheus-scrape-port"
PATH = "consul.hashicorp.com/prometheus-scrape-path"


@pytest.mark.parametrize("annotations, ip, reason, message", [
    ({PORT: "99999"}, "10.0.0.1", "bad_port", "port '99999' is not an integer 1-65535"),
    ({PORT: "abc"}, "10.0.0.1", "bad_port", "port 'abc' is not an integer 1-65535"),
    ({PORT: "0"}, "10.0.0.1", "bad_port", "port '0' is not an integer 1-65535"),
    ({PORT: "٣٣"}, "10.0.0.1", "bad_port", "port '٣٣' is not an integer 1-65535"),
    ({PORT: "1@evil.example:80"}, "10.0.0.1", "bad_port", "port '1@evil.example:80' is not an integer 1-65535"),
    ({PATH: "@evil.example/metrics"}, "10.0.0.1", "bad_path", "path '@evil.example/metrics' is not one of /metrics, /stats/prometheus"),
    ({PATH: "/quitquitquit"}, "10.0.0.1", "bad_path", "path '/quitquitquit' is not one of /metrics, /stats/prometheus"),
    ({PATH: "/certs"}, "10.0.0.1", "bad_path", "path '/certs' is not one of /metrics, /stats/prometheus"),
    ({PATH: "/metrics?x=1"}, "10.0.0.1", "bad_path", "path '/metrics?x=1' is not one of /metrics, /stats/prometheus"),
    ({PATH: "x" * 500}, "10.0.0.1", "bad_path", f"path {repr('x' * 500)[:64]}… is not one of /metrics, /stats/prometheus"),
    ({}, "evil.example", "bad_address", "pod IP 'evil.example' is not an IP address"),
    ({}, "u:p@10.0.0.1", "bad_address", "pod IP 'u:p@10.0.0.1' is not an IP address"),
])
def test_hostile_annotations_and_addresses_are_rejected_with_a_reason(annotations, ip, reason, message):
    """Ports other than integers 1-65535, paths other than the metrics paths and hosts other than an IP are refused."""
    with pytest.raises(PodRejected) as error:
        pod_target(pod("evil", "shop", ip, {**CONSUL, **annotations}, ("StatefulSet", "evil")))
    assert (error.value.reason, str(error.value)) == (reason, message)


def test_a_valid_port_and_path_annotation_and_an_ipv6_pod():
    """An integer port and an allowed path are used as given, on the pod's own (IPv6) address."""
    target = pod_target(pod("db-0", "shop", "fd00::7", {**CONSUL, PORT: "19000", PATH: "/stats/prometheus"},
                            ("StatefulSet", "db")))
    assert (target.url, target.instance) == ("http://[fd00::7]:19000/stats/prometheus", "[fd00::7]:19000")


@pytest.mark.parametrize("owner, labels, name, workload", [
    (("ReplicaSet", "checkout-5d8f7"), {"pod-template-hash": "5d8f7"}, "checkout-5d8f7-abcde", "checkout"),
    (("ReplicaSet", "checkout-5d8f7"), {"pod-template-hash": "other"}, "checkout-5d8f7-abcde", "checkout-5d8f7"),
    (("StatefulSet", "web"), {}, "web-0", "web"),
    (("DaemonSet", "node-agent"), {}, "node-agent-x7k2p", "node-agent"),
    (("Job", "backup-29012345"), {}, "backup-29012345-q8x2z", "backup"),
    (("Job", "migrate"), {}, "migrate-q8x2z", "migrate"),
    (None, {"app": "checkout", "app.kubernetes.io/name": "checkout"}, "debug", "pod/debug"),
])
def test_the_workload_is_the_controller_never_a_label(owner, labels, name, workload):
    """ReplicaSet → Deployment, Job → CronJob, other controllers by name; a bare pod is pod/<name> whatever its labels."""
    assert pod_target(pod(name, "shop", "10.0.0.1", CONSUL, owner, labels)).workload == workload


@pytest.mark.parametrize("mangle, message", [
    (lambda p: p["metadata"].update(annotations=["x"]), "annotations is not a mapping"),
    (lambda p: p["metadata"].update(namespace="Shop!"), "namespace 'Shop!' is not a Kubernetes name"),
    (lambda p: p["metadata"].update(name="a/b", ownerReferences=[]), "pod name 'a/b' is not a Kubernetes name"),
    (lambda p: p["metadata"].update(ownerReferences="x"), "ownerReferences is not a list"),
    (lambda p: p["spec"].update(containers={"a": 1}), "spec.containers is not a list"),
])
def test_malformed_pod_objects_are_rejected_as_bad_object(mangle, message):
    """Fields of the wrong type or names Kubernetes would refuse are rejected, not raised as something else."""
    hostile = pod("evil", "shop", "10.0.0.1", CONSUL)
    mangle(hostile)
    with pytest.raises(PodRejected) as error:
        pod_target(hostile)
    assert (error.value.reason, str(error.value)) == ("bad_object", message)
