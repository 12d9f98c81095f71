"""Scrape 1,000+ simulated sidecars on loopback with the exporter's own scrape loop; print
scrapes per second, CPU seconds per scrape cycle and peak RSS of the exporter side.

The sidecars run in a child process (aiohttp, one listening socket each) so that their CPU is
not counted; each serves an Envoy exposition of --lines lines (default 2,000, ~200 kB).

    python benchmarks/bench_fleet.py [--sidecars 1000] [--lines 2000] [--cycles 5] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from exposition import clusters_for_lines, envoy_exposition  # noqa: E402


def serve_sidecars(count: int, lines: int, pipe) -> None:
    from aiohttp import web

    bodies = [envoy_exposition(clusters_for_lines(lines), seed) for seed in range(8)]

    async def main():
        sockets = []
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        runners = []
        for index, sock in enumerate(sockets):
            body = bodies[index % len(bodies)]

            async def stats(request, body=body):
                return web.Response(body=body, content_type="text/plain")

            app = web.Application()
            app.router.add_get("/stats/prometheus", stats)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.SockSite(runner, sock, backlog=256).start()
            runners.append(runner)
        pipe.send([sock.getsockname()[1] for sock in sockets])
        await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # wait for "stop"

    asyncio.run(main())


async def scrape_fleet(ports: list[int], cycles: int, concurrency: int) -> list[tuple[float, float]]:
    from meshobs.exporter import events, runner, scrape, state, tracing
    from meshobs.exporter.targets import make_target

    targets = {make_target(f"http://127.0.0.1:{port}/stats/prometheus", "istio", f"ns-{i % 20}", f"w-{i}")
               for i, port in enumerate(ports)}
    exporter_state = state.State()
    scraper = runner.Scraper(exporter_state, runner.Limits(concurrency=concurrency), lambda: targets,
                             events.LogEvents(), tracing.tracer())
    results = []
    async with scrape.session(concurrency) as client:
        for _ in range(cycles):
            wall, cpu = time.perf_counter(), time.process_time()
            await scraper.cycle(client)
            results.append((time.perf_counter() - wall, time.process_time() - cpu))
    up = sum(1 for t in exporter_state.targets.values() if t.up)
    if up != len(targets):
        raise SystemExit(f"only {up} of {len(targets)} targets scraped successfully")
    return results


def main() -> int:
    options = argparse.ArgumentParser(description=__doc__)
    options.add_argument("--sidecars", type=int, default=1000)
    options.add_argument("--lines", type=int, default=2000)
    options.add_argument("--cycles", type=int, default=5)
    options.add_argument("--concurrency", type=int, default=64)
    args = options.parse_args()
    parent, child = multiprocessing.Pipe()
    simulator = multiprocessing.Process(target=serve_sidecars, args=(args.sidecars, args.lines, child), daemon=True)
    simulator.start()
    try:
        ports = parent.recv()
        results = asyncio.run(scrape_fleet(ports, args.cycles, args.concurrency))
    finally:
        parent.send("stop")
        simulator.join(10)
        if simulator.is_alive():
            simulator.terminate()
    steady = results[1:] or results  # the first cycle opens every connection
    wall = sum(r[0] for r in steady) / len(steady)
    cpu = sum(r[1] for r in steady) / len(steady)
    body = envoy_exposition(clusters_for_lines(args.lines))
    lines = body.count(b"\n")
    print(f"{args.sidecars} sidecars x {lines} lines ({len(body) / 1e3:.0f} kB), concurrency {args.concurrency}")
    print(f"first cycle: {results[0][0]:.2f} s wall, {results[0][1]:.2f} CPU s")
    print(f"steady cycle: {wall:.2f} s wall -> {args.sidecars / wall:.0f} scrapes/s; {cpu:.2f} CPU s per cycle "
          f"({cpu / args.sidecars * 1000:.2f} ms per scrape)")
    print(f"peak RSS (exporter side): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
