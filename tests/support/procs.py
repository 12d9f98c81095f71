"""Start real programs for tests: free loopback ports, polled readiness, guaranteed stop."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pytest


# Below the kernel's ephemeral range (32768-60999 by default): a port the kernel handed out
# for bind(0) is soon handed to some outgoing connection too, before the program under test
# binds it ("Address already in use"); a random port from here is taken only by another test.
_PORTS = range(20000, 32000)
_random = random.Random()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, outside the ephemeral range."""
    for _ in range(200):
        port = _random.choice(_PORTS)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port on 127.0.0.1 in {_PORTS.start}-{_PORTS.stop - 1}")


def require_binary(name: str) -> str:
    """Path of a program the test needs; fails (never skips) when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; run the README's test command, which installs it")
    return path


def wait_until(condition: Callable[[], object], timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    """Poll `condition` until it returns a truthy value; return that value or fail the test."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # the thing polled is not up yet
            last_error = exc
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last error: {last_error!r})")


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """Status and body of a GET; HTTP errors are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class Listening:
    """A started server: its loopback port and its `Process`."""

    port: int
    process: "Process"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


class Process:
    """A child process whose output goes to a log file, stopped by `stop()`."""

    def __init__(self, argv: Sequence[str], log_path: Path, cwd: Path | None = None, env: dict | None = None):
        self.argv = list(argv)
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.popen = subprocess.Popen(
            self.argv, stdout=self._log, stderr=subprocess.STDOUT, cwd=cwd, env=env, stdin=subprocess.DEVNULL
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_ready(self, condition: Callable[[], object], timeout: float = 30.0, what: str = "") -> None:
        def ready():
            if not self.alive():
                pytest.fail(f"{self.argv[0]} exited with {self.popen.returncode}:\n{self.log()[-3000:]}")
            return condition()

        wait_until(ready, timeout=timeout, what=what or f"{self.argv[0]} to be ready")

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()


@pytest.fixture
def processes():
    """Yields a starter; every process it started is stopped after the test."""
    started: list[Process] = []

    def start(argv: Sequence[str], log_path: Path, **kwargs) -> Process:
        process = Process(argv, log_path, **kwargs)
        started.append(process)
        return process

    yield start
    for process in reversed(started):
        process.stop()
