"""A Fluentd forward-protocol receiver for tests (msgpack over TCP): Message mode
`[tag, time, record]`, Forward mode `[tag, [[time, record], ...]]` and PackedForward."""

from __future__ import annotations

import socketserver
import threading

import msgpack


class ForwardReceiver:
    def __init__(self):
        self.records: list[tuple[str, dict]] = []
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                unpacker = msgpack.Unpacker(raw=False)
                while data := self.request.recv(65536):
                    unpacker.feed(data)
                    for message in unpacker:
                        owner._accept(message)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

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
