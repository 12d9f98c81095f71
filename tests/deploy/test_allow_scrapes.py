"""deploy/allow-scrapes/: under the default-deny users write (Istio `allow-nothing`, Linkerd
`default-inbound-policy: deny`, a Consul deny-all intention, a `deny-all` NetworkPolicy on Ingress
and Egress), Prometheus and the exporter reach exactly the proxies' metrics ports and applications
stay closed: judged by an in-process NetworkPolicy evaluator and models of each mesh's authorization."""

from __future__ import annotations

import copy
import os
import subprocess

import kubernetes_validate
import pytest
import yaml

from meshobs import config
from meshobs.meshes import DIALECTS
from tests.deploy.conftest import render
from tests.deploy.crd_fields import LINKERD_VERSIONS, SCHEMAS, problems
from tests.deploy.test_manifests import KUBERNETES_VERSION
from tests.support.meshauthz import (
    CONSUL_DEFAULT_SCRAPE_PORT, ISTIO_UNCAPTURED_INBOUND_PORTS, Caller, consul_allows, istio_allows, linkerd_allows,
)
from tests.support.netpol import Cluster, External, Pod
from tests.support.procs import require_binary

MESHES = sorted(DIALECTS)
APP_PORT = 8080
API_SERVER = External("172.20.0.1", "kube-apiserver")
# What each mesh's injector gives a meshed pod: labels, and the proxy's declared ports.
MESHED = {
    "istio": ({"security.istio.io/tlsMode": "istio", "service.istio.io/canonical-name": "shop"},
              (("http-envoy-prom", 15090, "TCP"),)),
    "linkerd": ({"linkerd.io/control-plane-ns": "linkerd", "linkerd.io/proxy-deployment": "shop"},
                (("linkerd-admin", 4191, "TCP"), ("linkerd-proxy", 4143, "TCP"))),
    "consul": ({"consul.hashicorp.com/connect-inject-status": "injected"}, ()),
}
SERVICE_ACCOUNTS = {"prometheus": "prometheus", "exporter": "meshobs-exporter", "shop": "shop", "intruder": "default",
                    "impostor": "prometheus", "lookalike": "prometheus"}


def deny_all(namespace: str) -> dict:
    """The NetworkPolicy users apply to every namespace they harden."""
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "deny-all", "namespace": namespace},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}


def allow_nothing(namespace: str) -> dict:
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "allow-nothing", "namespace": namespace}, "spec": {}}


CONSUL_DENY_ALL = {"apiVersion": "consul.hashicorp.com/v1alpha1", "kind": "ServiceIntentions", "metadata": {"name": "deny-all"},
                   "spec": {"destination": {"name": "*"}, "sources": [{"name": "*", "action": "deny"}]}}


def _objects(files: dict[str, bytes], prefix: str) -> list[dict]:
    return [doc for path, content in sorted(files.items()) if path.startswith(prefix) and not path.endswith("kustomization.yaml")
            for doc in yaml.safe_load_all(content) if doc]


def _stamped(template: list[dict], namespace: str) -> list[dict]:
    """The template as `kubectl apply -n NAMESPACE -k template` creates it."""
    objects = copy.deepcopy(template)
    for obj in objects:
        obj["metadata"]["namespace"] = namespace
    return objects


