"""Rendered Kubernetes objects: offline schema validation, pod security, RBAC, network policy,
the documented fields of the prometheus-operator kinds, kustomize builds."""

from __future__ import annotations

import json
import subprocess

import kubernetes_validate
import pytest
import yaml

from meshobs.render.deploy import exporter
from tests.deploy.conftest import documents, manifests
from tests.deploy.crd_fields import SCHEMAS, problems
from tests.support.procs import require_binary

KUBERNETES_VERSION = "1.30.0"  # the oldest release still supported upstream; pod-index label is GA-beta there
CORE_GROUPS = ("v1", "apps/v1", "rbac.authorization.k8s.io/v1", "networking.k8s.io/v1")


def test_every_core_manifest_validates_strictly_against_the_kubernetes_schemas(deploy):
    """Every core-kind object under deploy/ passes kubernetes-validate in strict mode (misspelled fields fail)."""
    core = [(path, doc) for path, doc in manifests(deploy) if doc["apiVersion"] in CORE_GROUPS]
    assert {doc["kind"] for _, doc in core} == {
        "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service", "NetworkPolicy",
        "Deployment", "StatefulSet", "ConfigMap",
    }
    for path, doc in core:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_strict_validation_rejects_a_misspelled_field():
    """The validator used above does fail on an unknown field, so passing it means something."""
    doc = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x"}, "automountToken": False}
    with pytest.raises(kubernetes_validate.ValidationError) as error:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    assert "Additional properties are not allowed ('automountToken' was unexpected)" in str(error.value)


def test_prometheus_operator_objects_use_only_documented_fields(deploy):
    """PrometheusRule, ServiceMonitor and PodMonitor objects have only the fields of the monitoring.coreos.com/v1 reference."""
    crds = [(path, doc) for path, doc in manifests(deploy) if doc["apiVersion"] == "monitoring.coreos.com/v1"]
    assert sorted({doc["kind"] for _, doc in crds}) == ["PodMonitor", "PrometheusRule", "ServiceMonitor"]
    for path, doc in crds:
        assert problems(doc, SCHEMAS[doc["kind"]]) == [], path


def test_field_check_reports_unknown_and_missing_fields():
    """The CRD field check names an unknown field and a missing required one by path."""
    doc = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "x"},
           "spec": {"endpoints": [{"port": "m", "honorLabel": True}]}}
    assert problems(doc, SCHEMAS["ServiceMonitor"]) == [".spec.selector: missing", ".spec.endpoints[0].honorLabel: unknown field"]


def test_prometheus_rules_carry_exactly_the_rendered_rule_groups(artefacts, deploy):
    """Each PrometheusRule holds the groups of one alerts/<mesh>/<file>.yaml, unchanged (the global roll-ups are for the central ruler only)."""
    for path, content in artefacts.items():
        if path.startswith("alerts/") and "/global/" not in path:
            _, mesh, name = path.split("/")
            (rule,) = documents(deploy / "operator" / f"prometheusrule-{mesh}-{name}")
            assert rule["spec"]["groups"] == yaml.safe_load(content)["groups"]


def _workloads(deploy):
    return [doc for _, doc in manifests(deploy) if doc["kind"] in ("Deployment", "StatefulSet")]


def test_exporter_pods_meet_the_restricted_pod_security_standard(deploy):
    """Both exporter workloads run non-root, without privilege escalation or capabilities, with RuntimeDefault seccomp and a read-only root."""
    workloads = _workloads(deploy)
    assert len(workloads) == 2
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert "hostNetwork" not in pod and "hostPID" not in pod and "hostIPC" not in pod
        assert all("hostPath" not in volume for volume in pod["volumes"])
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["readOnlyRootFilesystem"] is True
            assert context["runAsNonRoot"] is True and context["runAsUser"] > 0
            assert set(container["resources"]) == {"requests", "limits"}
            assert set(container["resources"]["limits"]) == {"cpu", "memory"}
            assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
            assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}


def test_exporter_namespace_enforces_the_restricted_standard(deploy):
    """The exporter's namespace makes the API server reject any pod that is not restricted."""
    (namespace,) = documents(deploy / "exporter/base/namespace.yaml")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_cluster_role_only_reads_pods(deploy):
    """The exporter's ClusterRole grants what it calls, list and watch on pods, and nothing else, bound to its ServiceAccount."""
    (role,) = documents(deploy / "exporter/base/clusterrole.yaml")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}]
    (binding,) = documents(deploy / "exporter/base/clusterrolebinding.yaml")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "meshobs-exporter", "namespace": "meshobs"}]
    for workload in _workloads(deploy):
        assert workload["spec"]["template"]["spec"]["serviceAccountName"] == "meshobs-exporter"


