"""Hostile sidecars for tests: answers chosen by path, so that one proxy can serve good metrics
and a poisoned /certs, or poisoned metrics and a good /certs."""

from __future__ import annotations

from tests.exporter.faults import _reply


def by_path(answers: dict[str, bytes]):
    """A proxy answering each path of `answers` with 200 and that body, any other path 404."""
    def respond(handler, stop) -> None:
        path = handler.request_line.split(" ")[1] if handler.request_line.count(" ") >= 2 else ""
        if path in answers:
            _reply(handler, "200 OK", answers[path])
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
