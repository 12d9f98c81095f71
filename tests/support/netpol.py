"""An in-process Kubernetes NetworkPolicy evaluator (networking.k8s.io/v1), for tests.

Semantics, as the Kubernetes documentation and API reference define them:
- A pod is isolated for a direction once any policy in its namespace selects it (`podSelector`)
  with that direction in `policyTypes`; an unisolated direction allows everything.
- `policyTypes` absent means Ingress, plus Egress when the policy has an `egress` section.
- An isolated direction allows exactly the union of the rules of the policies selecting the pod.
  A rule with no `from`/`to` (or an empty list) matches every peer; with no `ports` every port.
- A peer with `podSelector` only: pods of the policy's namespace; `namespaceSelector` only: every
  pod of the matching namespaces; both in one peer: pods matching the pod selector *in* namespaces
  matching the namespace selector (AND); separate peers are ORed. `ipBlock`: addresses in `cidr`
  and not in `except` (here applied to pod addresses too, as most implementations do).
- A port is a number, or a name resolved against the destination pod's container ports (for
  egress too); `endPort` makes a range; `protocol` defaults to TCP.
- A connection needs both the source's egress and the destination's ingress to allow it; replies
  are always allowed. Traffic from the pod's own node (kubelet probes) is not modelled.
Malformed policies raise ValueError instead of being read generously.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Iterable

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
DIRECTIONS = ("Ingress", "Egress")
_PEER_KEYS = {"podSelector", "namespaceSelector", "ipBlock"}


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    ip: str
    labels: dict[str, str] = field(default_factory=dict)
    # container ports: (name or "", number, protocol)
    ports: tuple[tuple[str, int, str], ...] = ()


@dataclass(frozen=True)
class External:
    """An address outside the pod network (the API server, a host); no policy of its own."""

    ip: str
    name: str = ""


def matches_selector(selector: dict | None, labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector: matchLabels AND every matchExpression; {} selects everything."""
    if selector is None:
        raise ValueError("a selector that is absent selects nothing here; use {} for everything")
    unknown = set(selector) - {"matchLabels", "matchExpressions"}
    if unknown:
        raise ValueError(f"unknown selector fields {sorted(unknown)}")
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator in ("In", "NotIn") and not values:
            raise ValueError(f"{operator} needs values")
        if operator in ("Exists", "DoesNotExist") and values:
            raise ValueError(f"{operator} takes no values")
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"unknown operator {operator!r}")
    return True


