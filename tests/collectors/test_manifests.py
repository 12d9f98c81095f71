"""Kubernetes manifests validate offline (strict); mesh resources carry only their documented fields."""

from __future__ import annotations

import json

import kubernetes_validate
import pytest
import yaml

from meshobs import accesslog
from meshobs.render.collectors import istio
from tests.collectors.conftest import MESHES

K8S_VERSION = "1.30"
# Custom resources kubernetes-validate has no schema for; checked against their documented fields below.
CUSTOM_KINDS = {"Telemetry", "EnvoyFilter", "ProxyDefaults"}
ANY = None  # a leaf whose content is not checked here

# Fields of the mesh resources, from each mesh's API reference (only the parts meshobs writes).
SHAPES = {
    "Telemetry": {"apiVersion": ANY, "kind": ANY, "metadata": {"name": ANY, "namespace": ANY}, "spec": {
        "selector": ANY, "targetRef": ANY, "targetRefs": ANY, "metrics": ANY,
        "accessLogging": [{"match": ANY, "providers": [{"name": ANY}], "disabled": ANY, "filter": ANY}],
        "tracing": [{"match": ANY, "providers": [{"name": ANY}], "customTags": ANY, "disableSpanReporting": ANY,
                     "randomSamplingPercentage": ANY, "useRequestIdForTraceSampling": ANY}],
    }},
    "EnvoyFilter": {"apiVersion": ANY, "kind": ANY, "metadata": {"name": ANY, "namespace": ANY}, "spec": {
        "workloadSelector": ANY, "targetRefs": ANY, "priority": ANY,
        "configPatches": [{"applyTo": ANY, "match": {"context": ANY, "proxy": ANY, "listener": ANY},
                           "patch": {"operation": ANY, "value": ANY, "filterClass": ANY}}],
    }},
    "ProxyDefaults": {"apiVersion": ANY, "kind": ANY, "metadata": {"name": ANY}, "spec": {
        "mode": ANY, "transparentProxy": ANY, "mutualTLSMode": ANY, "config": ANY, "meshGateway": ANY, "expose": ANY,
        "envoyExtensions": ANY, "failoverPolicy": ANY, "prioritizeByLocality": ANY,
        "accessLogs": {"enabled": ANY, "disableListenerLogs": ANY, "type": ANY, "path": ANY, "jsonFormat": ANY, "textFormat": ANY},
    }},
    "meshConfig": {"meshConfig": {
        "accessLogFile": ANY, "accessLogEncoding": ANY, "accessLogFormat": ANY, "enableTracing": ANY,
        "defaultProviders": {"accessLogging": ANY, "tracing": ANY, "metrics": ANY},
        "defaultConfig": {"proxyStatsMatcher": {"inclusionPrefixes": ANY, "inclusionSuffixes": ANY, "inclusionRegexps": ANY}},
        "extensionProviders": [{
            "name": ANY,
            "envoyFileAccessLog": {"path": ANY, "logFormat": {"text": ANY, "labels": ANY}},
            "opentelemetry": {"service": ANY, "port": ANY, "maxTagLength": ANY, "http": ANY, "resourceDetectors": ANY},
        }],
    }},
}


def unknown_keys(value, shape, path="") -> list[str]:
    if shape is ANY:
        return []
    if isinstance(shape, list):
        return [p for i, item in enumerate(value) for p in unknown_keys(item, shape[0], f"{path}[{i}]")]
    problems = []
    for key, item in value.items():
        if key not in shape:
            problems.append(f"{path}.{key}".lstrip("."))
        else:
            problems += unknown_keys(item, shape[key], f"{path}.{key}")
    return problems


def documents(files: dict[str, str]):
    for path, text in sorted(files.items()):
        if path.endswith(".yaml"):
            for doc in yaml.safe_load_all(text):
                if isinstance(doc, dict) and "kind" in doc:
                    yield path, doc


