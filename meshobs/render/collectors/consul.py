"""Consul: one `proxy-defaults` config entry (Kubernetes CRD, HCL and JSON forms) turning on
JSON access logs at HTTP and listener level, and OTLP tracing to the Collector.

Consul filters its listener-level log on the `NR` flag, so failed handshakes are not logged
there (see docs/collectors.md); the exporter's counters cover them."""

from __future__ import annotations

import json
from typing import Any

from meshobs import accesslog, yamlfmt
from meshobs.config import Config
from meshobs.render.collectors import tracing


def _compact(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _entry(cfg: Config) -> dict[str, Any]:
    """The config entry in Consul's own (CamelCase) terms; the CRD form is derived from it."""
    encoding = cfg.logging.access_log_encoding
    logs: dict[str, Any] = {"Enabled": True, "DisableListenerLogs": False, "Type": "stdout"}
    if encoding == "json":
        logs["JSONFormat"] = accesslog.envoy_json_format_string()
    else:
        logs["TextFormat"] = accesslog.envoy_text_format()
    return {
        "Kind": "proxy-defaults",
        "Name": "global",
        "AccessLogs": logs,
        "Config": {
            "protocol": "http",
            "envoy_listener_tracing_json": _compact(
                {"@type": tracing.HCM_TRACING_TYPE, **tracing.hcm_tracing(cfg, "consul-sidecar")}
            ),
            "envoy_extra_static_clusters_json": _compact(tracing.otlp_cluster(cfg)),
        },
    }


def _crd_key(key: str) -> str:
    return {"JSONFormat": "jsonFormat", "TextFormat": "textFormat"}.get(key, key[:1].lower() + key[1:])


def crd(cfg: Config) -> dict[str, Any]:
    entry = _entry(cfg)
    return {
        "apiVersion": "consul.hashicorp.com/v1alpha1",
        "kind": "ProxyDefaults",
        "metadata": {"name": entry["Name"]},
        "spec": {
            "accessLogs": {_crd_key(k): v for k, v in entry["AccessLogs"].items()},
            # Keys of the opaque Config map are Envoy escape hatches: passed through unchanged.
            "config": entry["Config"],
        },
    }


def _hcl_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def hcl(cfg: Config) -> str:
    lines = []
    for key, value in _entry(cfg).items():
        if isinstance(value, dict):
            lines.append(f"{key} {{")
            lines += [f"  {k} = {_hcl_value(v)}" for k, v in value.items()]
            lines.append("}")
        else:
            lines.append(f"{key} = {_hcl_value(value)}")
    return "\n".join(lines) + "\n"


def render(cfg: Config, mesh: str) -> dict[str, str]:
    return {
        "proxy-defaults.yaml": yamlfmt.dump(crd(cfg)),
        "proxy-defaults.hcl": hcl(cfg),
        "proxy-defaults.json": json.dumps(_entry(cfg), indent=2) + "\n",
    }
