"""deploy/allow-scrapes/<mesh>/: what keeps Prometheus and the exporter reading the proxies when
the application namespaces are default-deny (an Istio `allow-nothing` AuthorizationPolicy, Linkerd's
`default-inbound-policy: deny`, a Consul deny-all intention, and a `deny-all` NetworkPolicy on
Ingress and Egress). Without these, every proxy target is only "down" and every dashboard and
security alert goes dark.

    kustomization.yaml every namespaces/<ns> below
    namespaces/<ns>/   per namespace of `deploy.app_namespaces`: a NetworkPolicy that admits the
                       Prometheus pods (monitoring namespace) to the proxy's metrics ports and the
                       exporter pods (exporter namespace) to the port the exporter reads, nothing
                       else; for Linkerd also the Server / HTTPRoute / AuthorizationPolicy /
                       MeshTLSAuthentication that authorize the two service-account identities
    template/          the same objects without a namespace: `kubectl apply -n NS -k template`
    scrapers/          egress for Prometheus and the exporter when their own namespace is
                       default-deny: DNS, the API server, the proxies' ports, and what they send to

Apply a namespace's policies only together with its default-deny: an allow policy isolates every
pod it selects, so on an open namespace it would close the application to everything else.

The mesh layer needs rules only where the mesh enforces on the metrics port:
- Istio: none. The sidecar's iptables rules return 15090 (Envoy's stats listener) and 15020
  (pilot-agent) before the inbound redirect to 15006, so these connections never pass the
  inbound listener where AuthorizationPolicy's RBAC filter sits; Istio documents these endpoints
  as served without mutual TLS. An `allow-nothing` policy leaves them reachable.
- Linkerd: the proxy's admin server (4191) enforces authorization policy itself, so under
  `default-inbound-policy: deny` scrapes need a Server for the port, a route for /metrics and an
  AuthorizationPolicy naming the scrapers' identities (as `linkerd viz allow-scrapes` does for
  linkerd-viz's Prometheus only). Identities need meshed scrapers: inject Prometheus and the exporter.
  A meshed client still dials 4191 itself: the destination controller's transport-header mode
  (which moves other meshed traffic to the inbound port 4143) leaves the proxy's admin and
  control ports alone, so the NetworkPolicy names 4191.
- Consul: none. Intentions are the RBAC filter of the sidecar's public listener; consul-k8s
  excludes the Prometheus scrape port (20200) from transparent-proxy redirection and serves it
  from a separate listener, so no intention applies to it.
"""

from __future__ import annotations

from typing import Iterable

from meshobs.config import Config, label_selector
from meshobs.meshes import Dialect
from meshobs.meshes.linkerd import CONTROL_PLANE_NAMESPACE, MESHED_POD_LABEL, PROXY_CONTROL_PORTS, PROXY_PROBE_PATHS
from meshobs.render.collectors.endpoints import FLUENTD_NAME, FORWARD_PORT
from meshobs.render.collectors.endpoints import labels as collector_labels
from meshobs.render.deploy.common import EXPORTER, kustomization, labels, selector, yaml_file

ROOT = "deploy/allow-scrapes"
# Set by Kubernetes on every namespace (1.22+): selecting by it cannot be spoofed by a user who
# may only label their own namespace with other keys.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
# CoreDNS keeps kube-dns's label so that policies like this one keep working.
DNS_NAMESPACE = "kube-system"
DNS_POD_LABELS = {"k8s-app": "kube-dns"}
DNS_PORT = 53
# The API server's endpoint port after the `kubernetes` Service's DNAT: 443 on most managed
# clusters, 6443 on kubeadm ones; policies see the endpoint port.
API_SERVER_PORTS = (443, 6443)
LINKERD_POLICY = "policy.linkerd.io"


def _name(dialect: Dialect) -> str:
    return f"meshobs-allow-scrapes-{dialect.name}"


def _meta(name: str, namespace: str | None) -> dict:
    meta: dict = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    meta["labels"] = labels("meshobs", "allow-scrapes")
    return meta


def _namespace_selector(namespace: str) -> dict:
    return {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}}


def _pods_in(namespace: str, pod_labels: dict[str, str]) -> dict:
    """A peer that is these pods in that namespace: both selectors in one peer are ANDed."""
    return {"namespaceSelector": _namespace_selector(namespace), "podSelector": {"matchLabels": dict(pod_labels)}}


def prometheus_peer(cfg: Config) -> dict:
    return _pods_in(cfg.deploy.monitoring_namespace, label_selector(cfg.deploy.prometheus_pod_labels))


