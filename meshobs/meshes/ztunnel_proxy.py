"""Istio ambient mode for the exporter: what a ztunnel's and a waypoint's pods look like, and
which ztunnel series feed which meshobs series (facts from ztunnel and Istio, docs/ambient.md).

A ztunnel is not one workload's proxy: it reports every captured pod of its node. Each of its
connection series names the workload it speaks for by its reporter: `reporter="destination"`
is the server on the ztunnel's node, `reporter="source"` the client on it. So the counters are
split per that workload (`ProxyMetrics.speaks_for`), never added to the ztunnel's own.

- L4 authorization denials exist only here: `reporter="destination", response_flags="DENY"`.
- TLS and identity failures: the flags `TLS_FAILURE`, `IDENTITY_ERROR` (1.29+) and
  `CERT_REVOKED` (after 1.30), for the side whose ztunnel reports them.
- Plaintext served: `connection_security_policy="unknown"` at a destination (ztunnel never
  writes `none`); mutual TLS connections accepted stand for handshakes (ztunnel counts no
  handshake: HBONE streams share its connections).

Every connection is counted once in `istio_tcp_connections_closed_total`, with the outcome's
flag; `istio_tcp_connections_failed_total` (1.29+) repeats the failed ones, so it is not read.
There is no certificate expiry among ztunnel's series, and its admin port (15000,
`/config_dump`) listens on localhost only: ambient workloads get no certificate series.
"""

from __future__ import annotations

import re
from typing import Mapping

from meshobs.meshes.proxy import DENIED, FAILURES, HANDSHAKES, PLAINTEXT, ProxyMetrics, Rule, matching

# Where Istio runs its data plane DaemonSet (the Helm chart's default; Prometheus's
# istio-ztunnels job and the exporter's NetworkPolicy use the same).
SYSTEM_NAMESPACE = "istio-system"
# The ztunnel chart's pods: labelled app=ztunnel, owned by a DaemonSet, metrics port named
# `ztunnel-stats` (15020, /metrics and /stats/prometheus alike).
ZTUNNEL_LABEL = ("app", "ztunnel")
ZTUNNEL_CONTROLLER = "DaemonSet"
ZTUNNEL_PORT = ("ztunnel-stats", 15020)
ZTUNNEL_PATH = "/metrics"
# istiod's waypoint Deployments (pilot constants.ManagedGatewayMeshControllerLabel): Envoy
# stats on `http-envoy-prom` (15090), read as a sidecar's.
WAYPOINT_LABEL = ("gateway.istio.io/managed", "istio.io-mesh-controller")
WAYPOINT_CONTROLLER = "ReplicaSet"
WAYPOINT_PORT = ("http-envoy-prom", 15090)
# A pod whose traffic ztunnel captures (set by the istio-cni node agent).
AMBIENT_ANNOTATION = ("ambient.istio.io/redirection", "enabled")
# Since Istio 1.25 a pod may name its own telemetry workload with this label.
WORKLOAD_NAME_LABEL = "service.istio.io/workload-name"

# ztunnel's connection series (src/proxy/metrics.rs): every connection is counted on close with
# its outcome's flag, in every version.
CLOSED = "istio_tcp_connections_closed_total"
OPENED = "istio_tcp_connections_opened_total"
DESTINATION = 'reporter="destination"'  # the server's side (both ztunnels report every connection)
DENY = "DENY"  # the response flag of a connection an AuthorizationPolicy refused
# connection_security_policy is `mutual_tls` (HBONE) or `unknown`, never `none`: at a destination,
# `unknown` is plaintext from outside the mesh
MTLS_POLICY = 'connection_security_policy="mutual_tls"'
PLAINTEXT_POLICY = 'connection_security_policy="unknown"'
# response flag -> meshobs failure reason
TLS_FLAGS = {"TLS_FAILURE": "other", "IDENTITY_ERROR": "other", "CERT_REVOKED": "untrusted_cert"}


def _rule(family: str, key: tuple[str, str], *matchers: str) -> Rule:
    # A busy node's ztunnel has thousands of connection series: the exporter's scan keeps only
    # the lines holding the most selective matcher (the last) as a literal.
    return Rule(family, key, matching(*matchers), pattern=re.escape(family), marker=matchers[-1])


ZTUNNEL_RULES = (
    _rule(CLOSED, (DENIED, ""), DESTINATION, f'response_flags="{DENY}"'),
    *(_rule(CLOSED, (FAILURES, reason), f'response_flags="{flag}"') for flag, reason in TLS_FLAGS.items()),
    _rule(OPENED, (PLAINTEXT, ""), DESTINATION, PLAINTEXT_POLICY),
    _rule(OPENED, (HANDSHAKES, ""), MTLS_POLICY, DESTINATION),
)

_SIDES = ("destination", "source")  # reporter values, each the prefix of its side's labels


def speaker(labels: Mapping[str, str]) -> tuple[str, str] | None:
    """(namespace, workload) as ztunnel names the workload a series speaks for: the side its
    reporter is on; None for a series of no side."""
    side = labels.get("reporter", "")
    if side not in _SIDES:
        return None
    return labels.get(f"{side}_workload_namespace", ""), labels.get(f"{side}_workload", "")


ZTUNNEL = ProxyMetrics("istio", ZTUNNEL_PATH, ZTUNNEL_RULES, speaks_for=speaker)
