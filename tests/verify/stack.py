"""The verify test stack: rendered artefacts of one mesh, the real exporter and a real Prometheus
that loads the rendered rule files, scraping the mesh's series; ready once the recording rules
have been evaluated on data with at least two samples."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Callable

from meshobs import build, config, writer
from tests.exporter.running import start_exporter
from tests.support.prom import RunningPrometheus, start_prometheus
from tests.support.procs import http_get, wait_until

CLUSTER = "c1"


def report_dir(tmp_path: Path, name: str) -> Path:
    """Where a test writes its verify report: under $MESHOBS_VERIFY_REPORTS/<name> when CI sets it
    (to publish as an artefact), else in the test's temporary folder."""
    base = os.environ.get("MESHOBS_VERIFY_REPORTS")
    return Path(base) / name if base else tmp_path / "report"


def render(out: Path, mesh: str) -> Path:
    """What `meshobs build --out OUT --mesh MESH` writes, with the default configuration."""
    artefacts = build.render(config.Config(), build.select_meshes([mesh]))
    writer.write(artefacts, out, build.owned_dirs())
    return out


def exporter_targets(path: Path, entries: list[dict]) -> Path:
    """A file_sd targets file for the exporter: `entries` as {address, mesh, namespace, workload, path}."""
    path.write_text(json.dumps([
        {"targets": [e["address"]], "labels": {"mesh": e["mesh"], "namespace": e["namespace"],
                                               "workload": e["workload"], "__metrics_path__": e["path"]}}
        for e in entries
    ]))
    return path


def static_config(address: str, **labels: str) -> dict:
    return {"targets": [address], "labels": {"cluster": CLUSTER, **labels}}


def start(processes, tmp_path: Path, mesh: str, proxy_jobs: dict[str, list[dict]], exporter_entries: list[dict],
          traffic: Callable[[], None] | None = None):
    """(rendered folder, Prometheus) with the exporter scraping `exporter_entries`; `traffic` runs
    once every target has been scraped twice, so that increases fall inside Prometheus's data."""
    out = render(tmp_path / "out", mesh)
    targets = exporter_targets(tmp_path / "exporter-targets.json", exporter_entries)
    exporter = start_exporter(processes, tmp_path, "--targets-file", str(targets), "--scrape-interval", "500ms")
    jobs = dict(proxy_jobs, **{"meshobs-exporter": [static_config(f"127.0.0.1:{exporter.port}")]})
    rules = sorted((out / "alerts" / mesh).glob("*.yaml"))
    prometheus = start_prometheus(processes, tmp_path, jobs, rule_files=rules)
    wait_for_data(prometheus, mesh, traffic)
    return out, prometheus


def wait_for_data(prometheus: RunningPrometheus, mesh: str | None, traffic: Callable[[], None] | None = None) -> None:
    """Every job scraped twice (rate() needs two samples), the traffic driven and scraped, then
    every rule group evaluated after that."""
    prometheus.wait_for("min(count_over_time(up[1m])) >= 2 and min(up) == 1")
    if mesh is not None:
        prometheus.wait_for(f'count_over_time(meshobs_target_up{{mesh="{mesh}"}}[1m]) >= 2')
    if traffic is not None:
        # twice, each round scraped: Envoy creates per-code counters (403) on first use, and
        # increase() cannot count a series' first sample
        for _ in range(2):
            driven = time.time()
            traffic()
            prometheus.wait_for(f"min(timestamp(up)) > {driven + 1:.3f}")
    ready = time.time()

    def evaluated_after_ready():
        _, body = http_get(f"{prometheus.url}/api/v1/rules")
        groups = json.loads(body)["data"]["groups"]
        return groups and all(_timestamp(g["lastEvaluation"]) > ready for g in groups)

    # a rule that fails to evaluate is left to verify, which runs its expression and names it
    wait_until(evaluated_after_ready, timeout=30, interval=0.2, what="every rule group evaluated on the data")


def _timestamp(rfc3339: str) -> float:
    from datetime import datetime

    # Prometheus writes nanoseconds; fromisoformat takes at most microseconds
    head, _, rest = rfc3339.partition(".")
    fraction = "".join(c for c in rest if c.isdigit())[:6]
    zone = rest[len("".join(c for c in rest if c.isdigit())):] if rest else rfc3339[19:]
    return datetime.fromisoformat(f"{head}.{fraction or '0'}{zone.replace('Z', '+00:00')}").timestamp()


_PLACE = re.compile(r"^(FAIL|note) (.+? / (?:panel|recording rule|alert) '.*?'(?: \[\w+\])?): (.*)$")
_GROUP = re.compile(r"^(FAIL|note) (.*) → (\d+) queries:$")


def failures(text: str) -> dict[str, list[str]]:
    """Place -> its problems, from `meshobs verify -v` output: a cause printed once for several
    queries counts for each place listed under it."""
    found: dict[str, list[str]] = {}
    cause = None
    for line in text.splitlines():
        group, place = _GROUP.match(line), _PLACE.match(line)
        if group:
            cause = group.group(2) if group.group(1) == "FAIL" else None
        elif place:
            cause = None
            if place.group(1) == "FAIL":
                found.setdefault(place.group(2), []).append(place.group(3))
        elif line.startswith("    ") and not line.startswith(("    query:", "           ")) and cause:
            found.setdefault(line.strip(), []).append(cause)
        else:
            cause = None
    return found
