"""HTTP endpoints of the exporter: /metrics, /healthz, /readyz (aiohttp, same event loop as the
scrapes, so /metrics answers while scrapes are in flight)."""

from __future__ import annotations

from typing import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


def app(registry: CollectorRegistry, ready: Callable[[], tuple[bool, str]]) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

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


async def serve(application: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(application, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
