"""Fluentd's forward protocol (v1), client side: one event per Message-mode entry
`[tag, time, record]` over TCP, after the shared-key handshake when a key is given.

fluent-logger has no handshake, and a Fluentd forward input that accepts anyone's records lets
any pod forge security events; hence this small client. The handshake (HELO, PING, PONG) proves
the key both ways without sending it: the client answers the server's nonce with
SHA-512(salt + hostname + nonce + key), and checks the server's SHA-512(salt + server hostname
+ nonce + key) in return, so a listener that does not know the key never receives an event.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import time

import msgpack

# A HELO or PONG is a few hundred bytes; anything much larger is not Fluentd.
_MAX_HANDSHAKE_BYTES = 64 * 1024


class ForwardError(Exception):
    """The peer is not a Fluentd forward input that knows the shared key."""


def digest(salt: bytes, hostname: str, nonce: bytes, key: bytes) -> str:
    return hashlib.sha512(salt + hostname.encode() + nonce + key).hexdigest()


class ForwardSender:
    """Sends events to one Fluentd; reconnects (and shakes hands again) after any failure."""

    def __init__(self, host: str, port: int, timeout: float = 1.0, shared_key: bytes | None = None,
                 hostname: str | None = None):
        self.host, self.port, self.timeout = host, port, timeout
        self.shared_key = shared_key
        self.hostname = hostname or socket.gethostname()
        self.last_error: Exception | None = None
        self._sock: socket.socket | None = None

    def _read(self, sock: socket.socket, unpacker: msgpack.Unpacker) -> object:
        while True:
            for message in unpacker:
                return message
            data = sock.recv(4096)
            if not data:
                raise ForwardError("Fluentd closed the connection during the handshake")
            unpacker.feed(data)

    def _handshake(self, sock: socket.socket, key: bytes) -> None:
        unpacker = msgpack.Unpacker(raw=True, max_buffer_size=_MAX_HANDSHAKE_BYTES)
        helo = self._read(sock, unpacker)
        if not (isinstance(helo, list) and len(helo) == 2 and helo[0] == b"HELO" and isinstance(helo[1], dict)
                and isinstance(helo[1].get(b"nonce"), bytes)):
            raise ForwardError("no HELO from Fluentd: is its forward input configured with <security>?")
        nonce = helo[1][b"nonce"]
        if helo[1].get(b"auth"):
            raise ForwardError("Fluentd asks for a user name and password; only the shared key is supported")
        salt = os.urandom(16)
        sock.sendall(msgpack.packb(["PING", self.hostname, salt, digest(salt, self.hostname, nonce, key), "", ""],
                                   use_bin_type=True))
        pong = self._read(sock, unpacker)
        if not (isinstance(pong, list) and len(pong) == 5 and pong[0] == b"PONG"):
            raise ForwardError("no PONG from Fluentd")
        _, accepted, reason, server, proof = pong
        if accepted is not True:
            raise ForwardError(f"Fluentd refused the shared key: {reason.decode(errors='replace')[:200]}")
        if not (isinstance(server, bytes) and isinstance(proof, bytes)
                and hmac.compare_digest(proof.decode(errors="replace"), digest(salt, server.decode(errors="replace"), nonce, key))):
            raise ForwardError("Fluentd's PONG does not prove the shared key")

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        try:
            if self.shared_key is not None:
                self._handshake(sock, self.shared_key)
        except BaseException:
            sock.close()
            raise
        return sock

    def emit(self, tag: str, record: dict) -> bool:
        """Send one event; False (and `last_error`) when it could not be sent."""
        try:
            if self._sock is None:
                self._sock = self._connect()
            self._sock.sendall(msgpack.packb([tag, int(time.time()), record], use_bin_type=True))
            return True
        except (OSError, ForwardError, ValueError, msgpack.UnpackException) as exc:
            self.last_error = exc
            self.close()
            return False

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
