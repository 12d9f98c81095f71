"""Small models of where each mesh enforces authorization on a connection to a meshed pod, for
tests: what an Istio AuthorizationPolicy, Linkerd's policy resources and Consul intentions decide.

Facts modelled, each from the mesh's own code or documentation (not from meshobs):
- Istio: istio-iptables RETURNs inbound 15008, 15090, 15021 and 15020 before redirecting to the
  inbound listener (15006); AuthorizationPolicy is an RBAC filter on that listener only. Policy
  order: DENY before ALLOW; with no ALLOW policy everything else is allowed; an ALLOW policy
  without rules (`spec: {}`, "allow-nothing") matches nothing.
- Linkerd (policy.linkerd.io): a port without a Server gets the default inbound policy; a Server
  with HTTPRoutes serves only matching requests; an AuthorizationPolicy (targeting the route, the
  Server or the Namespace) admits a request when every one of its authentications holds; one whose
  references are missing is ignored; nothing admitted falls to the Server's accessPolicy.
- Consul (consul-k8s): the Prometheus scrape port (20200 by default) is excluded from
  transparent-proxy redirection, so intentions, enforced on the public listener, never see it.
Unsupported fields raise ValueError rather than being guessed.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from tests.support.netpol import Pod, matches_selector

ISTIO_UNCAPTURED_INBOUND_PORTS = frozenset({15008, 15090, 15021, 15020})
CONSUL_DEFAULT_SCRAPE_PORT = 20200
LINKERD_TRUST_DOMAIN = "cluster.local"


@dataclass(frozen=True)
class Caller:
    """Who connects: its address and, when meshed, its service account identity."""

    ip: str
    namespace: str
    service_account: str | None = None  # None: not meshed, no mTLS identity


# --- Istio -------------------------------------------------------------------------------------

def _istio_principal(caller: Caller) -> str | None:
    if caller.service_account is None:
        return None
    return f"cluster.local/ns/{caller.namespace}/sa/{caller.service_account}"


def _istio_rule_matches(rule: dict, caller: Caller, port: int, path: str) -> bool:
    unknown = set(rule) - {"from", "to"}
    if unknown:
        raise ValueError(f"unsupported AuthorizationPolicy rule fields {sorted(unknown)}")
    principal = _istio_principal(caller)

    def source_ok(source: dict) -> bool:
        unknown = set(source) - {"principals", "notPrincipals", "namespaces", "notNamespaces"}
        if unknown:
            raise ValueError(f"unsupported source fields {sorted(unknown)}")
        if "principals" in source and (principal is None or not any(_glob(p, principal) for p in source["principals"])):
            return False
        if "notPrincipals" in source and principal is not None and any(_glob(p, principal) for p in source["notPrincipals"]):
            return False
        # namespaces come from the peer certificate: a plaintext caller has none
        if "namespaces" in source and (principal is None or not any(_glob(n, caller.namespace) for n in source["namespaces"])):
            return False
        if "notNamespaces" in source and principal is not None and any(_glob(n, caller.namespace) for n in source["notNamespaces"]):
            return False
        return True

    def operation_ok(operation: dict) -> bool:
        unknown = set(operation) - {"ports", "notPorts", "paths", "notPaths"}
        if unknown:
            raise ValueError(f"unsupported operation fields {sorted(unknown)}")
        if "ports" in operation and str(port) not in operation["ports"]:
            return False
        if "notPorts" in operation and str(port) in operation["notPorts"]:
            return False
        if "paths" in operation and not any(_glob(p, path) for p in operation["paths"]):
            return False
        if "notPaths" in operation and any(_glob(p, path) for p in operation["notPaths"]):
            return False
        return True

    froms = rule.get("from") or []
    tos = rule.get("to") or []
    if froms and not any(source_ok(f["source"]) for f in froms):
        return False
    if tos and not any(operation_ok(t["operation"]) for t in tos):
        return False
    return True


def _glob(pattern: str, value: str) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return pattern == value


def istio_allows(policies: list[dict], pod: Pod, port: int, caller: Caller, path: str = "/", root_namespace: str = "istio-system") -> bool:
    """Whether the destination sidecar lets this request through to `port` of `pod`."""
    if port in ISTIO_UNCAPTURED_INBOUND_PORTS:
        return True  # never reaches the inbound listener, where the RBAC filter is
    applicable = []
    for policy in policies:
        if policy["kind"] != "AuthorizationPolicy" or not policy["apiVersion"].startswith("security.istio.io/"):
            raise ValueError(f"not an Istio AuthorizationPolicy: {policy['kind']}")
        namespace = policy["metadata"]["namespace"]
        spec = policy.get("spec") or {}
        unknown = set(spec) - {"selector", "action", "rules"}
        if unknown:
            raise ValueError(f"unsupported AuthorizationPolicy fields {sorted(unknown)}")
        if namespace not in (pod.namespace, root_namespace):
            continue
        selector = spec.get("selector")
        if selector and not matches_selector({"matchLabels": selector.get("matchLabels", {})}, pod.labels):
            continue
        applicable.append(spec)
    actions = [spec.get("action", "ALLOW") for spec in applicable]
    if any(action not in ("ALLOW", "DENY") for action in actions):
        raise ValueError(f"unsupported actions {actions}")
    rules_of = lambda action: [rule for spec in applicable if spec.get("action", "ALLOW") == action for rule in spec.get("rules") or []]
    if any(_istio_rule_matches(rule, caller, port, path) for rule in rules_of("DENY")):
        return False
    if "ALLOW" not in actions:
        return True
    return any(_istio_rule_matches(rule, caller, port, path) for rule in rules_of("ALLOW"))


# --- Linkerd -----------------------------------------------------------------------------------

def _linkerd_objects(objects: list[dict], namespace: str, kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind and o["apiVersion"].startswith("policy.linkerd.io/")
            and o["metadata"]["namespace"] == namespace]


def _port_is(port_ref: int | str, pod: Pod, port: int) -> bool:
    if isinstance(port_ref, int):
        return port_ref == port
    return any(name == port_ref and number == port for name, number, _ in pod.ports)


def _path_matches(match: dict, path: str) -> bool:
    unknown = set(match) - {"path"}
    if unknown:
        raise ValueError(f"unsupported route match fields {sorted(unknown)}")
    kind = match["path"].get("type", "PathPrefix")
    value = match["path"]["value"]
    if kind == "Exact":
        return path == value
    if kind == "PathPrefix":
        return path == value or path.startswith(value.rstrip("/") + "/") or value == "/"
    raise ValueError(f"unsupported path match type {kind}")


def _in_networks(ip: str, networks: list[dict]) -> bool:
    address = ipaddress.ip_address(ip)

    def inside(cidr: str) -> bool:
        network = ipaddress.ip_network(cidr, strict=False)
        return network.version == address.version and address in network

    return any(inside(n["cidr"]) and not any(inside(e) for e in n.get("except") or []) for n in networks)


def _authenticated(ref: dict, policy_namespace: str, objects: list[dict], caller: Caller) -> bool | None:
    """True/False, or None when the referenced object does not exist (the policy is then ignored)."""
    namespace = ref.get("namespace", policy_namespace)
    kind = ref["kind"]
    if kind == "ServiceAccount":
        return caller.service_account == ref["name"] and caller.namespace == namespace
    found = [o for o in _linkerd_objects(objects, namespace, kind) if o["metadata"]["name"] == ref["name"]]
    if not found:
        return None
    spec = found[0]["spec"]
    if kind == "NetworkAuthentication":
        return _in_networks(caller.ip, spec["networks"])
    if kind == "MeshTLSAuthentication":
        if caller.service_account is None:
            return False
        identity = f"{caller.service_account}.{caller.namespace}.serviceaccount.identity.linkerd.{LINKERD_TRUST_DOMAIN}"
        if any(i in ("*", identity) for i in spec.get("identities") or []):
            return True
        for identity_ref in spec.get("identityRefs") or []:
            ref_namespace = identity_ref.get("namespace", namespace)
            if identity_ref["kind"] == "ServiceAccount":
                if identity_ref.get("name", caller.service_account) == caller.service_account and ref_namespace == caller.namespace:
                    return True
            elif identity_ref["kind"] == "Namespace":
                if identity_ref.get("name") == caller.namespace:
                    return True
            else:
                raise ValueError(f"unsupported identityRef kind {identity_ref['kind']}")
        return False
    raise ValueError(f"unsupported authentication kind {kind}")


def _default(policy: str, caller: Caller) -> bool:
    if policy == "deny":
        return False
    if policy == "all-unauthenticated":
        return True
    if policy == "all-authenticated":
        return caller.service_account is not None
    raise ValueError(f"unsupported default policy {policy}")


def linkerd_allows(objects: list[dict], pod: Pod, port: int, path: str, caller: Caller, default_policy: str = "deny") -> bool:
    """Whether the proxy of `pod` serves this HTTP request on `port` (the admin port included)."""
    servers = [s for s in _linkerd_objects(objects, pod.namespace, "Server")
               if matches_selector(s["spec"]["podSelector"], pod.labels) and _port_is(s["spec"]["port"], pod, port)]
    if len(servers) > 1:
        raise ValueError("more than one Server selects this port: Linkerd would use only the oldest")
    if not servers:
        return _default(default_policy, caller)
    server = servers[0]
    name = server["metadata"]["name"]
    routes = [r for r in _linkerd_objects(objects, pod.namespace, "HTTPRoute")
              if any(p.get("kind") == "Server" and p["name"] == name for p in r["spec"]["parentRefs"])]
    targets = {("Server", name), ("Namespace", pod.namespace)}
    if routes:
        matched = [r for r in routes if any(_path_matches(m, path) for rule in r["spec"]["rules"] for m in rule["matches"])]
        if not matched:
            return False  # no route: 404 whatever the authorization
        targets |= {("HTTPRoute", r["metadata"]["name"]) for r in matched}
    for policy in _linkerd_objects(objects, pod.namespace, "AuthorizationPolicy"):
        target = policy["spec"]["targetRef"]
        if (target["kind"], target["name"]) not in targets:
            continue
        results = [_authenticated(ref, pod.namespace, objects, caller) for ref in policy["spec"]["requiredAuthenticationRefs"]]
        if None not in results and all(results):
            return True
    return _default(server["spec"].get("accessPolicy", "deny"), caller)


# --- Consul ------------------------------------------------------------------------------------

def consul_allows(intentions: list[dict], destination_service: str, port: int, source_service: str | None,
                  scrape_port: int = CONSUL_DEFAULT_SCRAPE_PORT) -> bool:
    """Whether intentions let `source_service` reach `destination_service` on `port` of its pod."""
    if port == scrape_port:
        return True  # not redirected to the sidecar's public listener, where intentions are enforced
    if source_service is None:
        return False  # the public listener requires mTLS from a mesh service
    applicable = [i["spec"] for i in intentions if i["spec"]["destination"]["name"] in (destination_service, "*")]
    sources = [s for spec in applicable for s in spec["sources"] if s["name"] in (source_service, "*")]
    if not sources:
        return True  # Consul's default with ACLs allowing
    exact = [s for s in sources if s["name"] == source_service]
    return (exact or sources)[0]["action"] == "allow"
