"""Fetch one admin path: GET only, read-only paths only, a timeout and a streamed size cap.

Every failure becomes a `ScrapeError` whose `reason` is one of the
`meshobs_scrape_errors_total` reasons.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Callable
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from meshobs.exporter.normalize import DIALECTS
from meshobs.exporter.targets import READ_ONLY_PATHS

# the only query strings ever sent: none, or a dialect's constant stats filter
READ_ONLY_QUERIES = frozenset({""} | {dialect.stats_query for dialect in DIALECTS.values()})


class ScrapeError(Exception):
    def __init__(self, reason: str, detail: str):
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


def session(concurrency: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0, ttl_dns_cache=60)
    # no cookies, no proxies from the environment, no redirects (below): talk to the proxy only
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False,
                                 headers={"User-Agent": "meshobs-exporter", "Accept-Encoding": "identity"})


@functools.lru_cache(maxsize=16384)  # the same few URLs per target, every cycle
def _read_only(url: str) -> URL:
    parts = urlsplit(url)
    if parts.path not in READ_ONLY_PATHS or parts.query not in READ_ONLY_QUERIES:
        # a guard, not a branch taken: targets are validated when discovered
        raise ScrapeError("http_status", f"refusing {parts.path}: not a read-only admin path and query")
    # sent exactly as built (targets are validated, the query is a constant): no re-quoting
    return URL(url, encoded=True)


async def fetch(client: aiohttp.ClientSession, url: str, timeout: float | None, max_bytes: int,
                sink: Callable[[bytes], None] | None = None) -> bytes:
    """The body; or, with `sink`, each chunk handed to it as it arrives (and b"" returned), so
    that a large body is never held whole. `timeout` None: the caller's budget bounds the read."""
    request_url = _read_only(url)
    try:
        async with asyncio.timeout(timeout):
            async with client.get(request_url, allow_redirects=False) as response:
                if response.status != 200:
                    raise ScrapeError("http_status", f"HTTP {response.status}")
                if (response.content_length or 0) > max_bytes:
                    raise ScrapeError("too_large", f"Content-Length {response.content_length} > {max_bytes}")
                chunks, size = [], 0
                async for chunk in response.content.iter_any():
                    size += len(chunk)
                    if size > max_bytes:
                        raise ScrapeError("too_large", f"body above {max_bytes} bytes")
                    if sink is None:
                        chunks.append(chunk)
                    else:
                        sink(chunk)
                return b"".join(chunks)
    except TimeoutError:
        raise ScrapeError("timeout", f"no complete answer within {timeout}s") from None
    except aiohttp.ClientConnectorError as exc:
        raise ScrapeError("refused", str(exc)) from None
    except (aiohttp.ClientPayloadError, aiohttp.ClientResponseError, aiohttp.ServerDisconnectedError) as exc:
        raise ScrapeError("bad_payload", f"{type(exc).__name__}: {exc}") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise ScrapeError("refused", f"{type(exc).__name__}: {exc}") from None