def test_network_policy_admits_only_the_monitoring_namespace_and_limits_egress(deploy):
    """Ingress to the exporter pods is allowed from the monitoring namespace on the metrics port only; egress only to DNS, the API server's ports, the proxies' metrics ports, Istio's ztunnels' metrics port, Fluentd and the OTLP collector."""
    (policy,) = documents(deploy / "exporter/base/networkpolicy.yaml")
    assert policy["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "meshobs-exporter"}}
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"] == [{
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        "ports": [{"protocol": "TCP", "port": 9942}],
    }]

    def tcp(*ports):
        return [{"protocol": "TCP", "port": port} for port in ports]

    def pods(namespace, name):
        return [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                 "podSelector": {"matchLabels": {name[0]: name[1]}}}]

    assert policy["spec"]["egress"] == [
        {"to": pods("kube-system", ("k8s-app", "kube-dns")), "ports": [{"protocol": "UDP", "port": 53}, *tcp(53)]},
        {"ports": tcp(443, 6443)},
        {"to": [{"namespaceSelector": {}}], "ports": tcp(4191, 15090, 20200)},
        {"to": pods("istio-system", ("app", "ztunnel")), "ports": tcp(15020)},
        {"to": pods("logging", ("app.kubernetes.io/name", "fluentd")), "ports": tcp(24224)},
        {"to": pods("observability", ("app.kubernetes.io/name", "otel-collector")), "ports": tcp(4317, 4318)},
    ]


def test_statefulset_gives_each_replica_its_shard_from_its_ordinal(deploy):
    """The StatefulSet runs --shard $(MESHOBS_SHARD_INDEX)/3 with the index from the pod-index label."""
    (statefulset,) = documents(deploy / "exporter/sharded/statefulset.yaml")
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    assert statefulset["spec"]["replicas"] == 3
    assert container["args"][-2:] == ["--shard", "$(MESHOBS_SHARD_INDEX)/3"]
    assert container["env"] == [{
        "name": "MESHOBS_SHARD_INDEX",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}},
    }]
    (deployment,) = documents(deploy / "exporter/deployment/deployment.yaml")
    assert "--shard" not in deployment["spec"]["template"]["spec"]["containers"][0]["args"]


def test_containerfile_runs_meshobs_as_a_numeric_non_root_user(deploy):
    """The image installs this repository and runs `meshobs` as the uid the pod asks for."""
    text = (deploy / "exporter/Containerfile").read_text()
    assert "pip install --no-cache-dir /src" in text
    # What it copies is enough to install the package: pyproject's readme and the package folder.
    assert "COPY pyproject.toml README.md /src/\nCOPY meshobs /src/meshobs\n" in text
    assert f"USER {exporter.RUN_AS_USER}:{exporter.RUN_AS_USER}\n" in text
    assert 'ENTRYPOINT ["meshobs"]\n' in text


SECRET_KEYS = ("api_url", "routing_key", "service_key", "password", "bearer_token", "credentials", "api_key", "token", "url_secret")


