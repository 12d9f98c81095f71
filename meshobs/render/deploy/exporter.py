"""The exporter in Kubernetes: a single-replica Deployment or a sharded StatefulSet, sharing
one namespace, ServiceAccount, read-only ClusterRole, Service and NetworkPolicy; and the image.

Pod-security: the namespace enforces the restricted standard, and the pod template satisfies it
on its own (non-root numeric user, no privilege escalation, no capabilities, RuntimeDefault
seccomp, read-only root filesystem with an emptyDir for /tmp).
"""

from __future__ import annotations

from meshobs.config import Config
from meshobs.exporter import settings
from meshobs.render.collectors.endpoints import FORWARD_KEY_ITEM, forward_key_volume
from meshobs.render.deploy.common import (
    EXPORTER,
    METRICS_PORT_NAME,
    RUN_AS_USER,
    fluentd_address,
    kustomization,
    labels,
    metadata,
    selector,
    yaml_file,
)

SHARD_ENV = "MESHOBS_SHARD_INDEX"
FORWARD_KEY_MOUNT = "/var/run/secrets/meshobs/fluentd"
# Set by the StatefulSet controller on every pod (Kubernetes 1.28+): the pod's ordinal.
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
SHARDS_SERVICE = f"{EXPORTER}-shards"


def container_args(cfg: Config, sharded: bool) -> list[str]:
    """The exporter's arguments after `meshobs` (Kubernetes expands `$(VAR)` from the env): every
    threshold and window it shares with the alerts, from `cfg`, so that both judge alike."""
    args = [
        "exporter",
        "--listen", f"0.0.0.0:{cfg.deploy.exporter_port}",
        "--kubernetes",
        *settings.arguments(cfg),
        "--fluentd", fluentd_address(cfg),
        "--fluentd-shared-key-file", f"{FORWARD_KEY_MOUNT}/{FORWARD_KEY_ITEM}",
    ]
    if sharded:
        args += ["--shard", f"$({SHARD_ENV})/{cfg.deploy.shards}"]
    return args


def _container(cfg: Config, sharded: bool) -> dict:
    probe = {"httpGet": {"path": "/healthz", "port": METRICS_PORT_NAME}, "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3}
    ready = {"httpGet": {"path": "/readyz", "port": METRICS_PORT_NAME}, "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 3}
    container = {
        "name": "exporter",
        "image": cfg.deploy.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["meshobs"],
        "args": container_args(cfg, sharded),
        "ports": [{"name": METRICS_PORT_NAME, "containerPort": cfg.deploy.exporter_port, "protocol": "TCP"}],
        "livenessProbe": probe,
        "readinessProbe": ready,
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                         {"name": "fluentd-forward-key", "mountPath": FORWARD_KEY_MOUNT, "readOnly": True}],
    }
    if sharded:
        container["env"] = [
            {"name": SHARD_ENV, "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{POD_INDEX_LABEL}']"}}}
        ]
    return container


def _pod_template(cfg: Config, sharded: bool) -> dict:
    return {
        "metadata": {"labels": labels(EXPORTER, "exporter")},
        "spec": {
            "serviceAccountName": EXPORTER,
            # The exporter reads pods through the API with its ServiceAccount token.
            "automountServiceAccountToken": True,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUN_AS_USER,
                "runAsGroup": RUN_AS_USER,
                "fsGroup": RUN_AS_USER,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [_container(cfg, sharded)],
            "volumes": [
                {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}},
                # the shared key of Fluentd's forward input; the pod does not start without it
                forward_key_volume("fluentd-forward-key"),
            ],
            "terminationGracePeriodSeconds": 10,
        },
    }


def _workload(cfg: Config, kind: str, replicas: int, sharded: bool, **spec: object) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": metadata(EXPORTER, cfg.deploy.namespace),
        "spec": {
            "replicas": replicas,
            **spec,
            "selector": {"matchLabels": selector()},
            "template": _pod_template(cfg, sharded),
        },
    }


def deployment(cfg: Config) -> dict:
    # One replica: unsharded replicas would each scrape every proxy.
    rolling = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    return _workload(cfg, "Deployment", 1, sharded=False, strategy=rolling)


def statefulset(cfg: Config) -> dict:
    # Shards are independent: start and replace them all at once (podManagementPolicy Parallel).
    return _workload(
        cfg, "StatefulSet", cfg.deploy.shards, sharded=True, serviceName=SHARDS_SERVICE, podManagementPolicy="Parallel"
    )


def _namespace(cfg: Config) -> dict:
    restricted = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": cfg.deploy.namespace, "labels": {**restricted, "app.kubernetes.io/part-of": "meshobs"}},
    }


def _rbac(cfg: Config) -> tuple[dict, dict, dict]:
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(EXPORTER, cfg.deploy.namespace),
        "automountServiceAccountToken": False,
    }
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": metadata(EXPORTER),
        # what the exporter calls: list and watch of pods (never get, never secrets or anything else)
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": metadata(EXPORTER),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": EXPORTER},
        "subjects": [{"kind": "ServiceAccount", "name": EXPORTER, "namespace": cfg.deploy.namespace}],
    }
    return account, role, binding


def _service(cfg: Config, name: str, headless: bool) -> dict:
    spec: dict = {"selector": selector()}
    if headless:
        spec["clusterIP"] = "None"
    spec["ports"] = [{"name": METRICS_PORT_NAME, "port": cfg.deploy.exporter_port, "targetPort": METRICS_PORT_NAME, "protocol": "TCP"}]
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata(name, cfg.deploy.namespace), "spec": spec}


