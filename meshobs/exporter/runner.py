"""The scrape loop: every interval, scrape the current targets with bounded concurrency,
normalize, update the state and hand the resulting events to the sink."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Callable

import aiohttp

from meshobs.exporter import parse, scrape, status
from meshobs.exporter.normalize import DIALECTS, admin_certs, normalize
from meshobs.exporter.state import State
from meshobs.exporter.targets import Target

log = logging.getLogger(__name__)

# Envoy's /certs is a few KB per certificate
MAX_CERTS_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    interval: float = 15.0
    timeout: float = 5.0
    concurrency: int = 64
    max_bytes: int = 16 * 1024 * 1024


def certs_url(target: Target) -> str | None:
    """Envoy's /certs next to /stats/prometheus on an admin port (Consul 19000); an Istio
    sidecar's 15090 or a merged endpoint does not serve it, Linkerd has no such path."""
    if DIALECTS[target.mesh].admin_certs and target.url.endswith("/stats/prometheus"):
        return target.url.removesuffix("/stats/prometheus") + "/certs"
    return None


class Scraper:
    def __init__(self, state: State, limits: Limits, discover: Callable[[], set[Target]], sink, tracer):
        self.state = state
        self.limits = limits
        self.discover = discover
        self.sink = sink
        self.tracer = tracer
        self.cycles = 0
        self.status = status.TargetStatus(limits.interval, limits.timeout)
        self.last_cycle_started: float | None = None  # time.monotonic() at the start of the last complete cycle
        self._semaphore = asyncio.Semaphore(limits.concurrency)
        # /certs answered 404 once: do not ask again (merged metrics endpoints, Envoy without admin)
        self._no_certs: set[str] = set()

    async def scrape_one(self, client: aiohttp.ClientSession, target: Target) -> None:
        dialect = DIALECTS[target.mesh]
        async with self._semaphore:
            start = time.perf_counter()
            with self.tracer.span("scrape", {"url": target.url, "mesh": target.mesh, "namespace": target.namespace,
                                             "workload": target.workload}) as span:
                try:
                    lines = parse.LineFilter(dialect.prefixes, dialect.names)
                    try:
                        await scrape.fetch(client, target.url, self.limits.timeout, self.limits.max_bytes, lines.feed)
                        reading = normalize(dialect, lines.samples())
                    except Exception as exc:  # whatever a proxy answers, only its own scrape fails
                        if isinstance(exc, scrape.ScrapeError):
                            raise
                        raise scrape.ScrapeError("bad_payload", f"{type(exc).__name__}: {str(exc)[:200]}") from None
                    if not reading.certs:
                        reading.certs = await self._admin_certs(client, target)
                except scrape.ScrapeError as exc:
                    log.debug("scrape %s failed: %s", target.url, exc)
                    self.state.failed(target, exc.reason, time.perf_counter() - start)
                    self.status.failed(target, exc.reason, str(exc))
                    if span is not None:
                        span.set_attribute("error.type", exc.reason)
                    return
                self.state.observe(target, reading, time.perf_counter() - start)
                self.status.up(target)

    async def _admin_certs(self, client: aiohttp.ClientSession, target: Target) -> dict[str, float]:
        url = certs_url(target)
        if url is None or url in self._no_certs:
            return {}
        try:
            body = await scrape.fetch(client, url, self.limits.timeout, min(self.limits.max_bytes, MAX_CERTS_BYTES))
            return admin_certs(body)
        except (scrape.ScrapeError, parse.PayloadError) as exc:
            # optional source: the metrics were read, so the scrape still counts as good; not asked
            # again, and counted unless the proxy just does not serve it
            log.debug("no certificates from %s: %s", url, exc)
            self._no_certs.add(url)
            reason = exc.reason if isinstance(exc, scrape.ScrapeError) else "bad_payload"
            if reason != "http_status":
                self.state.count_error(target, reason)
            return {}

    async def cycle(self, client: aiohttp.ClientSession) -> None:
        started = time.monotonic()
        targets = self.state.retain(self.discover(), time.time())
        self._no_certs &= {certs_url(t) for t in targets}  # bounded by the live targets
        with self.tracer.span("scrape_cycle", {"targets": len(targets)}):
            await asyncio.gather(*(self.scrape_one(client, t) for t in targets))
        for event in self.state.end_cycle(time.time()):
            self.sink.submit(event)
        self.cycles += 1
        self.last_cycle_started = started  # readiness: did a whole cycle run after the pod list?
        self.status.end_cycle(targets)

    async def run(self, stop: asyncio.Event) -> None:
        async with scrape.session(self.limits.concurrency) as client:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    await self.cycle(client)
                except Exception:  # a bug in one cycle must not end the exporter
                    log.exception("scrape cycle failed")
                pause = self.limits.interval - (time.monotonic() - started)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=max(pause, 0.0))
                except TimeoutError:
                    pass
