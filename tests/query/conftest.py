"""One real Prometheus per mesh, loaded with the mesh's verify data set (Istio and Linkerd
replayed, Consul from real Envoys under real traffic) and the rendered rules, shared by the
tests of a module; and a runner for `meshobs` commands that captures what they print."""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import dataclass

import pytest

from meshobs import cli
from tests.support.procs import process_starter
from tests.support.prom import RunningPrometheus


@dataclass
class Printed:
    code: int
    out: str
    err: str


def meshobs(*argv: str) -> Printed:
    """`meshobs ARGV` in-process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(list(argv))
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
    return Printed(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def module_processes():
    """Like `processes`, for a module's shared stack: every process stops after the module."""
    yield from process_starter()


@dataclass
class MeshStack:
    mesh: str
    prometheus: RunningPrometheus
    at: float  # a time at which every rule has been evaluated on the data

    def run(self, command: str, *argv: str) -> Printed:
        return meshobs(command, "--prometheus", self.prometheus.url, "--mesh", self.mesh, "--at", f"{self.at:.3f}", *argv)

    def value(self, expr: str) -> float:
        """The single value of `expr` at the stack's time (PromQL by hand, on the raw series)."""
        result = self.prometheus.query(expr, self.at)
        assert len(result) == 1, f"{expr}: {result}"
        return float(result[0]["value"][1])


def start_mesh(mesh: str, processes, tmp_path, request) -> MeshStack:
    if mesh == "consul":
        from tests.verify.test_verify_consul import start_consul

        _, _, prometheus = start_consul(processes, tmp_path, request)
    else:
        from tests.verify.test_verify_replayed import start_replayed

        _, prometheus = start_replayed(processes, tmp_path, request, mesh)
    return MeshStack(mesh, prometheus, time.time())
