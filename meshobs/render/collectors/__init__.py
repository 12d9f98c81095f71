"""Access logs and traces per mesh, all from the one record in meshobs.accesslog.

`render(cfg, dialect)` returns every file under `collectors/<mesh>/`: the proxy's access-log and
tracing settings in the mesh's own terms, the Fluentd config and manifests that ship those logs,
and the OpenTelemetry Collector and Jaeger that receive the traces (OTLP only).
"""

from __future__ import annotations

from meshobs.config import Config
from meshobs.render.collectors import envoy

_MESH_PARTS = {"istio": (envoy.render,), "linkerd": (), "consul": (envoy.render,)}


def render(cfg: Config, dialect) -> dict[str, bytes]:
    mesh = dialect.name
    files: dict[str, str] = {}
    for part in _MESH_PARTS[mesh]:
        files.update(part(cfg, mesh))
    return {f"collectors/{mesh}/{name}": text.encode() for name, text in sorted(files.items())}
