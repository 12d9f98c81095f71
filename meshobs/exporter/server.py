"""HTTP endpoints of the exporter: /metrics, /healthz, /readyz, answered by another process.

Nothing there waits for scraping, parsing or a garbage collection of the scrape process: the
endpoints' process (meshobs.exporter.serve) holds only the bytes pushed to it. Here: `Exposition`
renders the state's series after every cycle (a snapshot, rendered and gzipped in a worker
thread; the snapshot is let go once rendered, and the text once pushed: a second copy of the
state, or of the text the endpoints' process holds, would be much of the memory at thousands of
workloads), and `Endpoints` starts that process and feeds it
from a thread of its own. That thread calls `ready` and collects `registry` (the few live
series), so both must be safe to call from outside the scrape loop: read snapshots or plain
counters, never iterate live state dicts.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import socket
import subprocess
import sys
import threading
import time
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from meshobs.exporter import collector, serve
from meshobs.exporter.state import State

log = logging.getLogger(__name__)


def _render(frozen: State) -> tuple[bytearray, bytes]:
    # Prometheus asks for gzip: 5,000 workloads are ~10 MB of text, ~0.5 MB compressed (zlib
    # lets go of the interpreter while it works)
    body = collector.render(frozen)
    return body, gzip.compress(body, compresslevel=1)


class Exposition:
    """The state's series as last rendered; `refresh` renders anew without blocking the loop."""

    def __init__(self):
        # plain, gzip: the rendering the feeder has not taken yet (the first push: empty)
        self._fresh: tuple[bytes | bytearray, bytes] | None = (b"", gzip.compress(b""))
        self._lock = threading.Lock()
        self.renders = 0
        self.on_render: Callable[[], None] = lambda: None
        self._task: asyncio.Task | None = None
        self._again = False

    async def _render(self, state: State) -> None:
        while True:
            self._again = False
            frozen = await collector.snapshot(state)
            rendered = await asyncio.to_thread(_render, frozen)
            del frozen
            with self._lock:
                self._fresh = rendered
            del rendered
            self.renders += 1
            self.on_render()
            if not self._again:
                return

    def take(self) -> tuple[bytes | bytearray, bytes] | None:
        """The last rendering (plain, gzip) if not taken yet, else None: this process holds the
        ~10 MB of text at 5,000 workloads only until it is pushed to the endpoints' process."""
        with self._lock:
            fresh, self._fresh = self._fresh, None
        return fresh

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


class Endpoints:
    """The endpoints' process (meshobs.exporter.serve) and the thread that feeds it.

    The thread pushes, every second and whenever `wake` is called: the live series, the readiness
    answer and the scrape loop's heartbeat (`heartbeat` runs on the scrape loop, so /healthz goes
    503 when that loop stands still longer than `liveness_timeout`); and the exposition after
    each rendering. The child ends when this process does: its stdin reaches end of file."""

    PERIOD = 1.0

    def __init__(self, registry: CollectorRegistry, ready: Callable[[], tuple[bool, str]],
                 exposition: Exposition, liveness_timeout: float):
        self._registry = registry
        self._ready = ready
        self._exposition = exposition
        self._liveness_timeout = liveness_timeout
        self.beat = time.monotonic()
        self._wake = threading.Event()
        self._stopping = False
        self.child: subprocess.Popen | None = None
        self.failure: str | None = None  # why the endpoints stopped answering, if they did
        self._thread = threading.Thread(target=self._push, name="meshobs-endpoints", daemon=True)

    def start(self, host: str, port: int, on_failure: Callable[[], None]) -> None:
        """Bind (an `OSError` if the address cannot be bound) and start the endpoints' process."""
        listening = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET,
                                         backlog=128)
        with listening:
            self.child = subprocess.Popen(
                [sys.executable, "-m", "meshobs.exporter.serve", "--fd", str(listening.fileno()),
                 "--liveness-timeout", repr(self._liveness_timeout), "--content-type", CONTENT_TYPE_LATEST],
                stdin=subprocess.PIPE, pass_fds=(listening.fileno(),))
        self._on_failure = on_failure
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    async def heartbeat(self) -> None:
        # each beat is pushed at once, and beats come at least four times per liveness timeout:
        # pushed on the feeder's own 1 s clock, a beat was up to 2 s old when the endpoints' process
        # judged it, so a timeout near a second locked in phase could answer 503 to a running loop
        period = min(self.PERIOD, self._liveness_timeout / 4)
        while True:
            self.beat = time.monotonic()
            self.wake()
            await asyncio.sleep(period)

    def _push(self) -> None:
        pipe = self.child.stdin
        try:
            while not self._stopping:
                fresh = self._exposition.take()
                if fresh is not None:
                    pipe.writelines(serve.two_parts(serve.EXPOSITION, *fresh))
                    fresh = None  # not held while waiting: the endpoints' process has it
                live = generate_latest(self._registry)
                pipe.writelines(serve.two_parts(serve.LIVE, live, gzip.compress(live, compresslevel=1)))
                ok, text = self._ready()
                pipe.writelines(serve.status(self.beat, ok, text))
                pipe.flush()
                self._wake.wait(self.PERIOD)
                self._wake.clear()
        except (BrokenPipeError, ValueError):  # ValueError: closed by cleanup meanwhile
            if self._stopping:
                return
            self.failure = f"the process serving /metrics, /healthz, /readyz exited with code {self.child.wait()}"
            log.error("%s", self.failure)
            self._on_failure()
        except BaseException:
            log.exception("feeding the endpoints' process failed")
            self.failure = "feeding the process serving /metrics, /healthz, /readyz failed"
            self._on_failure()

    async def cleanup(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join, 10)
        if self.child is not None:
            try:
                self.child.stdin.close()  # end of file: the child ends
            except BrokenPipeError:  # it has already
                pass
            try:
                await asyncio.to_thread(self.child.wait, 10)
            except subprocess.TimeoutExpired:
                self.child.kill()
                await asyncio.to_thread(self.child.wait)
