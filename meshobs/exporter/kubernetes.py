"""In-cluster pod discovery: read-only list and watch of pods (GET only), meshed pods only.

The service account token is re-read before every request (projected tokens rotate). A watch
that ends, or answers 410 Gone, is followed by a fresh list. `MESHOBS_SERVICEACCOUNT_DIR`
replaces /var/run/secrets/kubernetes.io/serviceaccount (out-of-cluster runs and tests).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import aiohttp

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from meshobs.errors import ExporterError
from meshobs.exporter.pods import REJECT_REASONS, PodRejected, ambient_pod, pod_target, shown
from meshobs.exporter.targets import Target

log = logging.getLogger(__name__)

SERVICEACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
PAGE_SIZE = 500
RUNNING = "status.phase=Running"
# The API server stores objects up to 1.5 MB (etcd); a watch event is one object
MAX_EVENT_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ApiServer:
    url: str
    token_path: Path
    ca_path: Path

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token_path.read_text().strip()}", "Accept": "application/json"}

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_path))


def in_cluster() -> ApiServer:
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise ExporterError("--kubernetes: KUBERNETES_SERVICE_HOST/PORT are not set (not running in a pod?)")
    folder = Path(os.environ.get("MESHOBS_SERVICEACCOUNT_DIR", SERVICEACCOUNT_DIR))
    for name in ("token", "ca.crt"):
        if not (folder / name).is_file():
            raise ExporterError(f"--kubernetes: {folder / name} is missing (no service account mounted?)")
    host = f"[{host}]" if ":" in host else host
    return ApiServer(f"https://{host}:{port}", folder / "token", folder / "ca.crt")


class PodWatcher:
    """The meshed pods of some namespaces (all by default), as scrape targets.

    One pod can never stop discovery for the others: a pod whose annotations or fields are not
    acceptable is skipped, logged once per change with its name, and counted under
    `meshobs_discovery_rejected_total{reason}`; every other pod is taken as usual."""

    def __init__(self, api: ApiServer, namespaces: list[str], retry_seconds: float = 1.0, watch_seconds: int = 300,
                 page_size: int = PAGE_SIZE):
        self.api = api
        self.scopes = namespaces or [""]
        self.retry_seconds = retry_seconds
        self.watch_seconds = watch_seconds
        self.page_size = page_size
        self._pods: dict[str, dict[str, Target]] = {scope: {} for scope in self.scopes}  # scope → uid → target
        # scope → uid → (node, namespace, telemetry name, workload) of pods ztunnel captures
        self._ambient: dict[str, dict[str, tuple[str, str, str, str]]] = {scope: {} for scope in self.scopes}
        self._ambient_index: dict[tuple[str, str, str], set[str]] | None = None
        # scope → uid → why, so that each change of a rejected pod is logged and counted once
        self._rejected: dict[str, dict[str, str]] = {scope: {} for scope in self.scopes}
        self.rejections = dict.fromkeys(REJECT_REASONS, 0)
        self.synced = False
        self.synced_at: float | None = None  # time.monotonic() when every scope had been listed
        self.first_sync = asyncio.Event()  # set once every scope has been listed
        self._listed: set[str] = set()

    def targets(self) -> set[Target]:
        return {t for pods in self._pods.values() for t in pods.values()}

    def _path(self, scope: str) -> str:
        return f"/api/v1/namespaces/{scope}/pods" if scope else "/api/v1/pods"

    def _reject(self, scope: str, uid: str, who: str, reason: str, detail: str) -> None:
        why = f"{reason}: {detail}"
        if self._rejected[scope].get(uid) != why:
            self._rejected[scope][uid] = why
            self.rejections[reason] += 1
            log.warning("pod %s skipped (%s)", who, why)

    def resolve(self, node: str, namespace: str, name: str) -> str | None:
        """The workload of the pod ztunnel calls `namespace`/`name` on `node`, if one is captured
        there (`state.Resolve`). Several workloads of one name there (a pod may choose its
        telemetry name by a label): the one whose controller has that name, else none."""
        if self._ambient_index is None:
            index: dict[tuple[str, str, str], set[str]] = {}
            for found in self._ambient.values():
                for pod_node, pod_namespace, telemetry, workload in found.values():
                    index.setdefault((pod_node, pod_namespace, telemetry), set()).add(workload)
            self._ambient_index = index
        workloads = self._ambient_index.get((node, namespace, name), set())
        if len(workloads) == 1:
            return next(iter(workloads))
        return name if name in workloads else None

    def _take_ambient(self, ambient: dict[str, tuple[str, str, str, str]], uid: str, kind: str, pod: object) -> None:
        try:
            found = None if kind == "DELETED" else ambient_pod(pod)
        except Exception:  # a malformed pod is rejected by pod_target; it is nobody's claim
            found = None
        if ambient.get(uid) != found:
            self._ambient_index = None
            if found is None:
                ambient.pop(uid, None)
            else:
                ambient[uid] = found

    def _take(self, scope: str, pods: dict[str, Target], kind: str, pod: object,
              ambient: dict[str, tuple[str, str, str, str]] | None = None) -> str:
        """Apply one listed or watched pod to `pods` (and `ambient`, by default the scope's); its uid."""
        meta = pod.get("metadata") if isinstance(pod, dict) else None
        if not isinstance(meta, dict):
            # no name to go by: known by its content, so that a re-list does not count it again
            uid = "object:" + hashlib.sha1(repr(pod).encode()).hexdigest()
            self._reject(scope, uid, f"object {shown(pod)}", "bad_object", "not a pod")
            return uid
        who = f"{shown(meta.get('namespace'))}/{shown(meta.get('name'))}"
        uid = str(meta.get("uid") or who)
        self._take_ambient(self._ambient[scope] if ambient is None else ambient, uid, kind, pod)
        target = None
        if kind != "DELETED":
            try:
                target = pod_target(pod)
            except PodRejected as exc:
                self._reject(scope, uid, who, exc.reason, str(exc))
            except Exception as exc:  # whatever a pod holds, discovery goes on for the others
                self._reject(scope, uid, who, "bad_object", f"{type(exc).__name__}: {shown(str(exc))}")
            else:
                self._rejected[scope].pop(uid, None)
        else:
            self._rejected[scope].pop(uid, None)
        if target is None:
            pods.pop(uid, None)
        else:
            pods[uid] = target
        return uid

    async def _list(self, client: aiohttp.ClientSession, scope: str) -> str:
        """List the running pods page by page; the list's resourceVersion, to watch from."""
        pods: dict[str, Target] = {}
        ambient: dict[str, tuple[str, str, str, str]] = {}
        seen: set[str] = set()
        query = {"limit": str(self.page_size), "fieldSelector": RUNNING}
        while True:
            async with client.get(f"{self.api.url}{self._path(scope)}?{urlencode(query)}",
                                  headers=self.api.headers()) as response:
                if response.status != 200:
                    raise ExporterError(f"list pods: HTTP {response.status}")
                document = await response.json()
            for pod in document.get("items") or []:
                seen.add(self._take(scope, pods, "ADDED", pod, ambient))
            resume = document["metadata"].get("continue")
            if not resume:
                break
            query["continue"] = resume
        self._pods[scope] = pods
        self._ambient[scope], self._ambient_index = ambient, None
        self._rejected[scope] = {uid: why for uid, why in self._rejected[scope].items() if uid in seen}
        return document["metadata"]["resourceVersion"]

    async def _watch(self, client: aiohttp.ClientSession, scope: str, version: str) -> None:
        query = urlencode({"watch": "1", "resourceVersion": version, "allowWatchBookmarks": "true",
                           "fieldSelector": RUNNING, "timeoutSeconds": str(self.watch_seconds)})
        timeout = aiohttp.ClientTimeout(total=None, sock_read=self.watch_seconds + 30)
        async with client.get(f"{self.api.url}{self._path(scope)}?{query}", headers=self.api.headers(),
                              timeout=timeout) as response:
            if response.status != 200:
                raise ExporterError(f"watch pods: HTTP {response.status}")
            async for line in _lines(response.content, MAX_EVENT_BYTES):
                event = json.loads(line)
                kind = event.get("type")
                if kind == "ERROR":
                    return  # 410 Gone and friends: list again
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self._take(scope, self._pods[scope], kind, event.get("object"))

    async def _follow(self, scope: str, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                # a new connection per list and watch, with the CA file as it is now: a rotated
                # API server CA is picked up at the next reconnect
                connector = aiohttp.TCPConnector(ssl=self.api.ssl_context())
                async with aiohttp.ClientSession(connector=connector, trust_env=False) as client:
                    version = await self._list(client, scope)
                    self._listed.add(scope)
                    if self._listed == set(self.scopes) and not self.synced:
                        self.synced, self.synced_at = True, time.monotonic()
                        self.first_sync.set()
                    await self._watch(client, scope, version)
            except Exception as exc:  # whatever the API server answers, discovery goes on
                log.warning("kubernetes %s: %s; retrying in %.0fs", self._path(scope), shown(str(exc), 300),
                            self.retry_seconds)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self.retry_seconds)
                except TimeoutError:
                    pass

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(*(self._follow(scope, stop) for scope in self.scopes))

    def collector(self) -> "DiscoveryCollector":
        return DiscoveryCollector(self)


class DiscoveryCollector(Collector):
    def __init__(self, watcher: PodWatcher):
        self.watcher = watcher

    def collect(self):
        rejected = CounterMetricFamily("meshobs_discovery_rejected", "Meshed pods skipped by discovery (each change of "
                                       "a pod counted once), by reason.", labels=["reason"])
        for reason, count in self.watcher.rejections.items():
            rejected.add_metric([reason], count)
        yield rejected


async def _lines(stream: aiohttp.StreamReader, limit: int):
    """Newline-delimited lines of at most `limit` bytes (aiohttp's own line reader fails on a
    pod with large annotations, which would restart the watch for ever)."""
    parts: list[bytes] = []  # the line so far, in pieces: joined once, so linear in its length
    size = 0
    async for chunk in stream.iter_any():
        *complete, rest = chunk.split(b"\n")
        for piece in complete:
            if size + len(piece) > limit:
                raise ExporterError(f"watch event above {limit} bytes")
            line = b"".join(parts) + piece if parts else piece
            parts, size = [], 0
            if line.strip():
                yield line
        parts.append(rest)
        size += len(rest)
        if size > limit:
            raise ExporterError(f"watch event above {limit} bytes")