def _pods(mesh: str) -> dict[str, Pod]:
    labels, proxy_ports = MESHED[mesh]
    app = (("http", APP_PORT, "TCP"),)
    return {
        "prometheus": Pod("monitoring", "prometheus-0", "10.1.0.10", {"app.kubernetes.io/name": "prometheus"}),
        "impostor": Pod("monitoring", "grafana-0", "10.1.0.11", {"app.kubernetes.io/name": "grafana"}),
        "lookalike": Pod("other", "prometheus-0", "10.1.0.12", {"app.kubernetes.io/name": "prometheus"}),
        "exporter": Pod("meshobs", "meshobs-exporter-0", "10.1.0.20", {"app.kubernetes.io/name": "meshobs-exporter"}),
        "intruder": Pod("other", "curl", "10.1.0.30", {"app": "curl"}),
        "neighbour": Pod("default", "other-app", "10.1.0.41", {"app": "other", **labels}, app + proxy_ports),
        "shop": Pod("default", "shop-1", "10.1.0.40", {"app": "shop", **labels}, app + proxy_ports),
        "stamped": Pod("shop", "cart-1", "10.1.0.50", {"app": "cart", **labels}, app + proxy_ports),
        "dns": Pod("kube-system", "coredns-1", "10.1.0.2", {"k8s-app": "kube-dns"}, (("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"))),
        "fluentd": Pod("logging", "fluentd-1", "10.1.0.60", {"app.kubernetes.io/name": "fluentd", "app.kubernetes.io/part-of": "meshobs"}),
        "linkerd-control-plane": Pod("linkerd", "linkerd-destination-1", "10.1.0.70", {"linkerd.io/control-plane-component": "destination"}),
    }


NAMESPACES = {name: {} for name in ("default", "shop", "monitoring", "meshobs", "other", "kube-system", "logging", "linkerd")}


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    return render()


class World:
    """One mesh's cluster: the users' default-deny in `default` and `shop` (and, with
    `scrapers_denied`, in the monitoring and exporter namespaces), plus the rendered policies."""

    def __init__(self, files: dict[str, bytes], mesh: str, rendered: bool = True, scrapers_denied: bool = False):
        self.mesh = mesh
        self.pods = _pods(mesh)
        root = f"deploy/allow-scrapes/{mesh}/"
        hardened = ["default", "shop"] + (["monitoring", "meshobs"] if scrapers_denied else [])
        objects = [deny_all(ns) for ns in hardened]
        objects += _objects(files, "deploy/exporter/base/networkpolicy.yaml")
        if rendered:
            objects += _objects(files, root + "namespaces/") + _stamped(_objects(files, root + "template/"), "shop")
        if rendered and scrapers_denied:
            objects += _objects(files, root + "scrapers/")
        self.mesh_objects = [o for o in objects if o["kind"] != "NetworkPolicy"]
        self.cluster = Cluster(NAMESPACES, self.pods.values(), [o for o in objects if o["kind"] == "NetworkPolicy"])

    def caller(self, name: str) -> Caller:
        pod = self.pods[name]
        return Caller(pod.ip, pod.namespace, SERVICE_ACCOUNTS.get(name))

    def mesh_allows(self, source: str, destination: str, port: int, path: str) -> bool:
        pod, caller = self.pods[destination], self.caller(source)
        if self.mesh == "istio":
            return istio_allows([allow_nothing("default"), allow_nothing("shop")], pod, port, caller, path)
        if self.mesh == "linkerd":
            return linkerd_allows(self.mesh_objects, pod, port, path, caller, default_policy="deny")
        # Only the application pods are Consul services; Prometheus and the exporter are outside the mesh.
        meshed = "consul.hashicorp.com/connect-inject-status" in self.pods[source].labels
        return consul_allows([CONSUL_DENY_ALL], pod.labels["app"], port, self.pods[source].labels["app"] if meshed else None)

    def reaches(self, source: str, destination: str, port: int, path: str = "/metrics") -> bool:
        """Both layers: the NetworkPolicies (egress of the source, ingress of the destination) and the mesh."""
        if not self.cluster.allowed(self.pods[source], self.pods[destination], port):
            return False
        return self.mesh_allows(source, destination, port, path)


def _scrape_path(mesh: str, port: int) -> str:
    return DIALECTS[mesh].discovery.path if port == DIALECTS[mesh].discovery.port else "/stats/prometheus"