def exporter_peer(cfg: Config) -> dict:
    return _pods_in(cfg.deploy.namespace, selector())


def _tcp(ports: Iterable[int]) -> list[dict]:
    return [{"protocol": "TCP", "port": port} for port in ports]


def _network_policy(name: str, namespace: str | None, pods: dict, kind: str, rules: list[dict]) -> dict:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(name, namespace),
        "spec": {"podSelector": pods, "policyTypes": [kind], kind.lower(): rules},
    }


def ingress_policy(cfg: Config, dialect: Dialect, namespace: str | None) -> dict:
    """Prometheus to every metrics port of the mesh's proxies; the exporter to the port it reads."""
    # Every pod of the namespace: the ports already confine the rule to the proxy's listeners,
    # and a selector on injector labels would silently lose pods whose labels differ (revisions,
    # older injectors).
    rules = [
        {"from": [prometheus_peer(cfg)], "ports": _tcp(dialect.metrics_ports())},
        {"from": [exporter_peer(cfg)], "ports": _tcp([dialect.discovery.port])},
    ]
    return _network_policy(_name(dialect), namespace, {}, "Ingress", rules)


def _dns() -> dict:
    ports = [{"protocol": protocol, "port": DNS_PORT} for protocol in ("UDP", "TCP")]
    return {"to": [_pods_in(DNS_NAMESPACE, DNS_POD_LABELS)], "ports": ports}


def _api_server(cfg: Config) -> dict:
    return {"to": [{"ipBlock": {"cidr": cfg.deploy.api_server_cidr}}], "ports": _tcp(API_SERVER_PORTS)}


def _proxies(ports: Iterable[int]) -> dict:
    # Pods of any namespace, never addresses outside the cluster: the namespaces a mesh spans
    # change more often than this file is rendered.
    return {"to": [{"namespaceSelector": {}}], "ports": _tcp(ports)}


def _service(host_port: str) -> dict:
    """Egress to a `name.namespace.svc[...]:port` address: that namespace, or any if the host says none."""
    host, port = host_port.rsplit(":", 1)
    parts = host.split(".")
    peer = {"namespaceSelector": _namespace_selector(parts[1]) if len(parts) > 2 and parts[2] == "svc" else {}}
    return {"to": [peer], "ports": _tcp([int(port)])}


def _scrapers_own_proxy(dialect: Dialect) -> list[dict]:
    """Linkerd authorizes identities, so its scrapers are meshed: their proxy dials the control plane."""
    if dialect.name != "linkerd":
        return []
    return [{"to": [{"namespaceSelector": _namespace_selector(CONTROL_PLANE_NAMESPACE)}], "ports": _tcp(PROXY_CONTROL_PORTS)}]


def prometheus_egress(cfg: Config, dialect: Dialect) -> dict:
    rules = [
        _dns(),
        _api_server(cfg),  # kubernetes_sd_configs
        _proxies(dialect.metrics_ports()),
        {"to": [exporter_peer(cfg)], "ports": _tcp([cfg.deploy.exporter_port])},
        _service(cfg.deploy.alertmanager_address),
        *_scrapers_own_proxy(dialect),
    ]
    if dialect.name == "consul":
        rules.append(_service(cfg.deploy.consul_address))  # consul_sd_configs
    pods = {"matchLabels": label_selector(cfg.deploy.prometheus_pod_labels)}
    return _network_policy(f"meshobs-prometheus-egress-{dialect.name}", cfg.deploy.monitoring_namespace, pods, "Egress", rules)


def exporter_egress(cfg: Config, dialect: Dialect) -> dict:
    fluentd = {"to": [_pods_in(cfg.logging.namespace, collector_labels(FLUENTD_NAME))], "ports": _tcp([FORWARD_PORT])}
    rules = [_dns(), _api_server(cfg), _proxies([dialect.discovery.port]), fluentd, *_scrapers_own_proxy(dialect)]
    pods = {"matchLabels": selector()}
    return _network_policy(f"{EXPORTER}-egress-{dialect.name}", cfg.deploy.namespace, pods, "Egress", rules)


def _linkerd(kind: str, version: str, name: str, namespace: str | None, spec: dict) -> dict:
    return {"apiVersion": f"{LINKERD_POLICY}/{version}", "kind": kind, "metadata": _meta(name, namespace), "spec": spec}


def _ref(kind: str, name: str) -> dict:
    return {"group": LINKERD_POLICY, "kind": kind, "name": name}


