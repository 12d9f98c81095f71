"""A Kubernetes pod as a scrape target: its proxy endpoint from validated annotations, and the
workload it belongs to from its controller.

Whoever can create a pod chooses every field of it: annotations, labels, name, even owner
references. So the endpoint is always the pod's own IP with an integer port and one of the
metrics paths (never a host, user info or any other path from an annotation), and the workload
is the pod's controller as Kubernetes names it, never a label: a bare pod labelled `app=checkout`
is `pod/<its name>`, which no Deployment, StatefulSet or other controller can be called (a
Kubernetes name has no `/`). A pod that breaks these rules raises `PodRejected` naming the reason.
"""

from __future__ import annotations

import ipaddress
import re

from meshobs.errors import ExporterError
from meshobs.exporter.targets import READ_ONLY_PATHS, Target, make_target
from meshobs.meshes import DIALECTS as MESH_DIALECTS
from meshobs.meshes.ztunnel_proxy import (
    AMBIENT_ANNOTATION, SYSTEM_NAMESPACE, WAYPOINT_CONTROLLER, WAYPOINT_LABEL, WAYPOINT_PORT, WORKLOAD_NAME_LABEL,
    ZTUNNEL_CONTROLLER, ZTUNNEL_LABEL, ZTUNNEL_PATH, ZTUNNEL_PORT,
)

REJECT_REASONS = ("bad_port", "bad_path", "bad_address", "bad_object", "not_ztunnel", "not_waypoint")

# The paths a pod may name for its metrics (/certs is asked for by the exporter itself).
METRICS_PATHS = tuple(sorted(READ_ONLY_PATHS - {"/certs"}))
BARE_POD_PREFIX = "pod/"

_PORT = re.compile(r"[0-9]{1,5}")
# RFC 1123 subdomain, as the API server enforces for object names (the test server does not)
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
# The CronJob controller names its Jobs <cronjob>-<scheduled time in minutes since the epoch>.
_CRONJOB_JOB = re.compile(r"(.+)-[0-9]{8,}")


class PodRejected(Exception):
    def __init__(self, reason: str, detail: str):
        self.reason = reason
        super().__init__(detail)


def shown(value: object, limit: int = 64) -> str:
    """An attacker-chosen value for a log line: quoted, escaped, cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _port(text: object) -> int:
    if not isinstance(text, str) or not _PORT.fullmatch(text) or not 1 <= int(text) <= 65535:
        raise PodRejected("bad_port", f"port {shown(text)} is not an integer 1-65535")
    return int(text)


def _path(text: object) -> str:
    if text not in METRICS_PATHS:
        raise PodRejected("bad_path", f"path {shown(text)} is not one of {', '.join(METRICS_PATHS)}")
    return text  # type: ignore[return-value]


def _host(ip: object) -> str:
    try:
        address = ipaddress.ip_address(ip)  # type: ignore[arg-type]
    except ValueError:
        raise PodRejected("bad_address", f"pod IP {shown(ip)} is not an IP address") from None
    return f"[{address}]" if address.version == 6 else str(address)


def is_name(value: object) -> bool:
    """Whether `value` is a Kubernetes object name (RFC 1123 subdomain)."""
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def _name(value: object, what: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise PodRejected("bad_object", f"{what} {shown(value)} is not a Kubernetes name")
    return value


def _mapping(value: object, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PodRejected("bad_object", f"{what} is not a mapping")
    return value


def _controller_kind(meta: dict) -> str | None:
    owners = meta.get("ownerReferences") or []
    if not isinstance(owners, list):
        raise PodRejected("bad_object", "ownerReferences is not a list")
    controller = next((o for o in owners if isinstance(o, dict) and o.get("controller") is True), None)
    return controller.get("kind") if controller else None


def _named_port(spec: dict, name: str, default: int) -> str:
    """The containerPort of the port called `name` in any container (as Prometheus's pod role
    finds it), else `default`; checked as an annotation's port is."""
    for container in spec.get("containers") or []:
        ports = container.get("ports") if isinstance(container, dict) else None
        for port in ports if isinstance(ports, list) else ():
            if isinstance(port, dict) and port.get("name") == name:
                value = port.get("containerPort")
                if not isinstance(value, int) or isinstance(value, bool):  # the API server stores an int
                    raise PodRejected("bad_port", f"port {shown(value)} is not an integer 1-65535")
                return str(value)
    return str(default)


def _ambient_role(meta: dict, labels: dict) -> str | None:
    """"ztunnel" or "waypoint" for a pod wearing their label, if it is what the label claims:
    any pod can wear a label, but only the DaemonSet in Istio's namespace is a ztunnel (it
    speaks for every pod of its node) and only a Deployment's pod a waypoint."""
    if labels.get(ZTUNNEL_LABEL[0]) == ZTUNNEL_LABEL[1]:
        if meta.get("namespace") != SYSTEM_NAMESPACE or _controller_kind(meta) != ZTUNNEL_CONTROLLER:
            raise PodRejected("not_ztunnel", f"labelled {ZTUNNEL_LABEL[0]}={ZTUNNEL_LABEL[1]} but not a "
                              f"{ZTUNNEL_CONTROLLER} pod in {SYSTEM_NAMESPACE}")
        return "ztunnel"
    if labels.get(WAYPOINT_LABEL[0]) == WAYPOINT_LABEL[1]:
        if _controller_kind(meta) != WAYPOINT_CONTROLLER:
            raise PodRejected("not_waypoint", f"labelled {WAYPOINT_LABEL[0]}={WAYPOINT_LABEL[1]} but not "
                              "a Deployment's pod")
        return "waypoint"
    return None