@pytest.mark.parametrize("mesh", MESHES)
def test_default_deny_alone_cuts_prometheus_off_every_proxy(files, mesh):
    """Without the rendered policies, the users' deny-all leaves Prometheus no proxy port to scrape (the problem being fixed)."""
    world = World(files, mesh, rendered=False)
    for port in DIALECTS[mesh].metrics_ports():
        assert not world.reaches("prometheus", "shop", port, _scrape_path(mesh, port))


@pytest.mark.parametrize("mesh", MESHES)
def test_prometheus_reaches_every_proxy_metrics_port_under_default_deny(files, mesh):
    """Prometheus reaches each metrics port of the mesh (Istio 15090 and 15020, Linkerd 4191, Consul 20200), in a listed namespace and a stamped one."""
    world = World(files, mesh)
    expected = {"istio": (15090, 15020), "linkerd": (4191,), "consul": (20200,)}[mesh]
    assert DIALECTS[mesh].metrics_ports() == expected
    for pod in ("shop", "neighbour", "stamped"):
        for port in expected:
            assert world.reaches("prometheus", pod, port, _scrape_path(mesh, port)), (pod, port)


@pytest.mark.parametrize("mesh", MESHES)
def test_exporter_reaches_the_proxy_port_and_path_it_reads(files, mesh):
    """The exporter reaches the port and admin path its pod discovery reads, and no other proxy port."""
    world = World(files, mesh)
    discovery = DIALECTS[mesh].discovery
    assert world.reaches("exporter", "shop", discovery.port, discovery.path)
    assert world.reaches("exporter", "stamped", discovery.port, discovery.path)
    for port in set(DIALECTS[mesh].metrics_ports()) - {discovery.port}:
        assert not world.reaches("exporter", "shop", port)


@pytest.mark.parametrize("mesh", MESHES)
def test_application_port_stays_closed_to_everyone(files, mesh):
    """Prometheus, the exporter, a neighbour in the same namespace and a pod elsewhere are all still denied the application port."""
    world = World(files, mesh)
    for source in ("prometheus", "exporter", "neighbour", "intruder", "impostor"):
        assert not world.reaches(source, "shop", APP_PORT, "/"), source
        # the application's own ingress must refuse, whatever the source's egress would allow
        assert not world.cluster.ingress_allowed(world.pods[source], world.pods["shop"], APP_PORT), source


@pytest.mark.parametrize("mesh", MESHES)
def test_other_pods_cannot_reach_the_proxy_ports(files, mesh):
    """A pod in another namespace, another pod of the monitoring namespace, a pod labelled like Prometheus elsewhere: all denied the proxy ports (namespace AND pod labels)."""
    world = World(files, mesh)
    for source in ("intruder", "impostor", "lookalike", "neighbour"):
        for port in DIALECTS[mesh].metrics_ports():
            assert not world.cluster.ingress_allowed(world.pods[source], world.pods["shop"], port), (source, port)


def test_linkerd_admin_port_authorizes_the_two_identities_only(files):
    """On the Linkerd admin port, /metrics is served to the Prometheus and exporter identities only; unmeshed or other identities are refused."""
    world = World(files, "linkerd")
    shop, port = world.pods["shop"], DIALECTS["linkerd"].discovery.port
    allows = lambda caller, path="/metrics": linkerd_allows(world.mesh_objects, shop, port, path, caller)
    assert allows(Caller("10.1.0.10", "monitoring", "prometheus"))
    assert allows(Caller("10.1.0.20", "meshobs", "meshobs-exporter"))
    assert not allows(Caller("10.1.0.10", "monitoring", None))  # Prometheus without a proxy: no identity
    assert not allows(Caller("10.1.0.11", "monitoring", "grafana"))
    assert not allows(Caller("10.1.0.12", "other", "prometheus"))  # same name, other namespace
    assert not allows(Caller("10.1.0.10", "monitoring", "prometheus"), "/shutdown")  # only the routes rendered
    # The application port is untouched by the admin Server: still the namespace's default (deny).
    assert not linkerd_allows(world.mesh_objects, shop, APP_PORT, "/", Caller("10.1.0.10", "monitoring", "prometheus"))


