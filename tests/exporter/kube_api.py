"""A tiny HTTPS server speaking the kube-apiserver's pod list/watch protocol (no kube-apiserver
runs here): GET /api/v1/pods lists (paginated by `limit`/`continue`, filtered by the
`status.phase=Running` field selector), `?watch=1` streams newline-delimited events pushed by the
test to every open watch. It records every request (method, path, Authorization header); its
CA can be rotated while it runs."""

from __future__ import annotations

import json
import queue
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.support.pki import CA


def pod(name: str, namespace: str, ip: str, annotations: dict | None = None, owner: tuple[str, str] | None = None,
        labels: dict | None = None, phase: str = "Running", containers: tuple[str, ...] = ("app",)) -> dict:
    metadata: dict = {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}",
                      "annotations": annotations or {}, "labels": labels or {}}
    if owner:
        metadata["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "controller": True}]
    return {"metadata": metadata, "spec": {"containers": [{"name": c} for c in containers]},
            "status": {"phase": phase, "podIP": ip}}


class KubeApi:
    def __init__(self, folder: Path, pods: list[dict], token: str = "test-token"):
        self.pods = pods
        self.requests: list[tuple[str, str, str]] = []
        self._watches: list[queue.Queue] = []  # one event queue per open watch
        self._lock = threading.Lock()
        self.watching = threading.Event()
        self.watches_opened = 0  # ready to receive pushed events
        self.list_gate = threading.Event()  # cleared by a test to hold list responses back
        self.list_gate.set()
        ca = CA(folder, "kube-ca")
        served = ca.issue("kube-apiserver", dns=("localhost",))
        self.serviceaccount = folder / "serviceaccount"
        self.serviceaccount.mkdir()
        (self.serviceaccount / "token").write_text(token + "\n")
        (self.serviceaccount / "ca.crt").write_bytes(ca.cert_path.read_bytes())
        (self.serviceaccount / "namespace").write_text("meshobs\n")
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                owner.requests.append(("GET", self.path, self.headers.get("Authorization", "")))
                if "watch=1" in self.path:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    events: queue.Queue = queue.Queue()
                    with owner._lock:
                        owner._watches.append(events)
                        owner.watches_opened += 1
                    owner.watching.set()
                    while (event := events.get()) is not None:
                        self.wfile.write(json.dumps(event).encode() + b"\n")
                        self.wfile.flush()
                    return
                owner.list_gate.wait(timeout=60)
                query = {key: values[0] for key, values in parse_qs(urlsplit(self.path).query).items()}
                items = owner.pods
                if query.get("fieldSelector") == "status.phase=Running":
                    items = [p for p in items if not isinstance(p, dict) or (p.get("status") or {}).get("phase") == "Running"]
                start = int(query.get("continue", "0"))
                end = start + int(query["limit"]) if "limit" in query else len(items)
                metadata = {"resourceVersion": "100"}
                if end < len(items):
                    metadata["continue"] = str(end)
                body = json.dumps({"kind": "PodList", "metadata": metadata, "items": items[start:end]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):  # never expected: recorded so a test can fail on it
                owner.requests.append(("POST", self.path, ""))
                self.send_response(405)
                self.end_headers()

            do_PUT = do_PATCH = do_DELETE = do_POST

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._folder = folder
        self._serving = self._context(served)
        listening = self._context(served)
        # each handshake switches to the context served now (the documented way to swap certificates)
        listening.sni_callback = lambda sock, name, _: setattr(sock, "context", self._serving) and None
        self._server.socket = listening.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @staticmethod
    def _context(served) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(served.cert), str(served.key))
        return context

    def rotate_ca(self) -> None:
        """Serve with a certificate of a new CA from now on, and put that CA in ca.crt."""
        ca = CA(self._folder, "kube-ca-rotated")
        served = ca.issue("kube-apiserver-rotated", dns=("localhost",))
        self._serving = self._context(served)
        (self.serviceaccount / "ca.crt").write_bytes(ca.cert_path.read_bytes())

    def close_watches(self) -> None:
        """End every open watch (as the API server does on timeout); the client lists again."""
        self._broadcast(None)
        with self._lock:
            self._watches.clear()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def env(self) -> dict[str, str]:
        """What a pod's environment would hold, pointing at this server."""
        return {"KUBERNETES_SERVICE_HOST": "localhost", "KUBERNETES_SERVICE_PORT": str(self.port),
                "MESHOBS_SERVICEACCOUNT_DIR": str(self.serviceaccount)}

    def _broadcast(self, item) -> None:
        with self._lock:
            for events in self._watches:
                events.put(item)

    def push(self, kind: str, obj: dict) -> None:
        """Send a watch event to every open watch."""
        self._broadcast({"type": kind, "object": obj})

    def stop(self) -> None:
        self._broadcast(None)
        self._server.shutdown()
        self._server.server_close()
