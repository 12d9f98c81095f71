"""The exporter's HTTP endpoints, in a process of their own: `python -m meshobs.exporter.serve`.

The scrape process holds the interpreter for as long as a garbage collection or a batch of
parsing takes (0.1-0.8 s at 5,000 sidecars), and a thread of the same process waits as long. This
process does nothing but answer: it holds the last bytes the scrape process pushed through its
stdin (the rendered /metrics text, plain and gzip; the live series; the readiness answer; the
scrape loop's heartbeat) and never parses, renders or compresses anything.

stdin carries frames: one byte of kind, four bytes of big-endian length, the payload. End of file
means the scrape process is gone (whatever killed it, the kernel closes the pipe): this process
ends too. The listening socket is inherited as file descriptor `--fd`, bound by the parent.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HEADER = struct.Struct("!cI")
SPLIT = struct.Struct("!I")  # a two-part payload: the length of the first part, then both
BEAT = struct.Struct("!d?")  # heartbeat: the loop's last turn (CLOCK_MONOTONIC, shared by processes), ready

EXPOSITION = b"E"  # the state's series as last rendered: plain, gzip
LIVE = b"L"  # the few live series (process, cycle, discovery): plain, gzip
STATUS = b"S"  # BEAT, then the /readyz text


def two_parts(kind: bytes, first: bytes, second: bytes) -> list[bytes]:
    """The frame as pieces to write one after the other (~10 MB of text is not copied to join it)."""
    return [HEADER.pack(kind, SPLIT.size + len(first) + len(second)) + SPLIT.pack(len(first)), first, second]


def status(beat: float, ready: bool, text: str) -> list[bytes]:
    payload = BEAT.pack(beat, ready) + text.encode()
    return [HEADER.pack(STATUS, len(payload)) + payload]


class Held:
    """What was last pushed. Each attribute is replaced whole, so a reader never sees half of one."""

    def __init__(self, liveness_timeout: float):
        self.liveness_timeout = liveness_timeout
        self.exposition = (b"", b"")
        self.live = (b"", b"")
        self.beat = time.monotonic()  # a parent that never reports is dead after the same bound
        self.readiness = (False, b"not ready: starting\n")

    def take(self, kind: bytes, payload: bytearray) -> None:
        if kind in (EXPOSITION, LIVE):
            (size,) = SPLIT.unpack_from(payload)
            view = memoryview(payload)  # slices of the one buffer read, not copies
            parts = (view[SPLIT.size:SPLIT.size + size], view[SPLIT.size + size:])
            if kind == EXPOSITION:
                self.exposition = parts
            else:
                self.live = parts
        elif kind == STATUS:
            beat, ready = BEAT.unpack_from(payload)
            self.beat = beat
            self.readiness = (ready, bytes(payload[BEAT.size:]) + b"\n")

    def health(self) -> tuple[int, bytes]:
        still = time.monotonic() - self.beat
        if still > self.liveness_timeout:
            return 503, (f"unhealthy: the scrape loop has not run for {still:.0f}s "
                         f"(--liveness-timeout {self.liveness_timeout:g}s)\n").encode()
        return 200, b"ok\n"


def _read_exactly(stream, size: int) -> bytearray | None:
    data = bytearray(size)
    view = memoryview(data)
    got = 0
    while got < size:
        n = stream.readinto(view[got:])
        if not n:
            return None
        got += n
    return data


def follow(stream, held: Held) -> None:
    """Take frames until the parent closes the pipe, then end the process."""
    while True:
        header = _read_exactly(stream, HEADER.size)
        if header is None:
            break
        kind, size = HEADER.unpack(header)
        payload = _read_exactly(stream, size)
        if payload is None:
            break
        held.take(kind, payload)
    os._exit(0)


def handler(held: Held, content_type: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Prometheus and the kubelet use it
        timeout = 60  # an idle or dripping client lets go of its thread

        def do_GET(self) -> None:
            path = self.path.partition("?")[0]
            if path == "/metrics":
                live, exposition = held.live, held.exposition
                if "gzip" in self.headers.get("Accept-Encoding", ""):
                    # gzip members concatenated are one gzip stream of the concatenated text
                    self._answer(200, (live[1], exposition[1]), content_type, gzipped=True)
                else:
                    self._answer(200, (live[0], exposition[0]), content_type)
            elif path == "/healthz":
                status, text = held.health()
                self._answer(status, (text,))
            elif path == "/readyz":
                ready, text = held.readiness
                self._answer(200 if ready else 503, (text,))
            else:
                self._answer(404, (b"404: Not Found",))

        def _answer(self, status: int, parts: tuple[bytes, ...], content_type: str = "text/plain; charset=utf-8",
                    gzipped: bool = False) -> None:
            self.send_response_only(status)
            self.send_header("Content-Type", content_type)
            if gzipped:
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(sum(len(part) for part in parts)))
            self.end_headers()
            for part in parts:
                self.wfile.write(part)

        def log_message(self, format: str, *args) -> None:  # no access log, as before
            pass

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m meshobs.exporter.serve")
    parser.add_argument("--fd", type=int, required=True, help="the listening socket, bound by the parent")
    parser.add_argument("--liveness-timeout", type=float, required=True)
    parser.add_argument("--content-type", required=True)
    args = parser.parse_args(argv)
    # Ctrl-C reaches the whole process group: the parent stops, and this process with its pipe
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    held = Held(args.liveness_timeout)
    listening = socket.socket(fileno=args.fd)
    httpd = ThreadingHTTPServer(listening.getsockname()[:2], handler(held, args.content_type), bind_and_activate=False)
    httpd.socket.close()
    httpd.socket = listening
    httpd.daemon_threads = True
    threading.Thread(target=follow, args=(sys.stdin.buffer.raw, held), name="frames", daemon=True).start()
    httpd.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