# The API server is reached through the `kubernetes` Service, which the CNI translates to the
# control plane's own addresses (cluster-specific, often outside the pod network): allowed by port.
API_SERVER_PORTS = (443, 6443)


def _namespace_selector(name: str) -> dict:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


def _tcp(*ports: int) -> list[dict]:
    return [{"protocol": "TCP", "port": port} for port in ports]


def _egress(cfg: Config) -> list[dict]:
    """Where the exporter may connect: DNS, the API server, the proxies' metrics ports (a pod
    naming another port in an annotation is not reached; Istio's waypoints are Envoys on the
    sidecars' port), Istio's ztunnels (their metrics port, in Istio's namespace only), Fluentd,
    the OTLP collector."""
    from meshobs.meshes import DIALECTS
    from meshobs.meshes.ztunnel_proxy import SYSTEM_NAMESPACE, ZTUNNEL_LABEL, ZTUNNEL_PORT
    from meshobs.render.collectors.endpoints import COLLECTOR_NAME, FLUENTD_NAME, FORWARD_PORT, OTLP_GRPC_PORT, OTLP_HTTP_PORT

    dns = {**_namespace_selector("kube-system"), "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}
    proxy_ports = sorted({dialect.discovery.port for dialect in DIALECTS.values()})
    ztunnels = {**_namespace_selector(SYSTEM_NAMESPACE), "podSelector": {"matchLabels": dict([ZTUNNEL_LABEL])}}
    fluentd = {**_namespace_selector(cfg.logging.namespace),
               "podSelector": {"matchLabels": {"app.kubernetes.io/name": FLUENTD_NAME}}}
    collector = {**_namespace_selector(cfg.tracing.collector_namespace),
                 "podSelector": {"matchLabels": {"app.kubernetes.io/name": COLLECTOR_NAME}}}
    return [
        {"to": [dns], "ports": [{"protocol": protocol, "port": 53} for protocol in ("UDP", "TCP")]},
        {"ports": _tcp(*API_SERVER_PORTS)},
        {"to": [{"namespaceSelector": {}}], "ports": _tcp(*proxy_ports)},
        {"to": [ztunnels], "ports": _tcp(ZTUNNEL_PORT[1])},
        {"to": [fluentd], "ports": _tcp(FORWARD_PORT)},
        {"to": [collector], "ports": _tcp(OTLP_GRPC_PORT, OTLP_HTTP_PORT)},
    ]


def _network_policy(cfg: Config) -> dict:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(EXPORTER, cfg.deploy.namespace),
        "spec": {
            "podSelector": {"matchLabels": selector()},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [_namespace_selector(cfg.deploy.monitoring_namespace)],
                    "ports": _tcp(cfg.deploy.exporter_port),
                }
            ],
            "egress": _egress(cfg),
        },
    }


CONTAINERFILE = """\
# Rendered by meshobs. The meshobs exporter image, built from a checkout of the repository:
#   podman build -f deploy/exporter/Containerfile -t meshobs:dev .
FROM docker.io/library/python:3.11-slim AS build
# Only what `pip install` needs is copied: no .git, virtualenv or rendered output.
COPY pyproject.toml README.md /src/
COPY meshobs /src/meshobs
RUN python -m venv /opt/meshobs \\
 && /opt/meshobs/bin/pip install --no-cache-dir /src

FROM docker.io/library/python:3.11-slim
COPY --from=build /opt/meshobs /opt/meshobs
ENV PATH=/opt/meshobs/bin:$PATH \\
    PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1
# Numeric, so that Kubernetes can check runAsNonRoot; no home, no shell needed.
USER {uid}:{uid}
EXPOSE {port}
ENTRYPOINT ["meshobs"]
CMD ["exporter", "--listen", "0.0.0.0:{port}", "--kubernetes"]
"""


def render(cfg: Config) -> dict[str, bytes]:
    account, role, binding = _rbac(cfg)
    base = {
        "namespace.yaml": _namespace(cfg),
        "serviceaccount.yaml": account,
        "clusterrole.yaml": role,
        "clusterrolebinding.yaml": binding,
        "service.yaml": _service(cfg, EXPORTER, headless=False),
        "networkpolicy.yaml": _network_policy(cfg),
    }
    files = {f"deploy/exporter/base/{name}": yaml_file(doc) for name, doc in base.items()}
    files["deploy/exporter/base/kustomization.yaml"] = kustomization(base)
    files["deploy/exporter/deployment/deployment.yaml"] = yaml_file(deployment(cfg))
    files["deploy/exporter/deployment/kustomization.yaml"] = kustomization(["../base", "deployment.yaml"])
    files["deploy/exporter/sharded/statefulset.yaml"] = yaml_file(statefulset(cfg))
    files["deploy/exporter/sharded/service-shards.yaml"] = yaml_file(_service(cfg, SHARDS_SERVICE, headless=True))
    files["deploy/exporter/sharded/kustomization.yaml"] = kustomization(["../base", "service-shards.yaml", "statefulset.yaml"])
    files["deploy/exporter/Containerfile"] = CONTAINERFILE.format(uid=RUN_AS_USER, port=cfg.deploy.exporter_port).encode()
    return files
