"""/metrics, /healthz and /readyz are answered by a process of their own, fed by the scrape process."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.exporter import faults
from tests.exporter.running import start_exporter
from tests.support.procs import http_get, wait_until


@pytest.fixture
def target():
    servers = faults.FaultServers()
    yield f"consul/shop/a=http://127.0.0.1:{servers.add(faults.good())}"
    servers.stop()


def endpoints_pid(exporter_pid: int) -> int:
    (child,) = Path(f"/proc/{exporter_pid}/task/{exporter_pid}/children").read_text().split()
    return int(child)


def ended(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"  # gone, only not yet reaped by whoever adopted it


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def timed_get(url: str) -> tuple[float, int, bytes]:
    started = time.monotonic()
    status, body = http_get(url, timeout=5)
    return time.monotonic() - started, status, body


def test_endpoints_answer_at_once_while_the_scrape_process_is_frozen(processes, tmp_path, target):
    """With the scrape process stopped (SIGSTOP: no thread of it runs, as in the longest GC pause) for 2 s, every /healthz answer comes in under 250 ms and every /readyz and /metrics answer well before the freeze ends."""
    exporter = start_exporter(processes, tmp_path, "--target", target)
    pid = exporter.process.popen.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        answers = []
        frozen_until = time.monotonic() + 2.0
        while time.monotonic() < frozen_until:
            for path in ("/healthz", "/readyz", "/metrics"):
                answers.append((path, *timed_get(f"{exporter.url}{path}")))
    finally:
        os.kill(pid, signal.SIGCONT)
    # served by the scrape process, some answers would wait out the rest of the 2 s freeze; the
    # 1 s bound of the bigger answers leaves room for the scheduler of a shared, loaded machine
    slow = [(path, round(took, 3)) for path, took, _, _ in answers if took >= (0.25 if path == "/healthz" else 1.0)]
    assert slow == []
    assert {(path, status) for path, _, status, _ in answers} == {("/healthz", 200), ("/readyz", 200), ("/metrics", 200)}
    metrics = [body for path, _, _, body in answers if path == "/metrics"]
    assert all(b'meshobs_target_up{instance="127.0.0.1:' in body for body in metrics)
    assert {body for path, _, _, body in answers if path == "/healthz"} == {b"ok\n"}


def test_healthz_fails_when_the_scrape_loop_stands_still_past_the_liveness_timeout(processes, tmp_path, target):
    """/healthz answers 503 naming how long the scrape loop has not run once that exceeds --liveness-timeout, and ok again when it runs."""
    exporter = start_exporter(processes, tmp_path, "--target", target, "--liveness-timeout", "1s")
    pid = exporter.process.popen.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        status, body = wait_until(lambda: (lambda answer: answer if answer[0] == 503 else None)(
            http_get(f"{exporter.url}/healthz")), timeout=10, what="/healthz 503")
    finally:
        os.kill(pid, signal.SIGCONT)
    seconds = re.fullmatch(rb"unhealthy: the scrape loop has not run for (\d+)s \(--liveness-timeout 1s\)\n", body)
    assert seconds is not None, body
    assert int(seconds.group(1)) >= 1
    wait_until(lambda: http_get(f"{exporter.url}/healthz") == (200, b"ok\n"), timeout=10, what="/healthz ok again")


def test_the_endpoints_process_ends_when_the_scrape_process_is_killed(processes, tmp_path, target):
    """SIGKILL of the exporter leaves no orphan: its endpoints' process ends and the port refuses connections."""
    exporter = start_exporter(processes, tmp_path, "--target", target)
    pid = exporter.process.popen.pid
    child = endpoints_pid(pid)
    exporter.process.popen.kill()
    exporter.process.popen.wait(10)
    wait_until(lambda: ended(child), timeout=10, what="the endpoints' process to end")
    assert refused(exporter.port)


def test_a_clean_stop_stops_the_endpoints_process(processes, tmp_path, target):
    """SIGTERM ends the exporter with 0 and its endpoints' process with it."""
    exporter = start_exporter(processes, tmp_path, "--target", target)
    child = endpoints_pid(exporter.process.popen.pid)
    exporter.process.popen.terminate()
    assert exporter.process.popen.wait(10) == 0
    assert ended(child)
    assert refused(exporter.port)


def test_the_exporter_stops_when_its_endpoints_process_dies(processes, tmp_path, target):
    """An exporter whose endpoints' process was killed exits with 2 and says so, rather than scrape on unseen."""
    exporter = start_exporter(processes, tmp_path, "--target", target)
    os.kill(endpoints_pid(exporter.process.popen.pid), signal.SIGKILL)
    assert exporter.process.popen.wait(10) == 2
    assert exporter.process.log().strip().splitlines()[-1] == (
        "meshobs exporter: error: the process serving /metrics, /healthz, /readyz exited with code -9")
