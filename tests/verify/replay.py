"""Replay targets: one HTTP server per `meshdata.Target` (as each sidecar has its own address),
counters growing with the time since start, so `rate()` sees the rates the scenario declares."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.meshdata import Target
from tests.support.procs import free_port


def _server(target: Target, started: float) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.split("?")[0] != target.path:
                self.send_error(404)
                return
            body = target.render(time.monotonic() - started).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # keep test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class Replay:
    def __init__(self, targets: list[Target]):
        started = time.monotonic()
        self.servers = [(target, _server(target, started)) for target in targets]

    @classmethod
    def start(cls, request, targets: list[Target]) -> "Replay":
        """Replay servers stopped when the pytest `request`'s test ends."""
        replay = cls(targets)
        request.addfinalizer(replay.stop)
        return replay

    def addresses(self) -> list[tuple[Target, str]]:
        return [(target, f"127.0.0.1:{server.server_port}") for target, server in self.servers]

    def stop(self) -> None:
        for _, server in self.servers:
            server.shutdown()
            server.server_close()
