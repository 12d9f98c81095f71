"""Access logs and traces per mesh, all from the one record in meshobs.accesslog.

`render(cfg, dialect)` returns every file under `collectors/<mesh>/`: the proxy's access-log and
tracing settings in the mesh's own terms, the Fluentd config and manifests that ship those logs,
and the OpenTelemetry Collector and Jaeger that receive the traces (OTLP only).
"""

from __future__ import annotations

from meshobs.config import Config
from meshobs.render.collectors import consul, envoy, fluentd, istio, linkerd, otel

_MESH_PARTS = {"istio": (envoy.render, istio.render), "linkerd": (linkerd.render,), "consul": (envoy.render, consul.render)}


def render(cfg: Config, dialect) -> dict[str, bytes]:
    mesh = dialect.name
    files: dict[str, str] = {}
    for part in (*_MESH_PARTS[mesh], fluentd.render, otel.render):
        files.update(part(cfg, mesh))
    return {f"collectors/{mesh}/{name}": text.encode() for name, text in sorted(files.items())}