@pytest.mark.parametrize("mesh", MESHES)
def test_kubernetes_manifests_validate_strictly(rendered, mesh):
    """Every built-in-kind manifest passes kubernetes-validate in strict mode."""
    kinds = []
    for path, doc in documents(rendered[(mesh, "json")]):
        if doc["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        kinds.append(doc["kind"])
    assert sorted(set(kinds)) == ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet", "Deployment",
                                  "NetworkPolicy", "Service", "ServiceAccount"]


def test_fluentd_forward_input_is_reachable_only_from_the_exporter_namespace_and_reads_the_key_from_a_secret(rendered):
    """A NetworkPolicy admits only the exporter's namespace to port 24224; the DaemonSet mounts the shared key from its Secret, which must exist."""
    docs = [d for _, d in documents(rendered[("istio", "json")])]
    (policy,) = [d for d in docs if d["kind"] == "NetworkPolicy"]
    assert (policy["metadata"]["namespace"], policy["spec"]["podSelector"]) == ("logging", {"matchLabels": {"app.kubernetes.io/name": "fluentd"}})
    assert policy["spec"]["ingress"] == [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "meshobs"}}}],
                                          "ports": [{"protocol": "TCP", "port": 24224}]}]
    (daemonset,) = [d for d in docs if d["kind"] == "DaemonSet"]
    pod = daemonset["spec"]["template"]["spec"]
    assert {"name": "forward-key", "secret": {"secretName": "meshobs-fluentd-forward", "optional": False,
                                              "items": [{"key": "shared-key", "path": "shared-key"}]}} in pod["volumes"]
    assert {"name": "forward-key", "mountPath": "/etc/fluentd/forward", "readOnly": True} in pod["containers"][0]["volumeMounts"]


def test_strict_validation_catches_a_misspelt_field(rendered):
    """The validator used above does reject an unknown field (so passing means something)."""
    _, daemonset = next((p, d) for p, d in documents(rendered[("istio", "json")]) if d["kind"] == "DaemonSet")
    daemonset["spec"]["template"]["spec"]["serviceAcountName"] = "typo"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(daemonset, K8S_VERSION, strict=True)


def test_fluentd_rbac_is_read_only_on_pods_and_namespaces(rendered):
    """Fluentd's ClusterRole only reads pods and namespaces (for kubernetes_metadata)."""
    role = next(d for _, d in documents(rendered[("linkerd", "json")]) if d["kind"] == "ClusterRole")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods", "namespaces"], "verbs": ["get", "list", "watch"]}]


@pytest.mark.parametrize("enc", ["json", "text"])
def test_istio_resources_use_documented_fields(rendered, enc):
    """Mesh config, the mesh-wide and the waypoint Telemetry and EnvoyFilter carry only Istio's documented fields and the agreed values."""
    files = rendered[("istio", enc)]
    mesh_config = yaml.safe_load(files["meshconfig.yaml"])
    assert unknown_keys(mesh_config, SHAPES["meshConfig"]) == []
    mc = mesh_config["meshConfig"]
    assert (mc["accessLogFile"], mc["accessLogEncoding"]) == ("/dev/stdout", enc.upper())
    assert mc["defaultProviders"] == {"accessLogging": ["meshobs-access-log"], "tracing": ["meshobs-otel"]}
    providers = {p["name"]: p for p in mc["extensionProviders"]}
    log_format = providers["meshobs-access-log"]["envoyFileAccessLog"]["logFormat"]
    if enc == "json":
        assert log_format == {"labels": accesslog.envoy_json_format()}
        assert json.loads(mc["accessLogFormat"]) == accesslog.envoy_json_format()
    else:
        assert log_format == {"text": accesslog.envoy_text_format()} and mc["accessLogFormat"] == accesslog.envoy_text_format()
    assert providers["meshobs-otel"]["opentelemetry"] == {"service": "otel-collector.observability.svc.cluster.local", "port": 4317}
    assert mc["defaultConfig"]["proxyStatsMatcher"]["inclusionRegexps"] == list(istio.STATS_INCLUSION_REGEXPS)

    telemetry = yaml.safe_load(files["telemetry.yaml"])
    assert unknown_keys(telemetry, SHAPES["Telemetry"]) == []
    assert telemetry["apiVersion"] == "telemetry.istio.io/v1"
    assert telemetry["spec"]["accessLogging"] == [{"providers": [{"name": "meshobs-access-log"}]}]
    assert telemetry["spec"]["tracing"] == [{"providers": [{"name": "meshobs-otel"}], "randomSamplingPercentage": 1.0}]

    waypoint = yaml.safe_load(files["telemetry-waypoint.yaml"])
    assert unknown_keys(waypoint, SHAPES["Telemetry"]) == []
    assert waypoint["metadata"] == {"name": "meshobs-waypoint"}  # applied per namespace
    assert waypoint["spec"] == {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "waypoint"}],
                                **telemetry["spec"]}

    envoy_filter = yaml.safe_load(files["envoyfilter-listener-access-log.yaml"])
    assert unknown_keys(envoy_filter, SHAPES["EnvoyFilter"]) == []
    (patch,) = envoy_filter["spec"]["configPatches"]
    assert (patch["applyTo"], patch["match"], patch["patch"]["operation"]) == ("LISTENER", {"context": "SIDECAR_INBOUND"}, "MERGE")
    assert patch["patch"]["value"]["access_log"] == [accesslog.envoy_file_access_log("/dev/stdout", enc)]