def linkerd_authorization(cfg: Config, dialect: Dialect, namespace: str | None) -> dict[str, dict]:
    """Server for the proxy admin port, /metrics for the scrapers' identities, probes for the kubelet."""
    server, metrics, probes = "meshobs-proxy-admin", "meshobs-proxy-metrics", "meshobs-proxy-probes"
    scrapers, kubelet = "meshobs-scrapers", "meshobs-kubelet"

    def route(name: str, paths: Iterable[str]) -> dict:
        matches = [{"path": {"type": "Exact", "value": path}} for path in paths]
        return _linkerd("HTTPRoute", "v1beta3", name, namespace, {"parentRefs": [_ref("Server", server)], "rules": [{"matches": matches}]})

    def authorize(name: str, target: str, authentication: dict) -> dict:
        spec = {"targetRef": _ref("HTTPRoute", target), "requiredAuthenticationRefs": [authentication]}
        return _linkerd("AuthorizationPolicy", "v1alpha1", name, namespace, spec)

    identities = [
        {"kind": "ServiceAccount", "name": cfg.deploy.prometheus_service_account, "namespace": cfg.deploy.monitoring_namespace},
        {"kind": "ServiceAccount", "name": EXPORTER, "namespace": cfg.deploy.namespace},
    ]
    admin = {
        "podSelector": {"matchExpressions": [{"key": MESHED_POD_LABEL, "operator": "Exists"}]},
        "port": dialect.discovery.port,
        "proxyProtocol": "HTTP/1",
        # Said, not defaulted: requests matching no route or authorization are refused.
        "accessPolicy": "deny",
    }
    # The kubelet probes from the node's address, which no identity or fixed network names.
    everywhere = {"networks": [{"cidr": "0.0.0.0/0"}, {"cidr": "::/0"}]}
    return {
        "server.yaml": _linkerd("Server", "v1beta3", server, namespace, admin),
        "httproute-metrics.yaml": route(metrics, [dialect.discovery.path]),
        "httproute-probes.yaml": route(probes, PROXY_PROBE_PATHS),
        "meshtlsauthentication.yaml": _linkerd("MeshTLSAuthentication", "v1alpha1", scrapers, namespace, {"identityRefs": identities}),
        "networkauthentication.yaml": _linkerd("NetworkAuthentication", "v1alpha1", kubelet, namespace, everywhere),
        "authorizationpolicy-metrics.yaml": authorize(metrics, metrics, _ref("MeshTLSAuthentication", scrapers)),
        "authorizationpolicy-probes.yaml": authorize(probes, probes, _ref("NetworkAuthentication", kubelet)),
    }


# Which meshes enforce their own policy on the metrics port (see the module docstring).
MESH_AUTHORIZATION = {"linkerd": linkerd_authorization}


def namespace_objects(cfg: Config, dialect: Dialect, namespace: str | None) -> dict[str, dict]:
    """File name -> object for one application namespace (None: the template)."""
    objects = {"networkpolicy.yaml": ingress_policy(cfg, dialect, namespace)}
    mesh = MESH_AUTHORIZATION.get(dialect.name)
    if mesh:
        objects.update(mesh(cfg, dialect, namespace))
    return objects


def _folder(path: str, objects: dict[str, dict]) -> dict[str, bytes]:
    files = {f"{path}/{name}": yaml_file(doc) for name, doc in objects.items()}
    files[f"{path}/kustomization.yaml"] = kustomization(objects)
    return files


def render(cfg: Config, dialects: list[Dialect]) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for dialect in dialects:
        root = f"{ROOT}/{dialect.name}"
        scrapers = {"prometheus-egress.yaml": prometheus_egress(cfg, dialect), "exporter-egress.yaml": exporter_egress(cfg, dialect)}
        files.update(_folder(f"{root}/scrapers", scrapers))
        files.update(_folder(f"{root}/template", namespace_objects(cfg, dialect, None)))
        for namespace in cfg.deploy.app_namespaces:
            files.update(_folder(f"{root}/namespaces/{namespace}", namespace_objects(cfg, dialect, namespace)))
        # The listed namespaces only: scrapers/ isolates the egress of Prometheus and the exporter,
        # which is right only where their namespaces already deny egress.
        if cfg.deploy.app_namespaces:
            files[f"{root}/kustomization.yaml"] = kustomization(f"namespaces/{ns}" for ns in cfg.deploy.app_namespaces)
    return files