def _secret_values(value, where=""):
    if isinstance(value, dict):
        for key, sub in value.items():
            if any(key == name or key.endswith("_" + name) for name in SECRET_KEYS):
                yield f"{where}.{key}"
            yield from _secret_values(sub, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _secret_values(item, f"{where}[{i}]")


def test_no_secret_lands_in_a_config_map(deploy):
    """Alertmanager receivers read keys, URLs and tokens from mounted files; no rendered config holds one inline."""
    config = yaml.safe_load((deploy / "alertmanager/alertmanager.yml").read_text())
    assert list(_secret_values(config)) == []
    files = [value for key, value in _key_values(config) if key.endswith("_file")]
    assert files and all(path.startswith("/etc/alertmanager/secrets/") for path in files)
    assert not [doc for _, doc in manifests(deploy) if doc["kind"] == "Secret"]


def _key_values(value):
    if isinstance(value, dict):
        for key, sub in value.items():
            yield key, sub
            yield from _key_values(sub)
    elif isinstance(value, list):
        for item in value:
            yield from _key_values(item)


KUSTOMIZATIONS = {
    "exporter/deployment": ["ClusterRole", "ClusterRoleBinding", "Deployment", "Namespace", "NetworkPolicy", "Service", "ServiceAccount"],
    "exporter/sharded": ["ClusterRole", "ClusterRoleBinding", "Namespace", "NetworkPolicy", "Service", "Service", "ServiceAccount", "StatefulSet"],
    "operator": ["PodMonitor"] * 5 + ["PrometheusRule"] * 6 + ["ServiceMonitor"],
    "prometheus": ["ConfigMap", "ConfigMap"],
    "alertmanager": ["ConfigMap"],
    "grafana": ["ConfigMap"] * 21,
    "prometheus-agent": ["ConfigMap"],
    "ruler": ["ConfigMap"],
}


@pytest.mark.parametrize("part", sorted(KUSTOMIZATIONS))
def test_each_part_builds_with_kustomize(deploy, part):
    """`kubectl kustomize deploy/<part>` (what `kubectl apply -k` applies) builds the expected objects."""
    kubectl = require_binary("kubectl")
    result = subprocess.run([kubectl, "kustomize", str(deploy / part)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert sorted(doc["kind"] for doc in objects) == KUSTOMIZATIONS[part]
    for doc in objects:
        if doc["kind"] == "ConfigMap" and part in ("prometheus", "alertmanager", "prometheus-agent", "ruler"):
            assert doc["metadata"]["namespace"] == "monitoring"
            for key, content in doc["data"].items():
                folder = deploy / part
                matches = [p for p in folder.rglob(key)]
                assert len(matches) == 1 and matches[0].read_text() == content


def test_dashboard_config_maps_hold_the_dashboards_byte_for_byte(artefacts, deploy):
    """Every dashboard is in one ConfigMap labelled for the Grafana sidecar, under its mesh's folder."""
    maps = documents(deploy / "grafana/dashboard-configmaps.yaml")
    dashboards = {p: c for p, c in artefacts.items() if p.startswith("dashboards/")}
    assert len(maps) == len(dashboards)
    titles = {"istio": "Istio", "linkerd": "Linkerd", "consul": "Consul"}
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((key, content),) = config_map["data"].items()
        mesh, name = key.split("-", 1)
        assert content.encode() == dashboards[f"dashboards/{mesh}/{name}"]
        assert config_map["metadata"]["annotations"] == {"grafana_folder": titles[mesh]}
        json.loads(content)


def test_pod_monitors_relabel_exactly_as_the_plain_scrape_jobs(deploy):
    """For operator users, each pod-discovery job of prometheus.yml exists as a PodMonitor with the same path and relabelling."""
    jobs = {job["job_name"]: job for job in yaml.safe_load((deploy / "prometheus/prometheus.yml").read_text())["scrape_configs"]}
    monitors = [doc for _, doc in manifests(deploy) if doc["kind"] == "PodMonitor"]
    assert sorted(doc["metadata"]["name"] for doc in monitors) == [
        "meshobs-istio-proxies", "meshobs-istio-waypoints", "meshobs-istio-ztunnels", "meshobs-linkerd-control-plane",
        "meshobs-linkerd-proxies"]
    renamed = {"sourceLabels": "source_labels", "targetLabel": "target_label"}
    for monitor in monitors:
        job = jobs[monitor["metadata"]["name"].removeprefix("meshobs-")]
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        assert endpoint["path"] == job.get("metrics_path", "/metrics")
        assert [{renamed.get(k, k): v for k, v in rule.items()} for rule in endpoint["relabelings"]] == job["relabel_configs"]


def test_files_the_containerfile_copies_are_enough_to_build_the_package(deploy, tmp_path):
    """An sdist builds, offline, from exactly the files the Containerfile copies, and holds the exporter."""
    import shutil
    import sys
    import tarfile
    from pathlib import Path

    root = Path(__file__).parents[2]
    src = tmp_path / "src"
    copies = [line.split()[1:] for line in (deploy / "exporter/Containerfile").read_text().splitlines()
              if line.startswith("COPY ") and "--from" not in line]
    assert copies == [["pyproject.toml", "README.md", "/src/"], ["meshobs", "/src/meshobs"]]
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, src / name)
    shutil.copytree(root / "meshobs", src / "meshobs", ignore=shutil.ignore_patterns("__pycache__"))
    build = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    result = subprocess.run([sys.executable, "-c", build, str(tmp_path / "dist")], cwd=src, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    sdist = tmp_path / "dist" / result.stdout.split()[-1]
    assert any(name.endswith("/meshobs/exporter/cli.py") for name in tarfile.open(sdist).getnames())