@pytest.mark.parametrize("enc", ["json", "text"])
def test_consul_proxy_defaults_agree_in_all_three_forms(rendered, enc):
    """The CRD, the JSON entry and the HCL entry carry the same access-log format and tracing escape hatches."""
    files = rendered[("consul", enc)]
    crd = yaml.safe_load(files["proxy-defaults.yaml"])
    assert unknown_keys(crd, SHAPES["ProxyDefaults"]) == []
    assert (crd["apiVersion"], crd["kind"], crd["metadata"]) == ("consul.hashicorp.com/v1alpha1", "ProxyDefaults", {"name": "global"})
    entry = json.loads(files["proxy-defaults.json"])
    assert (entry["Kind"], entry["Name"]) == ("proxy-defaults", "global")
    logs = crd["spec"]["accessLogs"]
    assert (logs["enabled"], logs["disableListenerLogs"], logs["type"]) == (True, False, "stdout")
    if enc == "json":
        assert json.loads(logs["jsonFormat"]) == accesslog.envoy_json_format() == json.loads(entry["AccessLogs"]["JSONFormat"])
    else:
        assert logs["textFormat"] == accesslog.envoy_text_format() == entry["AccessLogs"]["TextFormat"]
    assert crd["spec"]["config"] == entry["Config"]
    tracing = json.loads(entry["Config"]["envoy_listener_tracing_json"])
    assert tracing["@type"].endswith("HttpConnectionManager.Tracing") and tracing["random_sampling"] == {"value": 1.0}
    hcl = files["proxy-defaults.hcl"]
    assert hcl.startswith('Kind = "proxy-defaults"\nName = "global"\nAccessLogs {\n  Enabled = true\n')
    for key, value in entry["Config"].items():
        assert f"  {key} = {json.dumps(value)}\n" in hcl
    # HCL would read these as template sequences inside a string.
    assert "${" not in hcl and "%{" not in hcl


def test_linkerd_settings(rendered):
    """The annotation turns on JSON access logs; linkerd-jaeger sends OTLP to the meshobs Collector."""
    files = rendered[("linkerd", "json")]
    assert yaml.safe_load(files["access-log-annotations.yaml"]) == {"metadata": {"annotations": {"config.linkerd.io/access-log": "json"}}}
    values = yaml.safe_load(files["linkerd-jaeger-values.yaml"])
    assert values["webhook"]["collectorSvcAddr"] == "otel-collector.observability.svc.cluster.local:4317"
    assert values["webhook"]["collectorTraceProtocol"] == "opentelemetry"
    assert (values["collector"], values["jaeger"]) == ({"enabled": False}, {"enabled": False})
