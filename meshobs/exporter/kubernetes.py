"""In-cluster pod discovery: read-only list and watch of pods (GET only), meshed pods only.

The service account token is re-read before every request (projected tokens rotate). A watch
that ends, or answers 410 Gone, is followed by a fresh list. `MESHOBS_SERVICEACCOUNT_DIR`
replaces /var/run/secrets/kubernetes.io/serviceaccount (out-of-cluster runs and tests).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import aiohttp

from meshobs.errors import ExporterError
from meshobs.exporter.targets import Target, make_target
from meshobs.meshes import DIALECTS as MESH_DIALECTS

log = logging.getLogger(__name__)

SERVICEACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


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


def _workload(pod: dict) -> str:
    meta = pod["metadata"]
    labels = meta.get("labels") or {}
    for owner in meta.get("ownerReferences") or []:
        if owner.get("controller"):
            name = owner["name"]
            template_hash = labels.get("pod-template-hash")
            if owner.get("kind") == "ReplicaSet" and template_hash and name.endswith("-" + template_hash):
                return name.removesuffix("-" + template_hash)  # the Deployment
            return name
    return labels.get("app.kubernetes.io/name") or labels.get("app") or meta["name"]


def pod_target(pod: dict) -> Target | None:
    """The proxy endpoint of a running meshed pod, or None (not meshed, not running, no IP)."""
    status, meta = pod.get("status") or {}, pod["metadata"]
    ip = status.get("podIP")
    if status.get("phase") != "Running" or not ip:
        return None
    annotations = meta.get("annotations") or {}
    containers = {c.get("name") for c in (pod.get("spec") or {}).get("containers") or []}
    host = f"[{ip}]" if ":" in ip else ip
    for mesh, dialect in MESH_DIALECTS.items():
        endpoint = dialect.discovery.endpoint(annotations, containers)
        if endpoint is not None:
            port, path = endpoint
            url = f"http://{host}:{port}{path}"
            break
    else:
        return None
    try:
        return make_target(url, mesh, meta["namespace"], _workload(pod))
    except ExporterError as exc:
        log.warning("pod %s/%s skipped: %s", meta["namespace"], meta["name"], exc)
        return None


class PodWatcher:
    def __init__(self, api: ApiServer, namespaces: list[str], retry_seconds: float = 1.0, watch_seconds: int = 300):
        self.api = api
        self.scopes = namespaces or [""]
        self.retry_seconds = retry_seconds
        self.watch_seconds = watch_seconds
        self._pods: dict[str, dict[str, Target]] = {scope: {} for scope in self.scopes}  # scope → uid → target
        self.synced = False
        self.first_sync = asyncio.Event()  # set once every scope has been listed
        self._listed: set[str] = set()

    def targets(self) -> set[Target]:
        return {t for pods in self._pods.values() for t in pods.values()}

    def _path(self, scope: str) -> str:
        return f"/api/v1/namespaces/{scope}/pods" if scope else "/api/v1/pods"

    def _apply(self, scope: str, kind: str, pod: dict) -> None:
        uid = pod["metadata"].get("uid") or f'{pod["metadata"].get("namespace")}/{pod["metadata"]["name"]}'
        target = pod_target(pod) if kind != "DELETED" else None
        if target is None:
            self._pods[scope].pop(uid, None)
        else:
            self._pods[scope][uid] = target

    async def _list(self, client: aiohttp.ClientSession, scope: str) -> str:
        async with client.get(self.api.url + self._path(scope), headers=self.api.headers()) as response:
            if response.status != 200:
                raise ExporterError(f"list pods: HTTP {response.status}")
            document = await response.json()
        self._pods[scope] = {}
        for pod in document.get("items") or []:
            self._apply(scope, "ADDED", pod)
        return document["metadata"]["resourceVersion"]

    async def _watch(self, client: aiohttp.ClientSession, scope: str, version: str) -> None:
        query = urlencode({"watch": "1", "resourceVersion": version, "allowWatchBookmarks": "true",
                           "timeoutSeconds": str(self.watch_seconds)})
        timeout = aiohttp.ClientTimeout(total=None, sock_read=self.watch_seconds + 30)
        async with client.get(f"{self.api.url}{self._path(scope)}?{query}", headers=self.api.headers(),
                              timeout=timeout) as response:
            if response.status != 200:
                raise ExporterError(f"watch pods: HTTP {response.status}")
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                if event["type"] == "ERROR":
                    return  # 410 Gone and friends: list again
                if event["type"] != "BOOKMARK":
                    self._apply(scope, event["type"], event["object"])

    async def _follow(self, client: aiohttp.ClientSession, scope: str, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                version = await self._list(client, scope)
                self._listed.add(scope)
                if self._listed == set(self.scopes):
                    self.synced = True
                    self.first_sync.set()
                await self._watch(client, scope, version)
            except (aiohttp.ClientError, OSError, ValueError, KeyError, ExporterError, TimeoutError) as exc:
                log.warning("kubernetes %s: %s; retrying in %.0fs", self._path(scope), exc, self.retry_seconds)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self.retry_seconds)
                except TimeoutError:
                    pass

    async def run(self, stop: asyncio.Event) -> None:
        connector = aiohttp.TCPConnector(ssl=self.api.ssl_context())
        async with aiohttp.ClientSession(connector=connector, trust_env=False) as client:
            await asyncio.gather(*(self._follow(client, scope, stop) for scope in self.scopes))
