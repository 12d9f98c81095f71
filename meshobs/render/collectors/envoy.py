"""Envoy `access_log` blocks for meshes whose proxy is Envoy: one for the HTTP connection
manager, one for the Listener (a line per connection, TLS handshake failures included)."""

from __future__ import annotations

from meshobs import accesslog, yamlfmt
from meshobs.config import Config
from meshobs.render.collectors.endpoints import ACCESS_LOG_PATH


def access_log_blocks(encoding: str, path: str = ACCESS_LOG_PATH) -> dict[str, list[dict]]:
    """`http_connection_manager` and `listener` access_log lists, same record at both levels."""
    entry = accesslog.envoy_file_access_log(path, encoding)
    return {"http_connection_manager": [entry], "listener": [entry]}


def render(cfg: Config, mesh: str) -> dict[str, str]:
    # Both encodings: the mesh settings use `logging.access_log_encoding`, the other is for hand-made proxies.
    return {f"envoy/access-log-{encoding}.yaml": yamlfmt.dump(access_log_blocks(encoding)) for encoding in ("json", "text")}
