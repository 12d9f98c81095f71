"""Fetch one admin path: GET only, read-only paths only, a timeout and a size cap enforced while
reading.

A small HTTP/1.1 client on an `asyncio.Protocol`, not aiohttp: at thousands of sidecars the
generic client's per-request work (and, with 15 s intervals, a new connection per scrape once
its keep-alive expired) cost as much CPU as scanning the 300 kB body. Here each target keeps
one idle connection between scrapes, the body is handed to the caller's sink from
`data_received` as it arrives (Content-Length, chunked, or until the proxy closes), and
nothing is buffered unless the caller wants the body whole.

Every failure becomes a `ScrapeError` whose `reason` is one of the
`meshobs_scrape_errors_total` reasons.
"""

from __future__ import annotations

import asyncio
import functools
import re
import resource
import ssl
import time
from typing import Callable
from urllib.parse import urlsplit

from meshobs.exporter.normalize import DIALECTS
from meshobs.exporter.targets import READ_ONLY_PATHS

# the only query strings ever sent: none, or a dialect's constant stats filter
READ_ONLY_QUERIES = frozenset({""} | {dialect.stats_query for dialect in DIALECTS.values()})
# a proxy's status line and headers are a few hundred bytes
HEAD_BYTES = 64 * 1024
# a chunk-size line is a few hex digits (and maybe an extension nobody sends)
CHUNK_LINE_BYTES = 1024
_CHUNK_SIZE = re.compile(r"[0-9a-fA-F]{1,16}")
# file descriptors kept free of idle connections (the endpoints, the Kubernetes API, logs)
SPARE_FDS = 256


class ScrapeError(Exception):
    def __init__(self, reason: str, detail: str):
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


class _Stale(Exception):
    """A kept-alive connection the proxy had closed before it sent anything: ask again on a new one."""


@functools.lru_cache(maxsize=16384)  # the same few URLs per target, every cycle
def _request(url: str) -> tuple[tuple[str, str, int], bytes]:
    """((scheme, host, port), the request bytes) of a read-only URL."""
    parts = urlsplit(url)
    if parts.path not in READ_ONLY_PATHS or parts.query not in READ_ONLY_QUERIES:
        # a guard, not a branch taken: targets are validated when discovered
        raise ScrapeError("http_status", f"refusing {parts.path}: not a read-only admin path and query")
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    # sent exactly as built (targets are validated, the query is a constant): no re-quoting
    request = (f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: meshobs-exporter\r\n"
               f"Accept-Encoding: identity\r\n\r\n").encode("ascii")
    return (parts.scheme, parts.hostname, port), request


