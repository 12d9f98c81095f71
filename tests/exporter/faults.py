"""Misbehaving proxies on loopback: one listening port per behaviour, raw sockets so that the
faults (hangs, truncation, bad bytes) are exactly what goes on the wire. Every request line
received is recorded, so tests can check what the exporter asked for."""

from __future__ import annotations

import socketserver
import threading
import time
from typing import Callable

Respond = Callable[[socketserver.StreamRequestHandler, threading.Event], None]

GOOD_BODY = (
    b"# TYPE envoy_listener_ssl_handshake counter\n"
    b'envoy_listener_ssl_handshake{envoy_listener_address="public_listener"} 7\n'
    b"envoy_http_rbac_denied{} 3\n"
    b"envoy_server_live{} 1\n"
)


def _reply(handler, status: str, body: bytes, headers: str = "") -> None:
    head = f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n{headers}\r\n"
    handler.wfile.write(head.encode() + body)


def good(body: bytes | Callable[[], bytes] = GOOD_BODY) -> Respond:
    """A healthy proxy; `body` may be a callable giving each scrape's body (moving counters)."""
    return lambda handler, stop: _reply(handler, "200 OK", body() if callable(body) else body)


def hang(handler, stop: threading.Event) -> None:
    stop.wait()


def error_status(handler, stop) -> None:
    _reply(handler, "500 Internal Server Error", b"upstream connect error\n")


def garbage(handler, stop) -> None:
    _reply(handler, "200 OK", b"<html><body>Welcome to nginx</body></html>\n")


def not_http(handler, stop) -> None:
    handler.wfile.write(b"SSH-2.0-OpenSSH_9.6\r\n")


def invalid_utf8(handler, stop) -> None:
    _reply(handler, "200 OK", b"envoy_listener_ssl_handshake{} 1\nenvoy_x{a=\"\xff\xfe\"} 2\n")


def truncated(handler, stop) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5000\r\n\r\n"
    handler.wfile.write(head + GOOD_BODY)  # then the connection closes, 5000 bytes promised


def huge(size: int) -> Respond:
    def respond(handler, stop) -> None:
        # no Content-Length: the size is only known by counting, which is what the cap must do
        handler.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
        line = b'envoy_cluster_upstream_rq{envoy_cluster_name="c"} 1\n'
        for _ in range(size // len(line) + 1):
            try:
                handler.wfile.write(line)
            except OSError:
                return
    return respond


class FaultServers:
    def __init__(self):
        self.requests: list[tuple[int, str]] = []  # (port, request line)
        self.arrivals: list[float] = []  # time.monotonic() of each request
        self._stop = threading.Event()
        self._servers: list[socketserver.ThreadingTCPServer] = []

    def add(self, respond: Respond, host: str = "127.0.0.1") -> int:
        """Listen on a free port of `host` (a loopback address) with `respond`; its port."""
        owner = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                request_line = self.rfile.readline().decode("latin-1").strip()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                self.request_line = request_line  # for responders that answer by path
                owner.requests.append((self.server.server_address[1], request_line))
                owner.arrivals.append(time.monotonic())
                respond(self, owner._stop)

        server = socketserver.ThreadingTCPServer((host, 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._servers.append(server)
        return server.server_address[1]

    def stop(self) -> None:
        self._stop.set()
        for server in self._servers:
            server.shutdown()
            server.server_close()


def _stream_head(handler) -> None:
    # no Content-Length: only counting can bound the body
    handler.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")


def _write_all(handler, blocks) -> None:
    for block in blocks:
        try:
            handler.wfile.write(block)
            handler.wfile.flush()
        except OSError:
            return


def drip(start: bytes, size: int, chunk: int = 4096) -> Respond:
    """One endless line beginning with `start`, dripped `chunk` bytes at a time."""
    def respond(handler, stop) -> None:
        _stream_head(handler)
        _write_all(handler, [GOOD_BODY + start] + [b"x" * chunk] * (size // chunk))
    return respond


def new_long_name(size: int) -> Respond:
    """Each scrape, a sample of a kept family whose name is `size` bytes long and new."""
    scrapes = iter(range(1_000_000))

    def respond(handler, stop) -> None:
        name = b"envoy_listener_ssl_handshake_" + b"%08d" % next(scrapes) + b"x" * size
        _reply(handler, "200 OK", GOOD_BODY + name + b"{} 1\n")
    return respond


def kept_flood(size: int) -> Respond:
    """`size` bytes of well-formed lines of a kept family, each a new series."""
    def respond(handler, stop) -> None:
        _stream_head(handler)
        lines = (b'envoy_listener_ssl_handshake{envoy_listener_address="l%d"} 1\n' % i for i in range(size // 60))
        blocks, block = [], []
        for index, line in enumerate(lines):
            block.append(line)
            if index % 5000 == 4999:
                blocks.append(b"".join(block))
                block = []
        _write_all(handler, [GOOD_BODY] + blocks + [b"".join(block)])
    return respond


def slow(delay: float, body: bytes = GOOD_BODY) -> Respond:
    """A healthy proxy that takes `delay` seconds to answer."""
    def respond(handler, stop) -> None:
        stop.wait(delay)
        _reply(handler, "200 OK", body)
    return respond
