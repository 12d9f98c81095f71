"""Documented fields of the CRD kinds meshobs renders (prometheus-operator monitoring.coreos.com/v1
API reference: PrometheusRule, ServiceMonitor, PodMonitor; Linkerd's policy.linkerd.io CRDs as
served by linkerd-crds: Server v1beta3, HTTPRoute v1beta3, AuthorizationPolicy,
MeshTLSAuthentication and NetworkAuthentication v1alpha1), as a small tree to check manifests against:
kubernetes-validate has no CRD schemas. A leaf is a type; a dict lists the allowed keys, with
required ones marked by a trailing '!'; a one-element list is an array of that element."""

from __future__ import annotations

from typing import Any

_META = {"name!": str, "namespace": str, "labels": dict, "annotations": dict}
_SELECTOR = {"matchLabels": dict, "matchExpressions": list}

_RULE = {
    "record": str, "alert": str, "expr!": str, "for": str, "keep_firing_for": str, "labels": dict, "annotations": dict,
}
PROMETHEUS_RULE = {
    "apiVersion!": str, "kind!": str, "metadata!": _META,
    "spec!": {
        "groups": [{
            "name!": str, "interval": str, "limit": int, "partial_response_strategy": str, "query_offset": str,
            "labels": dict, "rules": [_RULE],
        }],
    },
}

_RELABELING = {
    "sourceLabels": [str], "separator": str, "targetLabel": str, "regex": str, "modulus": int, "replacement": str,
    "action": str,
}
_ENDPOINT = {
    "port": str, "targetPort": (str, int), "path": str, "scheme": str, "params": dict, "interval": str,
    "scrapeTimeout": str, "tlsConfig": dict, "bearerTokenFile": str, "bearerTokenSecret": dict, "authorization": dict,
    "honorLabels": bool, "honorTimestamps": bool, "trackTimestampsStaleness": bool, "basicAuth": dict, "oauth2": dict,
    "metricRelabelings": [_RELABELING], "relabelings": [_RELABELING], "proxyUrl": str, "followRedirects": bool, "enableHttp2": bool,
    "filterRunning": bool,
}
SERVICE_MONITOR = {
    "apiVersion!": str, "kind!": str, "metadata!": _META,
    "spec!": {
        "jobLabel": str, "targetLabels": [str], "podTargetLabels": [str], "endpoints!": [_ENDPOINT],
        "selector!": _SELECTOR, "namespaceSelector": {"any": bool, "matchNames": [str]}, "sampleLimit": int,
        "targetLimit": int, "labelLimit": int, "labelNameLengthLimit": int, "labelValueLengthLimit": int,
        "attachMetadata": dict, "scrapeProtocols": [str], "bodySizeLimit": str, "keepDroppedTargets": int,
        "scrapeClass": str,
    },
}

_POD_ENDPOINT = {key: value for key, value in _ENDPOINT.items() if key not in ("bearerTokenFile", "targetPort")}
_POD_ENDPOINT.update({"portNumber": int, "targetPort": (str, int)})
POD_MONITOR = {
    "apiVersion!": str, "kind!": str, "metadata!": _META,
    "spec!": {
        "jobLabel": str, "podTargetLabels": [str], "podMetricsEndpoints": [_POD_ENDPOINT], "selector!": _SELECTOR,
        "selectorMechanism": str, "namespaceSelector": {"any": bool, "matchNames": [str]}, "sampleLimit": int,
        "targetLimit": int, "labelLimit": int, "labelNameLengthLimit": int, "labelValueLengthLimit": int,
        "attachMetadata": dict, "scrapeProtocols": [str], "bodySizeLimit": str, "keepDroppedTargets": int,
        "scrapeClass": str,
    },
}

_EXPRESSION = {"key!": str, "operator!": str, "values": [str]}
_LINKERD_SELECTOR = {"matchLabels": dict, "matchExpressions": [_EXPRESSION]}
LINKERD_SERVER = {
    "apiVersion!": str, "kind!": str, "metadata!": _META,
    "spec!": {
        "podSelector": _LINKERD_SELECTOR, "externalWorkloadSelector": _LINKERD_SELECTOR, "port!": (str, int),
        "proxyProtocol": str, "accessPolicy": str,
    },
}
_PARENT_REF = {"group": str, "kind": str, "name!": str, "namespace": str, "sectionName": str, "port": int}
_HTTP_MATCH = {"path": {"type": str, "value": str}, "headers": [dict], "queryParams": [dict], "method": str}
LINKERD_HTTP_ROUTE = {
    "apiVersion!": str, "kind!": str, "metadata!": _META,
    "spec!": {
        "parentRefs": [_PARENT_REF], "hostnames": [str],
        "rules": [{"matches": [_HTTP_MATCH], "filters": [dict], "backendRefs": [dict], "timeouts": dict}],
    },
}
_TARGET_REF = {"group": str, "kind!": str, "name!": str}
_AUTHENTICATION_REF = {"group": str, "kind!": str, "name!": str, "namespace": str}
LINKERD_AUTHORIZATION_POLICY = {
    "apiVersion!": str, "kind!": str, "metadata!": _META,
    "spec!": {"targetRef!": _TARGET_REF, "requiredAuthenticationRefs!": [_AUTHENTICATION_REF]},
}
LINKERD_MESH_TLS_AUTHENTICATION = {
    "apiVersion!": str, "kind!": str, "metadata!": _META,
    "spec!": {"identities": [str], "identityRefs": [{"group": str, "kind!": str, "name": str, "namespace": str}]},
}
LINKERD_NETWORK_AUTHENTICATION = {
    "apiVersion!": str, "kind!": str, "metadata!": _META,
    "spec!": {"networks!": [{"cidr!": str, "except": [str]}]},
}
# The version each kind is documented at above: an object at another version is not checked by it.
LINKERD_VERSIONS = {
    "Server": "policy.linkerd.io/v1beta3", "HTTPRoute": "policy.linkerd.io/v1beta3",
    "AuthorizationPolicy": "policy.linkerd.io/v1alpha1", "MeshTLSAuthentication": "policy.linkerd.io/v1alpha1",
    "NetworkAuthentication": "policy.linkerd.io/v1alpha1",
}

SCHEMAS = {
    "PrometheusRule": PROMETHEUS_RULE, "ServiceMonitor": SERVICE_MONITOR, "PodMonitor": POD_MONITOR,
    "Server": LINKERD_SERVER, "HTTPRoute": LINKERD_HTTP_ROUTE, "AuthorizationPolicy": LINKERD_AUTHORIZATION_POLICY,
    "MeshTLSAuthentication": LINKERD_MESH_TLS_AUTHENTICATION, "NetworkAuthentication": LINKERD_NETWORK_AUTHENTICATION,
}


def problems(value: Any, schema: Any, where: str = "") -> list[str]:
    """Field paths that are unknown, missing or of the wrong type; [] when the object fits."""
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            return [f"{where or '.'}: expected a mapping"]
        allowed = {key.rstrip("!"): sub for key, sub in schema.items()}
        found = [f"{where}.{key}: unknown field" for key in value if key not in allowed]
        found += [f"{where}.{key.rstrip('!')}: missing" for key in schema if key.endswith("!") and key.rstrip("!") not in value]
        for key, sub in allowed.items():
            if key in value:
                found += problems(value[key], sub, f"{where}.{key}")
        return found
    if isinstance(schema, list):
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        return [p for i, item in enumerate(value) for p in problems(item, schema[0], f"{where}[{i}]")]
    return [] if isinstance(value, schema) and not (isinstance(value, bool) and schema is int) else [f"{where}: expected {schema}"]
