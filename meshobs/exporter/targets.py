"""What a scrape target is, and how a static `--target` spec reads."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import urlsplit

from meshobs.errors import ExporterError
from meshobs.exporter.normalize import DIALECTS

# Read-only admin paths; nothing else is ever requested (never /quitquitquit, /logging,
# /runtime_modify, /reset_counters, /healthcheck/fail, /drain_listeners...).
READ_ONLY_PATHS = frozenset({"/stats/prometheus", "/metrics", "/certs"})


@dataclass(frozen=True)
class Target:
    url: str  # scheme://host:port/path, no query
    mesh: str
    namespace: str
    workload: str
    # "" for a sidecar; "ztunnel" or "waypoint" for Istio's ambient data plane (normalize.ROLES)
    role: str = ""
    # a ztunnel's node: it may speak only for the pods there
    node: str = ""

    @property
    def workload_key(self) -> tuple[str, str, str]:
        return (self.mesh, self.namespace, self.workload)

    @property
    def instance(self) -> str:
        return urlsplit(self.url).netloc

    def shard(self, count: int) -> int:
        """The shard of the target's workload: all pods of a workload go to one replica, so its
        counters, burst detection and events see the whole workload, and a pod restarting with a
        new IP does not move counts between replicas. Stable across processes (not `hash()`)."""
        digest = hashlib.sha1("/".join(self.workload_key).encode()).digest()
        return int.from_bytes(digest[:8], "big") % count


def redact(url: str) -> str:
    """`url` with any user info replaced by `***`: credentials are never logged or exported."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return f"{scheme}{sep}{netloc}{slash}{path}"


def _port(parts) -> int | None:
    try:
        return parts.port
    except ValueError:  # not a number, or outside 0-65535
        return None


def make_target(url: str, mesh: str, namespace: str, workload: str, role: str = "", node: str = "") -> Target:
    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise ExporterError(f"target {redact(url)!r}: user info is not allowed")
    port = _port(parts)
    if parts.scheme not in ("http", "https") or not parts.hostname or not port:
        raise ExporterError(f"target {url!r}: expected http(s)://HOST:PORT[/PATH]")
    if mesh not in DIALECTS:
        raise ExporterError(f"target {url!r}: unknown mesh {mesh!r} (one of {', '.join(sorted(DIALECTS))})")
    if parts.query or parts.fragment:
        raise ExporterError(f"target {url!r}: query strings are not allowed")
    path = parts.path or DIALECTS[mesh].default_path
    if path not in READ_ONLY_PATHS:
        raise ExporterError(f"target {url!r}: path {path} is not one of the read-only paths {', '.join(sorted(READ_ONLY_PATHS))}")
    if not namespace or not workload:
        raise ExporterError(f"target {url!r}: namespace and workload must not be empty")
    return Target(f"{parts.scheme}://{parts.netloc}{path}", mesh, namespace, workload, role, node)


def guess_mesh(url: str) -> str:
    parts = urlsplit(url)
    if parts.path == "/metrics" or parts.port == 4191:
        return "linkerd"
    return "istio" if parts.port == 15090 else "consul"


TARGET_HELP = (
    "a proxy to scrape, repeatable: [MESH[/NAMESPACE[/WORKLOAD]]=]URL, e.g. "
    "consul/default/backend=http://10.0.0.7:19000/stats/prometheus. MESH is istio, consul or linkerd "
    "(default: linkerd for /metrics or port 4191, istio for port 15090, else consul); NAMESPACE defaults "
    "to 'default', WORKLOAD to HOST:PORT; PATH defaults to the mesh's metrics path"
)


def parse_target_spec(spec: str) -> Target:
    head, sep, url = spec.partition("=")
    if not sep or "://" in head:
        head, url = "", spec
    fields = head.split("/") if head else []
    if len(fields) > 3:
        raise ExporterError(f"--target {spec!r}: expected [MESH[/NAMESPACE[/WORKLOAD]]=]URL")
    mesh = fields[0] if fields else guess_mesh(url)
    namespace = fields[1] if len(fields) > 1 else "default"
    workload = fields[2] if len(fields) > 2 else urlsplit(url).netloc
    return make_target(url, mesh, namespace, workload)
