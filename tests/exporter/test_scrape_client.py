"""The scrape client on real loopback sockets: keep-alive, framing, caps, and connections never
reused out of step."""

from __future__ import annotations

import asyncio

import pytest

from meshobs.exporter import scrape

BODY = b"envoy_listener_ssl_handshake{} 7\n" * 100


class Proxy:
    """A raw HTTP peer on 127.0.0.1: `answer(request_number)` gives the bytes to write for each
    request head received; it records connections and request lines."""

    def __init__(self, answer, close_after: bool = False):
        self.answer = answer
        self.close_after = close_after
        self.connections = 0
        self.closed = 0  # connections the client closed
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head.split(b"\r\n", 1)[0])
                for piece in self.answer(len(self.requests)):
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0)  # separate writes: the client reads them in several pieces
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed += 1
        writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/stats/prometheus"

    async def __aexit__(self, *exc) -> None:
        self.server.close()


def ok(body: bytes = BODY, headers: bytes = b"") -> list[bytes]:
    return [b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n" % (len(body), headers), body[:1000], body[1000:]]


def chunked(body: bytes, size: int = 700) -> list[bytes]:
    pieces = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"]
    for start in range(0, len(body), size):
        chunk = body[start:start + size]
        pieces += [b"%x;ext=1\r\n" % len(chunk), chunk[:100], chunk[100:] + b"\r\n"]
    return pieces + [b"0\r\n", b"\r\n"]


def run(coroutine):
    return asyncio.run(coroutine)


def test_one_connection_is_kept_alive_across_scrapes():
    """Three scrapes of a keep-alive proxy use one TCP connection and each read the whole body."""
    async def main():
        proxy = Proxy(lambda n: ok())
        async with proxy as url, scrape.Client() as client:
            bodies = [await scrape.fetch(client, url, 5, 1 << 20) for _ in range(3)]
        return proxy, bodies
    proxy, bodies = run(main())
    assert bodies == [BODY] * 3
    assert proxy.connections == 1
    assert proxy.requests == [b"GET /stats/prometheus HTTP/1.1"] * 3


def test_two_scrapes_of_one_proxy_at_once_keep_one_connection_and_close_the_other():
    """Two targets on one host:port read at the same time: one connection is kept idle, the other closed, none left open untracked."""
    async def main():
        proxy = Proxy(lambda n: ok())
        async with proxy as url, scrape.Client() as client:
            bodies = await asyncio.gather(*(scrape.fetch(client, url, 5, 1 << 20) for _ in range(2)))
            for _ in range(100):  # the closed connection's end of file reaches the proxy
                if proxy.closed:
                    break
                await asyncio.sleep(0.01)
            return bodies, proxy.connections, proxy.closed, client.idle()
    assert run(main()) == ([BODY, BODY], 2, 1, 1)


def test_a_chunked_body_reaches_the_sink_whole_and_the_connection_is_reused():
    """A chunked body with extensions, its size lines and data split across writes, arrives byte for byte; the connection serves the next scrape."""
    async def main():
        proxy = Proxy(lambda n: chunked(BODY))
        async with proxy as url, scrape.Client() as client:
            pieces: list[bytes] = []
            await scrape.fetch(client, url, 5, 1 << 20, pieces.append)
            again = await scrape.fetch(client, url, 5, 1 << 20)
        return proxy, b"".join(pieces), again
    proxy, body, again = run(main())
    assert (body, again, proxy.connections) == (BODY, BODY, 1)


def test_a_body_until_close_is_read_and_the_connection_not_kept():
    """Without Content-Length or chunking the body ends where the proxy closes; the next scrape opens a new connection."""
    async def main():
        proxy = Proxy(lambda n: [b"HTTP/1.1 200 OK\r\n\r\n", BODY], close_after=True)
        async with proxy as url, scrape.Client() as client:
            bodies = [await scrape.fetch(client, url, 5, 1 << 20) for _ in range(2)]
            return proxy, bodies, client.idle()
    proxy, bodies, idle = run(main())
    assert (bodies, proxy.connections, idle) == ([BODY, BODY], 2, 0)


def test_a_kept_connection_the_proxy_closed_is_replaced_once():
    """A proxy closing its keep-alive connection after each answer costs a new connection, not a failed scrape."""
    async def main():
        proxy = Proxy(lambda n: ok(), close_after=True)
        async with proxy as url, scrape.Client() as client:
            first = await scrape.fetch(client, url, 5, 1 << 20)
            await asyncio.sleep(0.05)  # the proxy's close arrives while the connection is idle
            second = await scrape.fetch(client, url, 5, 1 << 20)
        return proxy, first, second
    proxy, first, second = run(main())
    assert (first, second, proxy.connections) == (BODY, BODY, 2)


@pytest.mark.parametrize("answer, message", [
    (chunked(BODY), "too_large: body above 1000 bytes"),
    ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffff\r\n"], "too_large: body above 1000 bytes"),
    ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"], "bad_payload: malformed chunk size 'zz'"),
    ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + b"X-Trailer: 1234567890\r\n" * 100],
     "too_large: body above 1000 bytes"),
    ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 2000],
     "bad_payload: a chunk-size line above 1024 bytes"),
    ([b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"], "too_large: Content-Length 5000 > 1000"),
    ([b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\nshort"],
     "bad_payload: the connection closed after 5 body bytes, before the end of the body"),
    ([b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"], "bad_payload: Content-Length '-1' is not a number"),
    ([b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"], "http_status: HTTP 404"),
    ([b"SSH-2.0-OpenSSH_9.6\r\n\r\n"], "bad_payload: not an HTTP response: 'SSH-2.0-OpenSSH_9.6'"),
    ([b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 20000], "bad_payload: no end of the response head within 65536 bytes"),
])
def test_bad_answers_fail_with_their_reason_and_are_not_reused(answer, message):
    """Caps are enforced while reading (declared, chunked or counted) and malformed framing is named; the failed connection is closed, not kept."""
    async def main():
        proxy = Proxy(lambda n: answer, close_after=True)
        async with proxy as url, scrape.Client() as client:
            with pytest.raises(scrape.ScrapeError) as failure:
                await scrape.fetch(client, url, 5, 1000)
            return str(failure.value), client.idle()
    assert run(main()) == (message, 0)


def test_a_timed_out_response_is_not_reused():
    """A scrape cut by its time budget mid-body closes that connection; the next scrape reads a fresh one."""
    async def main():
        def answer(n):
            return ok() if n > 1 else [b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\npartial"]
        proxy = Proxy(answer)
        async with proxy as url, scrape.Client() as client:
            with pytest.raises(scrape.ScrapeError) as failure:
                await scrape.fetch(client, url, 0.2, 1 << 20)
            body = await scrape.fetch(client, url, 5, 1 << 20)
        return str(failure.value), body, proxy.connections
    assert run(main()) == ("timeout: no complete answer within 0.2s", BODY, 2)


def test_only_read_only_urls_are_sent():
    """A path outside the read-only admin paths is refused before any connection is made."""
    async def main():
        async with scrape.Client() as client:
            with pytest.raises(scrape.ScrapeError) as failure:
                await scrape.fetch(client, "http://127.0.0.1:9/quitquitquit", 5, 1000)
            return str(failure.value)
    assert run(main()) == "http_status: refusing /quitquitquit: not a read-only admin path and query"