def test_linkerd_kubelet_probes_still_reach_the_proxy(files):
    """Covering the admin port with a Server does not break the kubelet's /live and /ready probes of the proxy."""
    world = World(files, "linkerd")
    node = Caller("192.168.1.5", "", None)
    for path in ("/live", "/ready"):
        assert linkerd_allows(world.mesh_objects, world.pods["shop"], 4191, path, node)
    assert not linkerd_allows(world.mesh_objects, world.pods["shop"], 4191, "/metrics", node)


def test_istio_needs_no_authorization_policy_for_its_metrics_ports(files):
    """Istio's metrics ports bypass the inbound listener, so allow-nothing leaves them open and no AuthorizationPolicy is rendered; it still closes the app port."""
    assert set(DIALECTS["istio"].metrics_ports()) <= ISTIO_UNCAPTURED_INBOUND_PORTS
    assert not [o for o in _objects(files, "deploy/allow-scrapes/istio/") if o["kind"] != "NetworkPolicy"]
    pod, caller = _pods("istio")["shop"], Caller("10.1.0.10", "monitoring", "prometheus")
    assert not istio_allows([allow_nothing("default")], pod, APP_PORT, caller)


def test_consul_needs_no_intention_for_its_metrics_port(files):
    """consul-k8s serves the scrape port outside the intention-enforcing listener: no intention is rendered, deny-all still closes the app."""
    assert DIALECTS["consul"].discovery.port == CONSUL_DEFAULT_SCRAPE_PORT
    assert not [o for o in _objects(files, "deploy/allow-scrapes/consul/") if o["kind"] != "NetworkPolicy"]
    assert not consul_allows([CONSUL_DENY_ALL], "shop", APP_PORT, "prometheus")


@pytest.mark.parametrize("mesh", MESHES)
def test_scrapers_keep_working_when_their_own_namespaces_deny_everything(files, mesh):
    """With deny-all in the monitoring and exporter namespaces too, Prometheus reaches DNS, the API server, the proxies and the exporter; the exporter reaches DNS, the API server, the proxies and Fluentd."""
    world = World(files, mesh, scrapers_denied=True)
    prometheus, exporter = world.pods["prometheus"], world.pods["exporter"]
    for source in (prometheus, exporter):
        assert world.cluster.allowed(source, world.pods["dns"], 53, "UDP")
        assert world.cluster.allowed(source, world.pods["dns"], 53, "TCP")
        assert world.cluster.allowed(source, API_SERVER, 6443) and world.cluster.allowed(source, API_SERVER, 443)
        assert not world.cluster.allowed(source, API_SERVER, 22)
    for port in DIALECTS[mesh].metrics_ports():
        assert world.reaches("prometheus", "shop", port, _scrape_path(mesh, port))
    discovery = DIALECTS[mesh].discovery
    assert world.reaches("exporter", "shop", discovery.port, discovery.path)
    assert world.cluster.allowed(prometheus, exporter, 9942)
    assert world.cluster.allowed(exporter, world.pods["fluentd"], 24224)
    # Linkerd's scrapers are meshed (identities): their proxies dial identity, destination and policy.
    for source in (prometheus, exporter):
        for port in (8080, 8086, 8090):
            assert world.cluster.allowed(source, world.pods["linkerd-control-plane"], port) == (mesh == "linkerd")
    for source in (prometheus, exporter):
        # their own egress stays narrow too, whatever the application's ingress says
        assert not world.cluster.egress_allowed(source, world.pods["shop"], APP_PORT)
        assert not world.cluster.egress_allowed(source, world.pods["fluentd" if source is prometheus else "prometheus"], 24224)
    assert not world.cluster.allowed(world.pods["impostor"], world.pods["shop"], DIALECTS[mesh].discovery.port)


