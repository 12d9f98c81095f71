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
from tests.support.prom import RunningPrometheus, scrape_config, start_prometheus
from tests.support.procs import http_get, wait_until
from tests.support.victoria import (RunningVictoriaMetrics, rfc3339_seconds, start_victoria_metrics, start_vmagent,
                                   start_vmalert)

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


def _sources(processes, tmp_path: Path, mesh: str, proxy_jobs: dict[str, list[dict]], exporter_entries: list[dict]):
    """(rendered folder, scrape jobs, rule files): the exporter runs, scraping `exporter_entries`."""
    out = render(tmp_path / "out", mesh)
    targets = exporter_targets(tmp_path / "exporter-targets.json", exporter_entries)
    exporter = start_exporter(processes, tmp_path, "--targets-file", str(targets), "--scrape-interval", "500ms")
    jobs = dict(proxy_jobs, **{"meshobs-exporter": [static_config(f"127.0.0.1:{exporter.port}")]})
    return out, jobs, sorted((out / "alerts" / mesh).glob("*.yaml"))


def start(processes, tmp_path: Path, mesh: str, proxy_jobs: dict[str, list[dict]], exporter_entries: list[dict],
          traffic: Callable[[], None] | None = None):
    """(rendered folder, Prometheus) with the exporter scraping `exporter_entries`; `traffic` runs
    once every target has been scraped twice, so that increases fall inside Prometheus's data."""
    out, jobs, rules = _sources(processes, tmp_path, mesh, proxy_jobs, exporter_entries)
    prometheus = start_prometheus(processes, tmp_path, jobs, rule_files=rules)
    wait_for_data(prometheus, mesh, traffic)
    return out, prometheus


def start_victoria(processes, tmp_path: Path, mesh: str, proxy_jobs: dict[str, list[dict]],
                   exporter_entries: list[dict], traffic: Callable[[], None] | None = None):
    """As `start`, on a distributed-store engine instead: vmagent scrapes the same jobs into
    VictoriaMetrics and vmalert evaluates the rendered rules; (rendered folder, VictoriaMetrics)."""
    out, jobs, rules = _sources(processes, tmp_path, mesh, proxy_jobs, exporter_entries)
    vm = start_victoria_metrics(processes, tmp_path)
    start_vmagent(processes, tmp_path, [scrape_config(job, targets) for job, targets in jobs.items()], vm)
    vmalert = start_vmalert(processes, tmp_path, vm, rules)
    wait_for_data(vm, mesh, traffic, rules_url=vmalert.url)
    vmalert.wait_settled(vm)
    return out, vm


def wait_for_data(prometheus: RunningPrometheus | RunningVictoriaMetrics, mesh: str | None,
                  traffic: Callable[[], None] | None = None, rules_url: str | None = None) -> None:
    """Every job scraped twice (rate() needs two samples), the traffic driven and scraped, then
    every rule evaluated after that (rules as listed by Prometheus, or by `rules_url`: vmalert)."""
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
    wait_rules_evaluated(rules_url or prometheus.url, after=time.time())


def wait_rules_evaluated(rules_url: str, after: float) -> None:
    """Every rule listed at `rules_url` (/api/v1/rules) evaluated after `after`."""

    def evaluated():
        _, body = http_get(f"{rules_url}/api/v1/rules")
        groups = json.loads(body)["data"]["groups"]
        return groups and all(rfc3339_seconds(r["lastEvaluation"]) > after for g in groups for r in g["rules"])

    # a rule that fails to evaluate is left to verify, which runs its expression and names it
    wait_until(evaluated, timeout=30, interval=0.2, what="every rule evaluated on the data")


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
