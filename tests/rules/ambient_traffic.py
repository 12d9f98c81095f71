"""Input series for promtool unit tests of Istio ambient: ztunnel L4 series and waypoint L7 series
with the names, labels and label values of tests/support/ambientdata.py (ztunnel and Istio 1.30.3),
plus the target labels the rendered istio-ztunnels / istio-waypoints / istio-proxies jobs attach."""

from __future__ import annotations

from tests.rules.traffic import series
from tests.support.ambientdata import ACCOUNTS, L4, L7, WAYPOINT, ZTUNNEL_POD, Workload, _waypoint_labels, _ztunnel_labels

ISTIO_SYSTEM = "istio-system"
WAYPOINT_POD = f"{WAYPOINT}-6c9f8d7b5-k2xq4"


def ztunnel_target(node: str) -> dict[str, str]:
    """The target labels of a ztunnel pod as the istio-ztunnels job attaches them."""
    return {"namespace": ISTIO_SYSTEM, "pod": ZTUNNEL_POD.format(node=node), "node": node}


def ztunnel(metric: str, edge: L4, reporter: str, values: str) -> dict:
    """One L4 series of `edge`, reported by the ztunnel of the source's or destination's node."""
    node = (edge.destination if reporter == "destination" else edge.source).node
    assert node, f"{reporter} of {edge} is not captured by a ztunnel"
    return series(metric, {**_ztunnel_labels(edge, reporter), **ztunnel_target(node)}, values)


def ztunnel_own(metric: str, node: str, values: str, **labels: str) -> dict:
    """A ztunnel's series of its own (xDS, build), without traffic labels."""
    return series(metric, {**labels, **ztunnel_target(node)}, values)


def up(node: str, values: str) -> dict:
    return series("up", {"job": "istio-ztunnels", "instance": f"10.0.{len(node)}.9:15020", **ztunnel_target(node)}, values)


def waypoint(source: Workload, destination: Workload, code: str, values: str) -> dict:
    """A request through the waypoint of the destination's namespace (`reporter="waypoint"`)."""
    labels = _waypoint_labels(L7(source, destination, code, 0))
    return series("istio_requests_total", {**labels, "namespace": destination.namespace, "pod": WAYPOINT_POD,
                                           "waypoint": WAYPOINT}, values)


def sidecar_caller(source: Workload, destination: Workload, code: str, values: str) -> dict:
    """The same request as a sidecar client's proxy reports it (`reporter="source"`)."""
    labels = {**_waypoint_labels(L7(source, destination, code, 0)), "reporter": "source",
              "connection_security_policy": "unknown"}
    return series("istio_requests_total", {**labels, "namespace": source.namespace, "pod": f"{source.name}-7d4b9c-x2x7q"},
                  values)


def waypoint_rbac(result: str, values: str) -> dict:
    """The waypoint's Envoy RBAC filter stats: the pod is the waypoint, no service or workload behind it is named."""
    return series("envoy_http_rbac", {"authz_enforce_result": result,
                                      # listener_waypoint.go: the port, never the service (Istio 1.30.3)
                                      "http_conn_manager_prefix": "inbound_0.0.0.0_80",
                                      "namespace": ACCOUNTS.namespace, "pod": WAYPOINT_POD, "waypoint": WAYPOINT}, values)
