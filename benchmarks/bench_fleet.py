"""A fleet of simulated sidecars on loopback, scraped by the real `meshobs exporter` process;
everything about the exporter is measured from outside (/proc), as an operator would see it.

For each fleet size (default 1,000 / 2,000 / 5,000 sidecars), in one run:

- **baseline**: a ~40-line raw reader (asyncio streams, whole-body reads, one `bytes.count`
  per body: the least Python can do with these bytes) reads every sidecar once per cycle,
  in a child process; its CPU per cycle is the yardstick;
- **exporter**: `python -m meshobs exporter --targets-file ...` scrapes the same fleet every
  `--interval`; over `--cycles` intervals after its first cycle: CPU seconds of the exporter
  process per sidecar scraped (scrapes counted by the sidecars) and so per cycle, sidecars
  read per interval (the fleet size when the replica keeps up), peak and
  final RSS of the scrape process (the endpoints' process, its child, is counted in the CPU and
  printed apart with its RSS), targets up at the end, and the latency of `/metrics` (gzipped, as Prometheus asks
  for it, and plain) and `/healthz`, each polled every 250 ms throughout (p50 / p99 / max); next
  to them the same poll of an idle `python -m http.server` process (the control: on a shared
  machine, its tail is what the scheduler alone costs any process).

The sidecars run in another child process (raw asyncio protocol answering a prebuilt response,
so their CPU stays small and is not counted). Payloads: `istio` (Envoy, ~300 kB / ~3,000 lines)
or `linkerd` (~50 kB), full, whatever query the exporter sends.

With `--pin-cpu C` the exporter's two processes (and the control) share one CPU, as under a
pod's 1-CPU limit; with `--busy N`, N processes spin on the CPU (on that one, if pinned) while
the exporter is measured.

    python benchmarks/bench_fleet.py [--sizes 1000,2000,5000] [--payload istio|linkerd] [--interval 15] [--cycles 3]
                                     [--pin-cpu C] [--busy N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from exposition import authorities_for_bytes, clusters_for_lines, envoy_exposition, linkerd_exposition  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def payloads(kind: str, lines: int, kb: int) -> list[bytes]:
    if kind == "istio":
        return [envoy_exposition(clusters_for_lines(lines), seed) for seed in range(8)]
    return [linkerd_exposition(authorities_for_bytes(kb * 1000), seed) for seed in range(8)]


# --- sidecars ---------------------------------------------------------------------------------

def serve_sidecars(count: int, bodies: list[bytes], pipe) -> None:
    responses = [b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: %d\r\n\r\n%s"
                 % (len(body), body) for body in bodies]
    served = [0]

    class Sidecar(asyncio.Protocol):
        def __init__(self, response: bytes):
            self.response = response
            self.pending = b""

        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data: bytes):
            self.pending += data
            while b"\r\n\r\n" in self.pending:
                head, _, self.pending = self.pending.partition(b"\r\n\r\n")
                served[0] += 1
                self.transport.write(self.response if b" /certs " not in head.split(b"\r\n", 1)[0]
                                     else b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

    async def main():
        loop = asyncio.get_running_loop()
        ports = []
        for index in range(count):
            response = responses[index % len(responses)]
            server = await loop.create_server(lambda r=response: Sidecar(r), "127.0.0.1", 0, backlog=256)
            ports.append(server.sockets[0].getsockname()[1])
        pipe.send(ports)
        while True:
            message = await loop.run_in_executor(None, pipe.recv)
            if message == "stop":
                return
            pipe.send(served[0])

    asyncio.run(main())


# --- baseline: the raw reader -----------------------------------------------------------------

def raw_scan(ports: list[int], cycles: int, concurrency: int, pipe) -> None:
    async def read(port: int, connections: dict) -> int:
        if port not in connections:
            connections[port] = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        reader, writer = connections[port]
        writer.write(b"GET /stats/prometheus HTTP/1.1\r\nHost: sidecar\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        body = await reader.readexactly(length)
        return body.count(b"\n")

    async def main():
        connections: dict = {}
        semaphore = asyncio.Semaphore(concurrency)

        async def one(port):
            async with semaphore:
                return await read(port, connections)

        for _ in range(cycles + 1):  # the first cycle opens the connections
            await asyncio.gather(*(one(port) for port in ports))
            pipe.send("cycle")
            pipe.recv()

    asyncio.run(main())


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def memory_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) in MB."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def baseline(ports: list[int], cycles: int, concurrency: int) -> float:
    """Mean CPU seconds of the raw reader per cycle over the fleet."""
    parent, child = multiprocessing.Pipe()
    reader = multiprocessing.Process(target=raw_scan, args=(ports, cycles, concurrency, child), daemon=True)
    reader.start()
    parent.recv()
    start = cpu_seconds(reader.pid)
    parent.send("go")
    for _ in range(cycles):
        parent.recv()
        parent.send("go")
    spent = cpu_seconds(reader.pid) - start
    reader.join(10)
    return spent / cycles


# --- the exporter -----------------------------------------------------------------------------

def _poll(url: str, headers: dict, stop, results) -> None:
    latencies, failures = [], 0
    while not stop.is_set():
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=15) as response:
                response.read()
        except OSError:
            failures += 1
        latencies.append(time.perf_counter() - started)
        stop.wait(0.25)
    results.send((latencies, failures))


class Poller:
    """GET a path every 250 ms and keep the latencies (a timeout counts as its full length).
    Each poller is a process of its own: pollers sharing one interpreter measured each other
    (a 10 MB plain /metrics read holds the GIL while /healthz's answer waits to be timed)."""

    def __init__(self, url: str, headers: dict | None = None):
        self.stop = multiprocessing.Event()
        self._results, sender = multiprocessing.Pipe(duplex=False)
        self._process = multiprocessing.Process(target=_poll, args=(url, headers or {}, self.stop, sender), daemon=True)
        self.latencies: list[float] = []
        self.failures = 0

    def start(self) -> None:
        self._process.start()

    def join(self, timeout: float) -> None:
        if self._results.poll(timeout):
            self.latencies, self.failures = self._results.recv()
        self._process.join(timeout)

    def summary(self) -> str:
        if not self.latencies:
            return "no answers"
        ordered = sorted(self.latencies)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        failed = f", {self.failures} failed" if self.failures else ""
        return (f"p50 {statistics.median(ordered) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
                f"max {ordered[-1] * 1000:.0f} ms ({len(ordered)} polls{failed})")


def metric_values(url: str) -> dict[str, list[tuple[str, float]]]:
    with urllib.request.urlopen(url, timeout=30) as response:
        text = response.read().decode()
    out: dict[str, list[tuple[str, float]]] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            head, _, value = line.rpartition(" ")
            name = head.split("{", 1)[0]
            out.setdefault(name, []).append((head, float(value)))
    return out


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def busy_loops(count: int, pinned) -> list[subprocess.Popen]:
    """`count` processes spinning on the CPU: contention for the exporter's two processes."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=pinned) for _ in range(count)]


def pin(cpu: int | None):
    """A preexec_fn keeping a process (and the processes it starts) on one CPU, as a pod's 1-CPU
    limit makes the exporter's two processes share one CPU's time; None: no pinning."""
    return None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))


def run_exporter(ports: list[int], mesh: str, interval: float, cycles: int, served, folder: Path,
                 busy: int = 0, cpu: int | None = None) -> dict:
    targets = folder / "targets.json"
    path = "/stats/prometheus" if mesh == "istio" else "/metrics"
    targets.write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": {
        "mesh": mesh, "namespace": f"ns-{i % 20}", "workload": f"w-{i}", "__metrics_path__": path}}
        for i, port in enumerate(ports)]))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(folder / "exporter.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "meshobs", "exporter", "--listen", f"127.0.0.1:{port}",
                                "--targets-file", str(targets), "--scrape-interval", f"{interval:g}s"],
                               stdout=log, stderr=subprocess.STDOUT, preexec_fn=pin(cpu))
    (folder / "ok").write_bytes(b"ok\n")
    control_port = free_port()
    control = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(folder),
                                str(control_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               preexec_fn=pin(cpu))
    pollers = [Poller(f"{url}/metrics", {"Accept-Encoding": "gzip"}), Poller(f"{url}/metrics"), Poller(f"{url}/healthz"),
               Poller(f"http://127.0.0.1:{control_port}/ok")]
    spinning: list[subprocess.Popen] = []
    try:
        deadline = time.monotonic() + max(120, 10 * interval)
        while time.monotonic() < deadline:  # ready = the first cycle is over
            if process.poll() is not None:
                log.flush()
                raise SystemExit(f"the exporter exited with code {process.returncode}:\n"
                                 + (folder / "exporter.log").read_text()[-2000:])
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            raise SystemExit(f"exporter not ready within {max(120, 10 * interval):g}s; see {folder / 'exporter.log'}")
        spinning = busy_loops(busy, pin(cpu))
        for poller in pollers:
            poller.start()
        serving = children(process.pid)  # the endpoints' process (none before it had one)
        cpu0, serving0 = cpu_seconds(process.pid), sum(cpu_seconds(pid) for pid in serving)
        scrapes0, wall0 = served(), time.monotonic()
        time.sleep(cycles * interval)
        scraping = cpu_seconds(process.pid) - cpu0
        endpoints = sum(cpu_seconds(pid) for pid in serving) - serving0
        cpu, scrapes, wall = scraping + endpoints, served() - scrapes0, time.monotonic() - wall0
        rss, peak = memory_mb(process.pid)
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        serving_rss = sum(memory_mb(pid)[1] for pid in serving)
        for poller in pollers:
            poller.stop.set()
            poller.join(20)
        values = metric_values(f"{url}/metrics")
    finally:
        for spinner in spinning:
            spinner.kill()
            spinner.wait()
        process.terminate()
        process.wait(20)
        control.terminate()
        control.wait(20)
        log.close()
    up = sum(1 for _, value in values.get("meshobs_target_up", []) if value == 1)
    own = {name: values[name][0][1] for name in ("meshobs_cycle_duration_seconds", "meshobs_cycle_overrun_total")
           if name in values}
    return {"cpu_per_interval": cpu / (wall / interval), "endpoints_per_interval": endpoints / (wall / interval),
            "serving_rss": serving_rss, "scrapes_per_interval": scrapes / (wall / interval),
            "cpu_per_scrape": cpu / max(scrapes, 1), "rss": rss, "peak": peak, "up": up,
            "metrics": pollers[0].summary(), "plain": pollers[1].summary(), "healthz": pollers[2].summary(),
            "control": pollers[3].summary(), "own": own, "load": load}


def main() -> int:
    options = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_argument("--sizes", default="1000,2000,5000", help="fleet sizes, comma-separated")
    options.add_argument("--payload", choices=("istio", "linkerd"), default="istio")
    options.add_argument("--lines", type=int, default=3000, help="lines per Istio payload (default 3000, ~300 kB)")
    options.add_argument("--kb", type=int, default=50, help="kB per Linkerd payload (default 50)")
    options.add_argument("--interval", type=float, default=15.0, help="scrape interval, seconds (default 15)")
    options.add_argument("--cycles", type=int, default=3, help="intervals measured per size (default 3)")
    options.add_argument("--baseline-concurrency", type=int, default=64)
    options.add_argument("--busy", type=int, default=0,
                         help="processes spinning on the CPU while the exporter is measured (default 0): contention")
    options.add_argument("--pin-cpu", type=int, default=None, metavar="CPU",
                         help="run the exporter (both processes), the control server and the busy loops on this one "
                              "CPU: the contention of a 1-CPU limit (default: not pinned)")
    args = options.parse_args()
    bodies = payloads(args.payload, args.lines, args.kb)
    lines = bodies[0].count(b"\n")
    print(f"payload: {args.payload}, {len(bodies[0]) / 1e3:.0f} kB, {lines} lines per sidecar; "
          f"interval {args.interval:g} s, {args.cycles} intervals measured per size"
          + (f"; {args.busy} busy-loop processes beside the exporter" if args.busy else "")
          + (f"; exporter, control and busy loops pinned to CPU {args.pin_cpu}" if args.pin_cpu is not None else ""))
    header = (f"{'sidecars':>8} | {'raw scan CPU s/cycle':>20} | {'exporter CPU s/cycle':>20} | {'ms/sidecar':>10} | "
              f"{'x raw':>6} | {'scraped/interval':>16} | {'up':>5} | {'RSS (peak) MB':>13} | {'both processes, peak MB':>23}")
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        parent, child = multiprocessing.Pipe()
        simulator = multiprocessing.Process(target=serve_sidecars, args=(size, bodies, child), daemon=True)
        simulator.start()
        lock = threading.Lock()

        def served() -> int:
            with lock:
                parent.send("count")
                return parent.recv()

        try:
            ports = parent.recv()
            raw = baseline(ports, 2, args.baseline_concurrency)
            with tempfile.TemporaryDirectory() as folder:
                result = run_exporter(ports, "istio" if args.payload == "istio" else "linkerd", args.interval,
                                      args.cycles, served, Path(folder), args.busy, args.pin_cpu)
        finally:
            parent.send("stop")
            simulator.join(10)
            if simulator.is_alive():
                simulator.terminate()
        per_sidecar = result["cpu_per_scrape"]
        # a cycle reads every sidecar once: its CPU is the CPU per scrape times the fleet (the measured
        # window need not hold whole cycles)
        rows.append((f"{size:>8} | {raw:>20.2f} | {per_sidecar * size:>20.2f} | {per_sidecar * 1000:>10.2f} | "
                     f"{per_sidecar / (raw / size):>6.1f} | {result['scrapes_per_interval']:>16.0f} | "
                     f"{result['up']:>5} | {result['rss']:>5.0f} ({result['peak']:.0f}) | "
                     f"{result['peak'] + result['serving_rss']:>23.0f}",
                     f"{size:>8} | /metrics (gzip, as Prometheus asks) {result['metrics']}; /metrics (plain) "
                     f"{result['plain']}; /healthz {result['healthz']}; control (an idle stdlib HTTP server, same "
                     f"machine: its tail is the scheduler's) {result['control']}"
                     + (f"; exporter says {result['own']}" if result["own"] else "")
                     + f"; of the exporter's CPU per interval, the endpoints' process spent "
                       f"{result['endpoints_per_interval']:.2f} s (peak RSS {result['serving_rss']:.0f} MB)"
                     + f"; load average {result['load']}"))
        print(rows[-1][0], flush=True)
    print()
    print(header)
    for row, _ in rows:
        print(row)
    print()
    for _, latency in rows:
        print(latency)
    return 0


if __name__ == "__main__":
    sys.exit(main())