class Cluster:
    def __init__(self, namespaces: dict[str, dict[str, str]], pods: Iterable[Pod] = (), policies: Iterable[dict] = ()):
        # Kubernetes sets the name label on every namespace; users cannot change it.
        self.namespaces = {name: {**labels, NAMESPACE_NAME_LABEL: name} for name, labels in namespaces.items()}
        self.pods = list(pods)
        self.policies: list[dict] = []
        for pod in self.pods:
            if pod.namespace not in self.namespaces:
                raise ValueError(f"pod {pod.name} is in unknown namespace {pod.namespace}")
        self.apply(*policies)

    def apply(self, *policies: dict) -> None:
        for policy in policies:
            if policy.get("apiVersion") != "networking.k8s.io/v1" or policy.get("kind") != "NetworkPolicy":
                raise ValueError(f"not a NetworkPolicy: {policy.get('apiVersion')} {policy.get('kind')}")
            namespace = policy["metadata"].get("namespace")
            if namespace not in self.namespaces:
                raise ValueError(f"policy {policy['metadata']['name']} has no known namespace ({namespace!r})")
            spec = policy["spec"]
            if "podSelector" not in spec:
                raise ValueError("spec.podSelector is required")
            for kind in self._types(spec):
                if kind not in DIRECTIONS:
                    raise ValueError(f"unknown policyType {kind!r}")
            self.policies.append(policy)

    @staticmethod
    def _types(spec: dict) -> list[str]:
        if "policyTypes" in spec:
            return list(spec["policyTypes"])
        return ["Ingress"] + (["Egress"] if "egress" in spec else [])

    def _selecting(self, pod: Pod, direction: str) -> list[dict]:
        return [
            policy for policy in self.policies
            if policy["metadata"]["namespace"] == pod.namespace
            and direction in self._types(policy["spec"])
            and matches_selector(policy["spec"]["podSelector"], pod.labels)
        ]

    def _peer_matches(self, peer: dict, policy_namespace: str, other: Pod | External) -> bool:
        unknown = set(peer) - _PEER_KEYS
        if unknown or not peer:
            raise ValueError(f"bad peer {peer!r}")
        if "ipBlock" in peer:
            if len(peer) > 1:
                raise ValueError("ipBlock cannot be combined with selectors in one peer")
            block = peer["ipBlock"]
            address = ipaddress.ip_address(other.ip)
            network = ipaddress.ip_network(block["cidr"], strict=False)
            if address.version != network.version or address not in network:
                return False
            return not any(
                address.version == ipaddress.ip_network(e, strict=False).version and address in ipaddress.ip_network(e, strict=False)
                for e in block.get("except") or []
            )
        if isinstance(other, External):
            return False  # selectors only ever select pods
        if "namespaceSelector" in peer:
            namespace_ok = matches_selector(peer["namespaceSelector"], self.namespaces[other.namespace])
        else:
            namespace_ok = other.namespace == policy_namespace
        pod_ok = matches_selector(peer["podSelector"], other.labels) if "podSelector" in peer else True
        return namespace_ok and pod_ok

    @staticmethod
    def _port_matches(rule_port: dict, destination: Pod | External, port: int, protocol: str) -> bool:
        unknown = set(rule_port) - {"port", "protocol", "endPort"}
        if unknown:
            raise ValueError(f"unknown port fields {sorted(unknown)}")
        if rule_port.get("protocol", "TCP") != protocol:
            return False
        wanted = rule_port.get("port")
        if wanted is None:
            return True  # every port of that protocol
        if isinstance(wanted, str):
            if "endPort" in rule_port:
                raise ValueError("endPort needs a numeric port")
            if isinstance(destination, External):
                return False
            return any(name == wanted and number == port and proto == protocol for name, number, proto in destination.ports)
        end = rule_port.get("endPort", wanted)
        if end < wanted:
            raise ValueError("endPort below port")
        return wanted <= port <= end

    def _direction_allows(self, pod: Pod, direction: str, other: Pod | External, destination: Pod | External, port: int, protocol: str) -> bool:
        policies = self._selecting(pod, direction)
        if not policies:
            return True
        section, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        for policy in policies:
            for rule in policy["spec"].get(section) or []:
                unknown = set(rule) - {peers_key, "ports"}
                if unknown:
                    raise ValueError(f"unknown {section} rule fields {sorted(unknown)}")
                peers = rule.get(peers_key) or []
                if peers and not any(self._peer_matches(peer, policy["metadata"]["namespace"], other) for peer in peers):
                    continue
                ports = rule.get("ports") or []
                if ports and not any(self._port_matches(p, destination, port, protocol) for p in ports):
                    continue
                return True
        return False

    def egress_allowed(self, source: Pod, destination: Pod | External, port: int, protocol: str = "TCP") -> bool:
        """Whether the source's own policies let it open this connection."""
        return self._direction_allows(source, "Egress", destination, destination, port, protocol)

    def ingress_allowed(self, source: Pod, destination: Pod, port: int, protocol: str = "TCP") -> bool:
        """Whether the destination's policies admit this connection."""
        return self._direction_allows(destination, "Ingress", source, destination, port, protocol)

    def allowed(self, source: Pod, destination: Pod | External, port: int, protocol: str = "TCP") -> bool:
        """Whether a new connection from `source` to `destination:port` is let through (both ends agree)."""
        egress = self.egress_allowed(source, destination, port, protocol)
        if isinstance(destination, External):
            return egress
        return egress and self.ingress_allowed(source, destination, port, protocol)