def telemetry_name(meta: dict) -> str:
    """The workload name Istio's telemetry (and so ztunnel) gives a pod: its
    service.istio.io/workload-name label (Istio 1.25+), else its controller's name, else its own."""
    chosen = _mapping(meta.get("labels"), "labels").get(WORKLOAD_NAME_LABEL)
    if is_name(chosen):
        return chosen
    return workload(meta).removeprefix(BARE_POD_PREFIX)


def ambient_pod(pod: object) -> tuple[str, str, str, str] | None:
    """(node, namespace, telemetry name, workload) of a running pod whose traffic ztunnel
    captures, else None: what a ztunnel on that node may speak for."""
    if not isinstance(pod, dict) or not isinstance(pod.get("metadata"), dict):
        return None
    meta = pod["metadata"]
    annotations = _mapping(meta.get("annotations"), "annotations")
    if annotations.get(AMBIENT_ANNOTATION[0]) != AMBIENT_ANNOTATION[1]:
        return None
    if _mapping(pod.get("status"), "status").get("phase") != "Running":
        return None
    node = _mapping(pod.get("spec"), "spec").get("nodeName")
    if not is_name(node):
        return None
    return node, _name(meta.get("namespace"), "namespace"), telemetry_name(meta), workload(meta)


def workload(meta: dict) -> str:
    """The pod's controller by the name Kubernetes users know it by: a ReplicaSet's Deployment,
    a Job's CronJob, else the controller itself (StatefulSet, DaemonSet, Job, ...); a pod
    without a controller is `pod/<name>`."""
    owners = meta.get("ownerReferences") or []
    if not isinstance(owners, list):
        raise PodRejected("bad_object", "ownerReferences is not a list")
    controller = next((o for o in owners if isinstance(o, dict) and o.get("controller") is True), None)
    if controller is None:
        return BARE_POD_PREFIX + _name(meta.get("name"), "pod name")
    owner = _name(controller.get("name"), "controller name")
    kind = controller.get("kind")
    if kind == "ReplicaSet":
        # the Deployment controller names its ReplicaSets <deployment>-<pod-template-hash>
        template_hash = _mapping(meta.get("labels"), "labels").get("pod-template-hash")
        if isinstance(template_hash, str) and template_hash and owner.endswith("-" + template_hash):
            return owner.removesuffix("-" + template_hash)
    if kind == "Job" and (cron := _CRONJOB_JOB.fullmatch(owner)):
        return cron.group(1)
    return owner


def pod_target(pod: object) -> Target | None:
    """The proxy endpoint of a running meshed pod; None for a pod that is not meshed, not
    running or has no IP yet. Raises `PodRejected` for a meshed pod whose fields are not
    acceptable."""
    if not isinstance(pod, dict) or not isinstance(pod.get("metadata"), dict):
        raise PodRejected("bad_object", "not a pod object")
    meta = pod["metadata"]
    status = _mapping(pod.get("status"), "status")
    if status.get("phase") != "Running" or not status.get("podIP"):
        return None
    annotations = _mapping(meta.get("annotations"), "annotations")
    spec = _mapping(pod.get("spec"), "spec")
    containers = spec.get("containers") or []
    if not isinstance(containers, list):
        raise PodRejected("bad_object", "spec.containers is not a list")
    names = {c.get("name") for c in containers if isinstance(c, dict) and isinstance(c.get("name"), str)}
    role = _ambient_role(meta, _mapping(meta.get("labels"), "labels"))
    node = ""
    if role == "ztunnel":
        mesh, port, path = "istio", _named_port(spec, *ZTUNNEL_PORT), ZTUNNEL_PATH
        node = _name(spec.get("nodeName"), "node name")
    elif role == "waypoint":
        mesh, port, path = "istio", _named_port(spec, *WAYPOINT_PORT), MESH_DIALECTS["istio"].discovery.path
    else:
        for mesh, dialect in MESH_DIALECTS.items():
            endpoint = dialect.discovery.endpoint(annotations, names)
            if endpoint is not None:
                break
        else:
            return None
        port, path = endpoint
    url = f"http://{_host(status['podIP'])}:{_port(port)}{_path(path)}"
    namespace = _name(meta.get("namespace"), "namespace")
    try:
        return make_target(url, mesh, namespace, workload(meta), role or "", node)
    except ExporterError as exc:  # a guard: every part was checked above
        raise PodRejected("bad_object", str(exc)) from None
