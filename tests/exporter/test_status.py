"""What the exporter tells its operator: target state changes with the reason, a summary, /readyz."""

from __future__ import annotations

import logging

from meshobs.exporter.status import TargetStatus
from meshobs.exporter.targets import make_target
from tests.exporter.running import start_exporter
from tests.support.envoy import start_envoy
from tests.support.procs import free_port, http_get, wait_until


def _refused(port: int) -> str:
    # the connect error, passed through to the operator
    return f"refused: cannot connect to 127.0.0.1:{port}: [Errno 111] Connect call failed ('127.0.0.1', {port})"


def test_a_failing_target_is_logged_summarised_and_shown_on_readyz(processes, tmp_path):
    """A refused target is a WARNING with the reason at once, in the first summary and in /readyz;
    a target going down and one coming up are each a WARNING; `-v` after the subcommand logs debug."""
    (tmp_path / "envoy").mkdir()
    envoy = start_envoy(processes, tmp_path / "envoy")
    dead = free_port()
    live_url = f"http://127.0.0.1:{envoy.admin_port}/stats/prometheus"
    dead_url = f"http://127.0.0.1:{dead}/stats/prometheus"
    exporter = start_exporter(processes, tmp_path, "-v", "--scrape-interval", "200ms",
                              "--target", f"consul/default/backend={live_url}",
                              "--target", f"consul/default/dead={dead_url}")
    backend, dead_name = f"consul/default/backend ({live_url})", f"consul/default/dead ({dead_url})"
    status, body = http_get(f"{exporter.url}/readyz")
    assert (status, body.decode()) == (200, f"ready: 1/2 targets up; 1 refused: {dead_name}\n")
    lines = exporter.process.log().splitlines()
    info = [line for line in lines if not line.startswith("DEBUG ")]
    port = exporter.port
    assert info[0] == (
        f"INFO meshobs.exporter.cli: meshobs exporter 0.1.0 listening on 127.0.0.1:{port} (/metrics, /healthz, "
        "/readyz); targets from 2 static target(s), shard 0/1; scraping every 0.2s, timeout 5s")
    assert info[1:3] == [
        f"WARNING meshobs.exporter.status: target {dead_name} is failing: {_refused(dead)}",
        f"INFO meshobs.exporter.status: 1/2 targets up; 1 refused: {dead_name}",
    ]
    assert f"DEBUG meshobs.exporter.runner: scrape {dead_url} failed: {_refused(dead)}" in lines

    envoy.process.stop()
    down = f"WARNING meshobs.exporter.status: target {backend} is failing: {_refused(envoy.admin_port)}"
    wait_until(lambda: down in exporter.process.log().splitlines(), timeout=10, what=down)
    wait_until(lambda: http_get(f"{exporter.url}/readyz") == (
        200, f"ready: 0/2 targets up; 2 refused: {backend}, {dead_name}\n".encode()), timeout=10, what="/readyz 0/2")

    revived = tmp_path / "revived"
    revived.mkdir()
    start_envoy(processes, revived, admin_port=dead)
    up = f"WARNING meshobs.exporter.status: target {dead_name} is up again after "
    wait_until(lambda: [line for line in exporter.process.log().splitlines() if line.startswith(up)],
               timeout=10, what=up)
    again = next(line for line in exporter.process.log().splitlines() if line.startswith(up))
    assert again.endswith(" failed scrape(s) (refused)")
    wait_until(lambda: http_get(f"{exporter.url}/readyz") == (
        200, f"ready: 1/2 targets up; 1 refused: {backend}\n".encode()), timeout=10, what="/readyz 1/2")


def test_state_changes_are_rate_limited_into_one_line(caplog):
    """Fifteen targets failing at once give ten WARNING lines and one line counting the other five."""
    clock = [0.0]
    status = TargetStatus(interval=15, timeout=5, clock=lambda: clock[0])
    targets = {make_target(f"http://10.0.0.{i}:19000/stats/prometheus", "consul", "shop", f"w{i:02}") for i in range(15)}
    for target in targets:
        status.up(target)
    status.end_cycle(targets)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="meshobs.exporter.status"):
        clock[0] = 15.0
        for target in sorted(targets, key=lambda t: t.workload):
            status.failed(target, "timeout", "timeout: no complete answer within 5s")
        status.end_cycle(targets)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 11
    assert warnings[0] == ("target consul/shop/w00 (http://10.0.0.0:19000/stats/prometheus) is failing: "
                           "timeout: no complete answer within 5s")
    assert warnings[10] == (
        "5 more target(s) changed state (at most 10 such lines a minute); 0/15 targets up; 15 timeout: "
        "consul/shop/w00 (http://10.0.0.0:19000/stats/prometheus), consul/shop/w01 (http://10.0.0.1:19000/stats/prometheus), "
        "consul/shop/w02 (http://10.0.0.2:19000/stats/prometheus) and 12 more")


def test_readyz_turns_unready_when_cycles_stop():
    """Ready only while the last cycle ended within three intervals plus the timeout, and discovery synced."""
    clock = [0.0]
    status = TargetStatus(interval=15, timeout=5, clock=lambda: clock[0])
    assert status.readiness(True) == (False, "not ready: first scrape cycle not finished")
    status.end_cycle(set())
    assert status.readiness(False) == (False, "not ready: no scrape cycle has completed since Kubernetes pod discovery synced")
    assert status.readiness(True) == (True, "ready: 0/0 targets up")
    clock[0] = 51.0
    assert status.readiness(True) == (False, "not ready: last scrape cycle finished 51s ago (interval 15s); 0/0 targets up")
