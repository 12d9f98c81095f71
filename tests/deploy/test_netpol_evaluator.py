"""The in-process NetworkPolicy evaluator (tests/support/netpol.py) against the rules of the
Kubernetes documentation, so that what the allow-scrapes tests conclude from it holds in a cluster."""

from __future__ import annotations

import pytest

from tests.support.netpol import Cluster, External, Pod, matches_selector

NAMESPACES = {"app": {"team": "shop"}, "mon": {"team": "obs"}, "other": {"team": "obs"}}
WEB = Pod("app", "web", "10.0.0.1", {"role": "web"}, (("http", 8080, "TCP"), ("metrics", 9090, "TCP")))
DB = Pod("app", "db", "10.0.0.2", {"role": "db"}, (("pg", 5432, "TCP"),))
PROM = Pod("mon", "prom", "10.0.1.1", {"role": "prometheus"})
GRAFANA = Pod("mon", "grafana", "10.0.1.2", {"role": "grafana"})
PROM_ELSEWHERE = Pod("other", "prom", "10.0.2.1", {"role": "prometheus"})
PODS = (WEB, DB, PROM, GRAFANA, PROM_ELSEWHERE)


def policy(namespace: str, spec: dict, name: str = "p") -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def cluster(*policies: dict) -> Cluster:
    return Cluster(NAMESPACES, PODS, policies)


def ingress_to_web(*rules: dict) -> dict:
    return policy("app", {"podSelector": {"matchLabels": {"role": "web"}}, "policyTypes": ["Ingress"], "ingress": list(rules)})


def test_without_policies_everything_is_allowed():
    """A pod no policy selects is not isolated in either direction."""
    assert cluster().allowed(GRAFANA, DB, 5432)


def test_selection_isolates_only_the_selected_pods_and_directions():
    """An Ingress policy with no rules denies all ingress to the pods it selects, leaves their egress and other pods alone."""
    c = cluster(ingress_to_web())
    assert not c.allowed(PROM, WEB, 8080)
    assert c.allowed(WEB, DB, 5432)
    assert c.allowed(PROM, DB, 5432)


def test_policy_types_default_to_ingress_plus_egress_when_an_egress_section_exists():
    """Without policyTypes a policy isolates Ingress, and Egress only if it has an egress section."""
    only_ingress = policy("app", {"podSelector": {}})
    assert not cluster(only_ingress).allowed(PROM, WEB, 8080) and cluster(only_ingress).allowed(WEB, PROM, 80)
    both = policy("app", {"podSelector": {}, "egress": []})
    assert not cluster(both).allowed(WEB, PROM, 80)


def test_namespace_and_pod_selector_in_one_peer_are_anded():
    """{namespaceSelector, podSelector} in one peer admits only those pods in those namespaces."""
    c = cluster(ingress_to_web({"from": [{"namespaceSelector": {"matchLabels": {"team": "obs"}},
                                          "podSelector": {"matchLabels": {"role": "prometheus"}}}]}))
    assert c.allowed(PROM, WEB, 8080) and c.allowed(PROM_ELSEWHERE, WEB, 8080)
    assert not c.allowed(GRAFANA, WEB, 8080) and not c.allowed(DB, WEB, 8080)


def test_separate_peers_are_ored():
    """[{namespaceSelector}, {podSelector}] admits all of those namespaces, or those pods of the policy's own namespace."""
    c = cluster(ingress_to_web({"from": [{"namespaceSelector": {"matchLabels": {"team": "obs"}}},
                                         {"podSelector": {"matchLabels": {"role": "prometheus"}}}]}))
    assert c.allowed(GRAFANA, WEB, 8080)  # any pod of an obs namespace
    assert not c.allowed(DB, WEB, 8080)


def test_a_pod_selector_alone_means_the_policys_own_namespace():
    """A podSelector-only peer never matches pods of other namespaces, whatever their labels."""
    c = cluster(ingress_to_web({"from": [{"podSelector": {"matchLabels": {"role": "prometheus"}}}]}))
    assert not c.allowed(PROM, WEB, 8080)
    assert c.allowed(Pod("app", "p2", "10.0.0.9", {"role": "prometheus"}), WEB, 8080)


def test_empty_namespace_selector_means_every_namespace():
    """namespaceSelector {} matches pods of all namespaces."""
    c = cluster(ingress_to_web({"from": [{"namespaceSelector": {}}], "ports": [{"port": 8080}]}))
    assert c.allowed(PROM, WEB, 8080) and c.allowed(DB, WEB, 8080) and not c.allowed(PROM, WEB, 9090)


def test_allows_are_the_union_of_every_selecting_policy():
    """Two policies selecting the same pod allow what either allows."""
    c = cluster(ingress_to_web({"from": [{"namespaceSelector": {"matchLabels": {"team": "obs"}}}], "ports": [{"port": 9090}]}),
                policy("app", {"podSelector": {}, "policyTypes": ["Ingress"],
                               "ingress": [{"from": [{"podSelector": {}}], "ports": [{"port": 8080}]}]}, "second"))
    assert c.allowed(PROM, WEB, 9090) and c.allowed(DB, WEB, 8080)
    assert not c.allowed(PROM, WEB, 8080) and not c.allowed(DB, WEB, 9090)


