"""Documented fields of the prometheus-operator kinds meshobs renders (monitoring.coreos.com/v1
API reference: PrometheusRule, ServiceMonitor, PodMonitor), as a small tree to check manifests against:
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

SCHEMAS = {"PrometheusRule": PROMETHEUS_RULE, "ServiceMonitor": SERVICE_MONITOR, "PodMonitor": POD_MONITOR}


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