def test_every_ingress_rule_names_its_peers_and_ports(files):
    """No rendered rule is a wildcard: each ingress rule has peers with both a namespace and a pod selector, and explicit ports."""
    policies = [o for o in _objects(files, "deploy/allow-scrapes/") if o["kind"] == "NetworkPolicy" and "ingress" in o["spec"]]
    assert policies
    for policy in policies:
        for rule in policy["spec"]["ingress"]:
            assert rule["ports"] and all(isinstance(p["port"], int) for p in rule["ports"])
            assert rule["from"] and all(set(peer) == {"namespaceSelector", "podSelector"} for peer in rule["from"])


def test_all_objects_validate_strictly_and_linkerd_kinds_use_documented_fields(files):
    """NetworkPolicies pass kubernetes-validate strict; the Linkerd kinds use only their CRDs' documented fields at the documented versions."""
    objects = _objects(files, "deploy/allow-scrapes/")
    kinds = sorted({o["kind"] for o in objects})
    assert kinds == ["AuthorizationPolicy", "HTTPRoute", "MeshTLSAuthentication", "NetworkAuthentication", "NetworkPolicy", "Server"]
    for obj in objects:
        if obj["kind"] == "NetworkPolicy":
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        else:
            assert obj["apiVersion"] == LINKERD_VERSIONS[obj["kind"]]
            assert problems(obj, SCHEMAS[obj["kind"]]) == [], obj["metadata"]


def test_template_is_the_namespaced_set_without_a_namespace(files):
    """template/ holds exactly the objects of namespaces/<ns>/, with no namespace, so `kubectl apply -n NS -k` stamps them anywhere."""
    for mesh in MESHES:
        template = _objects(files, f"deploy/allow-scrapes/{mesh}/template/")
        assert all("namespace" not in o["metadata"] for o in template)
        assert _stamped(template, "default") == _objects(files, f"deploy/allow-scrapes/{mesh}/namespaces/default/")


def test_listed_namespaces_each_get_a_folder_and_ports_follow_the_config():
    """deploy.app_namespaces renders one folder per namespace; the Prometheus labels, service account and ports come from the configuration."""
    cfg = config.from_dict({"deploy": {"app_namespaces": ["shop", "payments"], "prometheus_pod_labels": "app=prom,team=obs",
                                       "prometheus_service_account": "prom-k8s", "monitoring_namespace": "obs", "exporter_port": 9000}})
    files = render(cfg, ["linkerd"])
    assert yaml.safe_load(files["deploy/allow-scrapes/linkerd/kustomization.yaml"])["resources"] == [
        "namespaces/shop", "namespaces/payments"]
    (policy,) = _objects(files, "deploy/allow-scrapes/linkerd/namespaces/payments/networkpolicy.yaml")
    assert policy["metadata"]["namespace"] == "payments"
    assert policy["spec"]["ingress"][0]["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "obs"}},
                                                     "podSelector": {"matchLabels": {"app": "prom", "team": "obs"}}}]
    (mtls,) = _objects(files, "deploy/allow-scrapes/linkerd/namespaces/shop/meshtlsauthentication.yaml")
    assert mtls["spec"]["identityRefs"][0] == {"kind": "ServiceAccount", "name": "prom-k8s", "namespace": "obs"}
    (egress,) = _objects(files, "deploy/allow-scrapes/linkerd/scrapers/prometheus-egress.yaml")
    assert {"protocol": "TCP", "port": 9000} in [p for rule in egress["spec"]["egress"] for p in rule["ports"]]


def test_no_listed_namespace_renders_the_template_and_scrapers_only():
    """An empty deploy.app_namespaces still renders the template and the scrapers' egress."""
    files = render(config.from_dict({"deploy": {"app_namespaces": []}}), ["istio"])
    assert sorted(p for p in files if p.startswith("deploy/allow-scrapes/")) == [
        "deploy/allow-scrapes/istio/scrapers/exporter-egress.yaml",
        "deploy/allow-scrapes/istio/scrapers/kustomization.yaml",
        "deploy/allow-scrapes/istio/scrapers/prometheus-egress.yaml",
        "deploy/allow-scrapes/istio/template/kustomization.yaml",
        "deploy/allow-scrapes/istio/template/networkpolicy.yaml",
    ]


