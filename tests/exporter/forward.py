"""A Fluentd forward-protocol receiver for tests (msgpack over TCP): Message mode
`[tag, time, record]`, Forward mode `[tag, [[time, record], ...]]` and PackedForward; with a
shared key, the `<security>` handshake of Fluentd's in_forward first (HELO, PING checked, PONG),
or, with `prove=False`, an impostor that takes any PING and answers a PONG that cannot prove the key."""

from __future__ import annotations

import hashlib
import os
import socketserver
import threading

import msgpack

HOSTNAME = "fluentd-test"


def _digest(salt: bytes, hostname: str, nonce: bytes, key: bytes) -> str:
    # in_forward's own computation, written out again so that the test does not trust the client's
    return hashlib.sha512(salt + hostname.encode() + nonce + key).hexdigest()


class ForwardReceiver:
    def __init__(self, shared_key: bytes | None = None, prove: bool = True):
        self.records: list[tuple[str, dict]] = []
        self.refused = 0  # PINGs whose digest was wrong
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                unpacker = msgpack.Unpacker(raw=False)
                if shared_key is not None and not owner._handshake(self.request, unpacker, shared_key, prove):
                    return
                while data := self.request.recv(65536):
                    unpacker.feed(data)
                    for message in unpacker:
                        owner._accept(message)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _handshake(self, sock, unpacker, key: bytes, prove: bool) -> bool:
        nonce = os.urandom(16)
        sock.sendall(msgpack.packb(["HELO", {"nonce": nonce, "auth": b"", "keepalive": True}], use_bin_type=True))
        ping = None
        while ping is None and (data := sock.recv(65536)):
            unpacker.feed(data)
            ping = next(iter(unpacker), None)
        if ping is None:
            return False
        _, hostname, salt, proof, _, _ = ping
        if prove and proof != _digest(salt, hostname, nonce, key):  # an impostor takes any PING
            self.refused += 1
            sock.sendall(msgpack.packb(["PONG", False, "shared_key mismatch", "", ""], use_bin_type=True))
            return False
        answer = _digest(salt, HOSTNAME, nonce, key if prove else b"not the key")
        sock.sendall(msgpack.packb(["PONG", True, "", HOSTNAME, answer], use_bin_type=True))
        return True

    def _accept(self, message: list) -> None:
        tag, entries = message[0], message[1]
        if isinstance(entries, (bytes, bytearray)):  # PackedForward
            entries = list(_unpack_all(entries))
        if isinstance(entries, list):
            for _, record in entries:
                self.records.append((tag, record))
        else:
            self.records.append((tag, message[2]))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def tagged(self, tag: str) -> list[dict]:
        return [record for t, record in list(self.records) if t == tag]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _unpack_all(data: bytes):
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    yield from unpacker
