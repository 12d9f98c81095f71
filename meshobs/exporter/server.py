"""HTTP endpoints of the exporter: /metrics, /healthz, /readyz (aiohttp, on the event loop of the
scrapes). Nothing here waits for scraping or parsing: /metrics serves the last rendering of the
state (`Exposition`, refreshed after every cycle) after the few live series of `registry`."""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from meshobs.exporter import collector
from meshobs.exporter.state import State

log = logging.getLogger(__name__)


class Exposition:
    """The state's series as last rendered; `refresh` renders anew without blocking the loop."""

    def __init__(self):
        self.body = b""
        self.renders = 0
        self._task: asyncio.Task | None = None
        self._again = False

    async def _render(self, state: State) -> None:
        while True:
            self._again = False
            frozen = await collector.snapshot(state)
            self.body = await asyncio.to_thread(collector.render, frozen)
            self.renders += 1
            if not self._again:
                return

    def refresh(self, state: State) -> None:
        """Render in the background; a refresh asked for meanwhile renders once more after."""
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._render(state))
        self._task.add_done_callback(self._done)

    @staticmethod
    def _done(task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("rendering /metrics failed", exc_info=task.exception())


def app(registry: CollectorRegistry, ready: Callable[[], bool], exposition: Exposition | None = None) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(registry) + (exposition.body if exposition else b"")
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="first scrape cycle not finished\n")

    application = web.Application()
    application.router.add_get("/metrics", metrics)
    application.router.add_get("/healthz", healthz)
    application.router.add_get("/readyz", readyz)
    return application


async def serve(application: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(application, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