class _Response(asyncio.Protocol):
    """One connection; reads one response at a time, handing body bytes to `sink`."""

    def __init__(self):
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future | None = None
        self.closed = False
        self.reused = False

    # --- the calling side

    def start(self, request: bytes, max_bytes: int, sink: Callable[[bytes], None]) -> asyncio.Future:
        self.done = asyncio.get_running_loop().create_future()
        self.max_bytes, self.sink = max_bytes, sink
        self.head = b""
        self.received = 0  # any byte of this response
        self.size = 0  # body bytes
        self.remaining: int | None = None  # Content-Length left, or of the current chunk
        self.chunked = False
        self.chunk_state = "size"  # size | data | crlf | trailer
        self.chunk_line = b""
        self.keep_alive = False
        self.transport.write(request)
        return self.done

    # --- asyncio.Protocol

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed = True
        done = self.done
        if done is None or done.done():
            return
        if self.received == 0 and self.reused:
            done.set_exception(_Stale())
        elif self.head is not None:
            done.set_exception(ScrapeError("bad_payload", "the connection closed before a complete response head"))
        elif self.remaining is None and not self.chunked:
            done.set_result(None)  # no length given: the body ends where the proxy closes
        else:
            done.set_exception(ScrapeError("bad_payload", f"the connection closed after {self.size} body bytes, "
                                                          "before the end of the body"))

    def data_received(self, data: bytes) -> None:
        done = self.done
        if done is None or done.done():
            self.transport.abort()  # bytes nobody asked for: this connection is not reused
            return
        self.received += len(data)
        try:
            if self.head is not None:
                data = self._head(data)
                if data is None:
                    return
            if self.chunked:
                self._chunks(data)
            else:
                self._body(data)
        except Exception as exc:  # a sink's PayloadError, or a ScrapeError: the fetch fails with it
            self.transport.abort()
            if not done.done():
                done.set_exception(exc)

    # --- parsing

    def _head(self, data: bytes) -> bytes | None:
        head = self.head + data
        end = head.find(b"\r\n\r\n")
        if end < 0:
            if len(head) > HEAD_BYTES:
                raise ScrapeError("bad_payload", f"no end of the response head within {HEAD_BYTES} bytes")
            self.head = head
            return None
        self.head = None
        lines = head[:end].decode("latin-1").split("\r\n")
        status = lines[0].split(" ", 2)
        if len(status) < 2 or not status[0].startswith("HTTP/1.") or not status[1].isdigit():
            raise ScrapeError("bad_payload", f"not an HTTP response: {lines[0][:100]!r}")
        if status[1] != "200":
            raise ScrapeError("http_status", f"HTTP {status[1]}")
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise ScrapeError("bad_payload", f"malformed response header: {line[:100]!r}")
            headers[name.strip().lower()] = value.strip()
        connection = headers.get("connection", "").lower()
        self.keep_alive = "close" not in connection and (status[0] != "HTTP/1.0" or "keep-alive" in connection)
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self.chunked = True
        elif "content-length" in headers:
            length = headers["content-length"]
            if not (length.isascii() and length.isdigit()):
                raise ScrapeError("bad_payload", f"Content-Length {length[:40]!r} is not a number")
            if int(length) > self.max_bytes:
                raise ScrapeError("too_large", f"Content-Length {length} > {self.max_bytes}")
            self.remaining = int(length)
        else:
            self.keep_alive = False  # the body ends where the proxy closes
        rest = head[end + 4:]
        if not self.chunked and self.remaining == 0:
            self._finish(rest)
            return None
        return rest

    def _take(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.max_bytes:
            raise ScrapeError("too_large", f"body above {self.max_bytes} bytes")
        if data:
            self.sink(data)

    def _finish(self, extra: bytes) -> None:
        if extra:  # more than the response: never reuse a connection out of step
            self.keep_alive = False
        self.done.set_result(None)

    def _body(self, data: bytes) -> None:
        if self.remaining is None:
            self._take(data)
        elif len(data) < self.remaining:
            self.remaining -= len(data)
            self._take(data)
        else:
            self._take(data[:self.remaining])
            extra, self.remaining = data[self.remaining:], 0
            self._finish(extra)

    def _chunks(self, data: bytes) -> None:
        pos = 0
        while pos < len(data):
            state = self.chunk_state
            if state == "data":
                piece = data[pos:pos + self.remaining]
                pos += len(piece)
                self.remaining -= len(piece)
                self._take(piece)
                if self.remaining == 0:
                    self.chunk_state = "crlf"
                continue
            end = data.find(b"\n", pos)
            line = self.chunk_line + (data[pos:] if end < 0 else data[pos:end + 1])
            if len(line) > CHUNK_LINE_BYTES:
                raise ScrapeError("bad_payload", f"a chunk-size line above {CHUNK_LINE_BYTES} bytes")
            if end < 0:
                self.chunk_line = line
                return
            pos, self.chunk_line = end + 1, b""
            line = line.rstrip(b"\r\n")
            if state == "crlf":
                if line:
                    raise ScrapeError("bad_payload", "chunk data longer than its declared size")
                self.chunk_state = "size"
            elif state == "size":
                size_text = line.split(b";", 1)[0].strip().decode("latin-1")
                if _CHUNK_SIZE.fullmatch(size_text) is None:  # int() would take "+1", "1_0", " 1"
                    raise ScrapeError("bad_payload", f"malformed chunk size {size_text[:40]!r}")
                size = int(size_text, 16)
                if self.size + size > self.max_bytes:
                    raise ScrapeError("too_large", f"body above {self.max_bytes} bytes")
                self.remaining = size
                self.chunk_state = "data" if size else "trailer"
            elif not line:  # the empty line after the trailers: the end
                self._finish(data[pos:])
                return
            else:  # a trailer: ignored, but counted against the cap like the body
                self.size += len(line)
                if self.size > self.max_bytes:
                    raise ScrapeError("too_large", f"body above {self.max_bytes} bytes")


class Client:
    """Connections to the proxies, at most one idle per proxy between scrapes (the workers read
    each target one request at a time); idle ones older than `idle_seconds` are closed by
    `prune` (the targets gone since), and beyond the file-descriptor budget a connection is
    closed after its response rather than kept."""

    def __init__(self, idle_seconds: float = 60.0):
        self.idle_seconds = idle_seconds
        self._idle: dict[tuple[str, str, int], tuple[_Response, float]] = {}
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.max_idle = max(0, soft - SPARE_FDS)
        self._ssl: ssl.SSLContext | None = None

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for connection, _ in self._idle.values():
            connection.transport.abort()
        self._idle.clear()

    def prune(self) -> None:
        """Close the connections idle for longer than `idle_seconds`."""
        oldest = time.monotonic() - self.idle_seconds
        for origin in [origin for origin, (_, since) in self._idle.items() if since < oldest]:
            self._idle.pop(origin)[0].transport.abort()

    def idle(self) -> int:
        return len(self._idle)

    async def _connect(self, origin: tuple[str, str, int]) -> _Response:
        scheme, host, port = origin
        context = None
        if scheme == "https":
            context = self._ssl = self._ssl or ssl.create_default_context()
        try:
            _, connection = await asyncio.get_running_loop().create_connection(_Response, host, port, ssl=context)
        except OSError as exc:
            raise ScrapeError("refused", f"cannot connect to {host}:{port}: {exc}") from None
        return connection

    async def get(self, url: str, max_bytes: int, sink: Callable[[bytes], None]) -> None:
        origin, request = _request(url)
        kept = self._idle.pop(origin, None)
        connection = kept[0] if kept is not None and not kept[0].closed else None
        if connection is not None:
            connection.reused = True
        for attempt in range(2):
            if connection is None:
                connection = await self._connect(origin)
            ok = False
            try:
                await connection.start(request, max_bytes, sink)
                ok = True
            except _Stale:
                if attempt:
                    raise ScrapeError("bad_payload", "the connection closed before a response") from None
                connection = None  # closed by the proxy while idle: once more on a new connection
                continue
            finally:
                if not ok and connection is not None:
                    connection.transport.abort()  # failed, timed out or cancelled mid-response
            # one idle connection per proxy: a second one (two targets on one host:port read at once)
            # is closed rather than left open untracked
            if (connection.keep_alive and not connection.closed and origin not in self._idle
                    and len(self._idle) < self.max_idle):
                connection.reused = False
                self._idle[origin] = (connection, time.monotonic())
            else:
                connection.transport.close()
            return


async def fetch(client: Client, url: str, timeout: float | None, max_bytes: int,
                sink: Callable[[bytes], None] | None = None) -> bytes:
    """The body; or, with `sink`, each chunk handed to it as it arrives (and b"" returned), so
    that a large body is never held whole. `timeout` None: the caller's budget bounds the read."""
    chunks: list[bytes] = []
    try:
        async with asyncio.timeout(timeout):
            await client.get(url, max_bytes, chunks.append if sink is None else sink)
    except TimeoutError:
        raise ScrapeError("timeout", f"no complete answer within {timeout}s") from None
    except ssl.SSLError as exc:
        raise ScrapeError("refused", f"TLS: {exc}") from None
    except ConnectionError as exc:
        raise ScrapeError("bad_payload", f"{type(exc).__name__}: {exc}") from None
    return b"".join(chunks)
