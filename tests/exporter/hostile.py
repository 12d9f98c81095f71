"""Hostile sidecars for tests: answers chosen by path, so that one proxy can serve good metrics
and a poisoned /certs, or poisoned metrics and a good /certs."""

from __future__ import annotations

from typing import Callable

from tests.exporter.faults import _reply


def by_path(answers: dict[str, bytes | Callable[[], bytes]]):
    """A proxy answering each path of `answers` (whatever the query) with 200 and that body (or
    what calling it gives), any other path 404."""
    def respond(handler, stop) -> None:
        target = handler.request_line.split(" ")[1] if handler.request_line.count(" ") >= 2 else ""
        path = target.partition("?")[0]  # the exporter adds Envoy's stats filter as a query
        if path in answers:
            body = answers[path]
            _reply(handler, "200 OK", body() if callable(body) else body)
        else:
            _reply(handler, "404 Not Found", b"")
    return respond


def envoy(denied: str = "3", handshakes: str = "7", extra: str = "") -> bytes:
    """A Consul Envoy's exposition with the given raw values (any text, so also +Inf, NaN, -1)."""
    return (f"# TYPE envoy_listener_ssl_handshake counter\n"
            f'envoy_listener_ssl_handshake{{envoy_listener_address="public_listener"}} {handshakes}\n'
            f"envoy_http_rbac_denied{{}} {denied}\n"
            f"{extra}"
            f"envoy_server_live{{}} 1\n").encode()


def certs_json(leaf: str) -> bytes:
    return ('{"certificates": [{"cert_chain": [{"expiration_time": "%s"}], "ca_cert": []}]}' % leaf).encode()
