"""HTTP endpoints of the exporter: /metrics, /healthz, /readyz.

Nothing here waits for scraping or parsing. The endpoints run on their own event loop in their
own thread: a scrape loop busy with thousands of sidecars runs batches of ready callbacks tens of
milliseconds long, and a request queued behind several of them would wait that long each time;
in a thread of its own the server gets the interpreter within the switch interval (5 ms) instead.
Handlers therefore touch only what is safe across threads: /metrics serves the last rendering
of the state (`Exposition`, refreshed after every cycle; `frozen` is the snapshot it came from)
after the few live series of `registry`.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import threading
from typing import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from meshobs.exporter import collector
from meshobs.exporter.state import State

log = logging.getLogger(__name__)


def _render(frozen: State) -> tuple[bytes, bytes]:
    # Prometheus asks for gzip: 5,000 workloads are ~10 MB of text, ~0.5 MB compressed (zlib
    # lets go of the interpreter while it works)
    body = collector.render(frozen)
    return body, gzip.compress(body, compresslevel=1)


class Exposition:
    """The state's series as last rendered; `refresh` renders anew without blocking the loop."""

    def __init__(self):
        self.body = b""
        self.gzipped = gzip.compress(b"")
        self.frozen: State | None = None  # the snapshot `body` was rendered from
        self.renders = 0
        self._task: asyncio.Task | None = None
        self._again = False

    async def _render(self, state: State) -> None:
        while True:
            self._again = False
            frozen = await collector.snapshot(state)
            self.body, self.gzipped = await asyncio.to_thread(_render, frozen)
            self.frozen = frozen
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


def app(registry: CollectorRegistry, ready: Callable[[], tuple[bool, str]],
        exposition: Exposition | None = None) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        live = generate_latest(registry)
        if exposition is None:
            return web.Response(body=live, headers={"Content-Type": CONTENT_TYPE_LATEST})
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            # gzip members concatenated are one gzip stream of the concatenated text
            return web.Response(body=gzip.compress(live, compresslevel=1) + exposition.gzipped,
                                headers={"Content-Type": CONTENT_TYPE_LATEST, "Content-Encoding": "gzip"})
        return web.Response(body=live + exposition.body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        ok, text = ready()  # meshobs.exporter.status: the reason, and the targets' summary
        return web.Response(status=200 if ok else 503, text=text + "\n")

    application = web.Application()
    application.router.add_get("/metrics", metrics)
    application.router.add_get("/healthz", healthz)
    application.router.add_get("/readyz", readyz)
    return application


class Server:
    """`application` served on its own event loop in a daemon thread."""

    def __init__(self, application: web.Application, host: str, port: int):
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(application, access_log=None)
        self._address = (host, port)
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="meshobs-http", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._runner.setup())
            self._loop.run_until_complete(web.TCPSite(self._runner, *self._address).start())
        except BaseException as exc:  # reported to the caller of start()
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def start(self) -> None:
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error

    async def cleanup(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            await asyncio.to_thread(self._thread.join, 10)


async def serve(application: web.Application, host: str, port: int) -> Server:
    """Start serving (an `OSError` if the address cannot be bound); `await .cleanup()` to stop."""
    server = Server(application, host, port)
    await asyncio.to_thread(server.start)
    return server