@pytest.mark.parametrize("option, value, message", [
    ("app_namespaces", "shop", "deploy.app_namespaces: expected a list, got str 'shop'"),
    ("app_namespaces", ["shop", 7], "deploy.app_namespaces[1]: expected a string, got int 7"),
    ("app_namespaces", ["Shop"], "deploy.app_namespaces: ['Shop'] has 'Shop', which must be a Kubernetes name (lower case letters, digits and '-')"),
    ("app_namespaces", ["shop", "shop"], "deploy.app_namespaces: ['shop', 'shop'] names 'shop' twice"),
    ("prometheus_pod_labels", "prometheus", "deploy.prometheus_pod_labels: 'prometheus' must be labels as key=value[,key=value], e.g. app.kubernetes.io/name=prometheus"),
    ("api_server_cidr", "10.0.0.1/8", "deploy.api_server_cidr: '10.0.0.1/8' must be an IPv4 or IPv6 network such as 10.0.0.0/24 (host bits zero)"),
])
def test_bad_allow_scrape_settings_are_named(option, value, message):
    """Each new deploy key rejects a bad value with its dotted key and the reason."""
    from meshobs.errors import ConfigError

    with pytest.raises(ConfigError) as error:
        config.from_dict({"deploy": {option: value}})
    assert str(error.value) == message


@pytest.mark.parametrize("mesh", MESHES)
def test_each_mesh_folder_builds_with_kustomize(deploy, mesh):
    """`kubectl kustomize deploy/allow-scrapes/<mesh>` builds the scrapers' egress and the listed namespaces' objects; the template builds alone."""
    kubectl = require_binary("kubectl")
    built = {}
    for part in ("", "/template", "/scrapers"):
        result = subprocess.run([kubectl, "kustomize", str(deploy / f"allow-scrapes/{mesh}{part}")], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        built[part] = sorted((doc["kind"], doc["metadata"].get("namespace")) for doc in yaml.safe_load_all(result.stdout) if doc)
    extra = ["AuthorizationPolicy", "AuthorizationPolicy", "HTTPRoute", "HTTPRoute", "MeshTLSAuthentication",
             "NetworkAuthentication", "Server"] if mesh == "linkerd" else []
    assert built["/template"] == sorted((kind, None) for kind in ["NetworkPolicy"] + extra)
    # the listed namespace only: the scrapers' egress is applied on its own, where it belongs
    assert built[""] == sorted((kind, "default") for kind in ["NetworkPolicy"] + extra)
    assert built["/scrapers"] == [("NetworkPolicy", "meshobs"), ("NetworkPolicy", "monitoring")]


def test_template_stamps_a_namespace_as_a_kustomize_base(deploy, tmp_path):
    """An overlay with `namespace: payments` over template/ puts every object there and leaves the scrapers' namespaces in the peers and identities alone."""
    kubectl = require_binary("kubectl")
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": "payments",
        "resources": [os.path.relpath(deploy / "allow-scrapes/linkerd/template", tmp_path)]}))  # kustomize wants it relative
    result = subprocess.run([kubectl, "kustomize", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    built = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert {doc["metadata"]["namespace"] for doc in built} == {"payments"}
    (mtls,) = [doc for doc in built if doc["kind"] == "MeshTLSAuthentication"]
    assert [ref["namespace"] for ref in mtls["spec"]["identityRefs"]] == ["monitoring", "meshobs"]
    (policy,) = [doc for doc in built if doc["kind"] == "NetworkPolicy"]
    assert [rule["from"][0]["namespaceSelector"] for rule in policy["spec"]["ingress"]] == [
        {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}, {"matchLabels": {"kubernetes.io/metadata.name": "meshobs"}}]