def test_rules_without_peers_or_ports_match_everything():
    """A rule with no `from` admits every source; with no `ports`, every port."""
    assert cluster(ingress_to_web({"ports": [{"port": 8080}]})).allowed(PROM, WEB, 8080)
    assert cluster(ingress_to_web({})).allowed(PROM, WEB, 1)


def test_named_ports_resolve_on_the_destination_pod():
    """A named port matches the destination container port of that name, and nothing on pods without it."""
    named = {"ports": [{"port": "metrics"}]}
    c = cluster(ingress_to_web(named), policy("app", {"podSelector": {"matchLabels": {"role": "db"}}, "policyTypes": ["Ingress"], "ingress": [named]}, "db"))
    assert c.allowed(PROM, WEB, 9090) and not c.allowed(PROM, WEB, 8080)
    assert not c.allowed(PROM, DB, 9090)


def test_port_ranges_and_protocols():
    """endPort makes an inclusive range; a port without protocol is TCP only."""
    c = cluster(ingress_to_web({"ports": [{"port": 9000, "endPort": 9100}]}))
    assert c.allowed(PROM, WEB, 9000) and c.allowed(PROM, WEB, 9100) and not c.allowed(PROM, WEB, 9101)
    assert not c.allowed(PROM, WEB, 9050, "UDP")


def test_both_the_source_egress_and_the_destination_ingress_must_allow():
    """An ingress allow does not help a source whose own egress is denied, nor the reverse."""
    egress_deny = policy("mon", {"podSelector": {}, "policyTypes": ["Egress"]})
    open_web = ingress_to_web({})
    assert not cluster(open_web, egress_deny).allowed(PROM, WEB, 8080)
    egress_allow = policy("mon", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"namespaceSelector": {}}]}]})
    assert not cluster(ingress_to_web(), egress_allow).allowed(PROM, WEB, 8080)
    assert cluster(open_web, egress_allow).allowed(PROM, WEB, 8080)


def test_ip_blocks_with_exceptions_and_external_addresses():
    """ipBlock admits addresses in cidr and not in except; selectors never match an address outside the pod network."""
    egress = policy("mon", {"podSelector": {}, "policyTypes": ["Egress"],
                            "egress": [{"to": [{"ipBlock": {"cidr": "172.20.0.0/16", "except": ["172.20.9.0/24"]}}]},
                                       {"to": [{"namespaceSelector": {}}]}]})
    c = cluster(egress)
    assert c.allowed(PROM, External("172.20.0.1"), 443)
    assert not c.allowed(PROM, External("172.20.9.1"), 443)
    assert not c.allowed(PROM, External("8.8.8.8"), 443)


def test_policies_of_another_namespace_select_nothing_here():
    """A policy selects pods of its own namespace only."""
    assert cluster(policy("mon", {"podSelector": {}, "policyTypes": ["Ingress"]})).allowed(DB, WEB, 8080)


def test_match_expressions():
    """In, NotIn, Exists and DoesNotExist behave as documented; matchLabels and expressions are ANDed."""
    labels = {"a": "1", "b": "2"}
    assert matches_selector({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "3"]}]}, labels)
    assert not matches_selector({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, labels)
    assert matches_selector({"matchExpressions": [{"key": "c", "operator": "NotIn", "values": ["1"]}]}, labels)
    assert matches_selector({"matchExpressions": [{"key": "b", "operator": "Exists"}]}, labels)
    assert not matches_selector({"matchExpressions": [{"key": "b", "operator": "DoesNotExist"}]}, labels)
    assert not matches_selector({"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "c", "operator": "Exists"}]}, labels)


def test_namespaces_carry_their_name_label():
    """Every namespace has kubernetes.io/metadata.name, as the API server sets it."""
    c = cluster(ingress_to_web({"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mon"}}}]}))
    assert c.allowed(PROM, WEB, 8080) and not c.allowed(PROM_ELSEWHERE, WEB, 8080)


@pytest.mark.parametrize("spec, message", [
    ({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]},
     "ipBlock cannot be combined with selectors in one peer"),
    ({"podSelector": {}, "ingress": [{"form": []}]}, "unknown ingress rule fields ['form']"),
    ({"podSelector": {}, "ingress": [{"ports": [{"port": "http", "endPort": 9}]}]}, "endPort needs a numeric port"),
])
def test_malformed_policies_are_refused(spec, message):
    """What the API server would reject, or this evaluator does not know, raises instead of being guessed."""
    with pytest.raises(ValueError) as error:
        cluster(policy("app", spec)).allowed(PROM, WEB, 8080)
    assert str(error.value) == message
