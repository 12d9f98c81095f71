"""Real VictoriaMetrics, vmagent and vmalert (Debian's `victoria-metrics` package) for tests.

    vm = start_victoria_metrics(processes, tmp_path)
    vm.import_series([(labels, [(offset_s, value), ...])], base=T0)   # samples with timestamps
    replay_rules(vm, rule_files, tmp_path, start=T0, end=T0 + 3600, interval=60)
    vm.firing_at("MeshHighErrorRate", T0 + 900)                        # label sets of ALERTS

    vmalert = start_vmalert(processes, tmp_path, vm, rule_files)       # live evaluation, 1s
    vmagent = start_vmagent(processes, tmp_path, scrape_configs, vm)   # scrapes into vm

Everything binds 127.0.0.1 on free ports and goes through the `processes` fixture, so it stops
with the test. `replay_rules` runs vmalert's replay mode once per layer of chained rules (a rule
reading a series another rule records comes one layer later), flushing VictoriaMetrics in
between, so each layer reads what the previous one wrote — no sleeps, no per-rule delay.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import yaml

from tests.support.procs import Listening, free_port, http_get, require_binary, wait_until

Labels = dict[str, str]
# labels vmalert adds to ALERTS besides the rule's own (the group name since v1.81; state always)
ALERTS_BOOKKEEPING = ("__name__", "alertname", "alertstate", "alertgroup")
# names of series holding Unix times (Prometheus's `_timestamp_seconds`, Istio's `_timestamp`,
# Envoy's `_unix_time_seconds`, `process_start_time_seconds`)
UNIX_TIME_SUFFIXES = ("_timestamp_seconds", "_timestamp", "_time_seconds")
MAX_LABELS = 64


class RunningVictoriaMetrics(Listening):
    def _call(self, path: str, params: Sequence[tuple[str, str]] = (), data: bytes | None = None) -> bytes:
        url = f"{self.url}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.read()

    def import_series(self, series: Sequence[tuple[Labels, Sequence[tuple[float, float]]]], base: float) -> None:
        """Write samples with their timestamps (`base` + offset seconds) through /api/v1/import,
        then flush so that the next query sees them. Values of series named as Unix times
        (UNIX_TIME_SUFFIXES) move by `base` too, as promtool's clock starts at 0."""
        lines = [json.dumps({"metric": labels,
                             "values": [v + (base if labels["__name__"].endswith(UNIX_TIME_SUFFIXES) else 0)
                                        for _, v in samples],
                             "timestamps": [round((base + t) * 1000) for t, _ in samples]})
                 for labels, samples in series if samples]
        if lines:
            self._call("/api/v1/import", data="\n".join(lines).encode())
        self.flush()

    def flush(self) -> None:
        """Make every ingested sample searchable now (VictoriaMetrics otherwise batches for ~1s)."""
        self._call("/internal/force_flush")

    def delete_all(self) -> None:
        """Forget every series (between independent test cases sharing one instance)."""
        self._call("/api/v1/admin/tsdb/delete_series", [("match[]", '{__name__=~".+"}')])
        self._call("/internal/resetRollupResultCache")

    def query(self, expr: str, time: float | None = None) -> list[dict]:
        params = [("query", expr)] + ([("time", f"{time:.3f}")] if time is not None else [])
        document = json.loads(self._call("/api/v1/query", params))
        assert document["status"] == "success", document
        return document["data"]["result"]

    def wait_for(self, expr: str, timeout: float = 60.0) -> list[dict]:
        """Poll until `expr` returns at least one series."""
        return wait_until(lambda: self.query(expr), timeout=timeout, interval=0.2, what=f"VictoriaMetrics: {expr}")

    def export(self, match: str, start: float, end: float) -> list[dict]:
        """Raw samples of the series matching `match` in [start, end]: {metric, values, timestamps}."""
        body = self._call("/api/v1/export", [("match[]", match), ("start", f"{start:.3f}"), ("end", f"{end:.3f}")])
        return [json.loads(line) for line in body.decode().splitlines() if line.strip()]

    def firing_at(self, alertname: str, at: float) -> list[Labels]:
        """Label sets (without ALERTS' own bookkeeping labels) of `alertname` firing at exactly `at`."""
        out = []
        for item in self.export(f'ALERTS{{alertname="{alertname}", alertstate="firing"}}', at - 1, at + 1):
            if any(abs(ts / 1000 - at) < 0.001 for ts in item["timestamps"]):
                out.append({k: v for k, v in item["metric"].items() if k not in ALERTS_BOOKKEEPING})
        return sorted(out, key=lambda labels: sorted(labels.items()))


def start_victoria_metrics(processes, tmp_path: Path, name: str = "victoria-metrics") -> RunningVictoriaMetrics:
    """Single-node VictoriaMetrics keeping data for 10 years (tests write timestamps in the past),
    answering from raw data (no response cache, since tests backfill)."""
    binary = require_binary("victoria-metrics")
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    port = free_port()
    process = processes(
        [binary, f"-storageDataPath={folder / 'data'}", f"-httpListenAddr=127.0.0.1:{port}",
         "-retentionPeriod=10y", "-search.disableCache", "-search.latencyOffset=0s", "-loggerLevel=WARN",
         # Istio series carry more than the default 30 labels (see docs/long-term-stores.md)
         f"-maxLabelsPerTimeseries={MAX_LABELS}",
         # Prometheus's (and promtool's) fixed 5m lookback, not one derived from the interval
         # between samples, so that the promtool scenarios mean the same here
         "-search.maxLookback=5m"],
        folder / "victoria-metrics.log",
    )
    process.wait_ready(lambda: http_get(f"http://127.0.0.1:{port}/health")[0] == 200, what="victoria-metrics /health")
    return RunningVictoriaMetrics(port, process)


class RunningVmalert(Listening):
    def rules(self) -> list[dict]:
        """vmalert's /api/v1/rules groups (Prometheus-compatible)."""
        return json.loads(http_get(f"{self.url}/api/v1/rules")[1])["data"]["groups"]

    def wait_settled(self, vm: "RunningVictoriaMetrics", timeout: float = 60.0) -> None:
        """Every recording rule has been evaluated after the recordings it reads became visible
        in `vm`, and what it recorded is visible too. Prometheus stores a recording as it
        evaluates it and a group's next rule reads it at once; vmalert remote-writes it, and a
        new series shows in VictoriaMetrics's index a little later, so chained rules settle one
        round after another (measured: without /internal/force_flush, new series stayed
        invisible for more than 6s; see also _reader_selectors)."""
        visible_since: dict[str, float] = {}
        # a new series shows in VictoriaMetrics's index only once flushed: what was scraped so
        # far is searchable after this, and every rule must be evaluated on it
        vm.flush()
        flushed = time.time()

        def settled() -> bool:
            now = time.time()
            rules = [r for g in self.rules() for r in g["rules"] if r.get("type") == "recording"]
            names = {r["name"] for r in rules}
            selectors = {r["name"]: _reader_selectors(r["name"], r.get("labels") or {}) for r in rules}
            for name in names - set(visible_since):
                if all(vm.query(f"count({selector})", now) for selector in selectors[name]):
                    visible_since[name] = now
            done = True
            for rule in rules:
                inputs = [n for n in names if n != rule["name"]
                          and re.search(rf"(?<![\w:]){re.escape(n)}(?![\w:])", rule["query"])]
                # inputs that never record anything here leave the rule empty by design
                seen = [visible_since[n] for n in inputs if n in visible_since]
                if rfc3339_seconds(rule["lastEvaluation"]) <= max(seen + [flushed]):
                    done = False
                if rule.get("lastSamples", 0) > 0 and rule["name"] not in visible_since:
                    done = False
            if not done:
                vm.flush()
            return done

        wait_until(settled, timeout=timeout, interval=0.2, what="vmalert's chained recordings visible in VictoriaMetrics")


def _reader_selectors(name: str, labels: dict) -> list[str]:
    """How rules and dashboards select a recording (by its mesh, and by cluster too). Each
    selector form has its own entry in VictoriaMetrics's tag-filter cache, and one queried before
    the series existed kept answering "none" for about 2s after it appeared (measured on 1.79.5):
    a recording counts as visible once every form finds it."""
    fixed = "".join(f', {k}="{v}"' for k, v in sorted(labels.items()) if k == "mesh")
    base = f"{{__name__={json.dumps(name)}{fixed}}}"
    return [base, base[:-1] + ', cluster=~".*"}']


def start_vmalert(processes, tmp_path: Path, vm: RunningVictoriaMetrics, rule_files: Sequence[Path],
                  interval: str = "1s", notifier: str | None = None) -> RunningVmalert:
    """vmalert evaluating `rule_files` every `interval` against `vm`, writing recordings and ALERTS
    back into it; alerts go to the Alertmanager at `notifier` (host:port) if given."""
    binary = require_binary("vmalert")
    folder = tmp_path / "vmalert"
    folder.mkdir(exist_ok=True)
    port = free_port()
    argv = [binary, *[f"-rule={path}" for path in rule_files], f"-datasource.url={vm.url}",
            f"-remoteWrite.url={vm.url}", "-remoteWrite.flushInterval=500ms", f"-evaluationInterval={interval}",
            f"-httpListenAddr=127.0.0.1:{port}", "-loggerLevel=WARN",
            # the query step must be the scrape interval, or the datasource falls back by up to 5m
            f"-datasource.queryStep={interval}"]
    # vmalert 1.79 needs a notifier when it has alerting rules; an address nothing listens on is
    # enough for tests that only read ALERTS from the store
    argv.append(f"-notifier.url=http://{notifier or f'127.0.0.1:{free_port()}'}")
    process = processes(argv, folder / "vmalert.log")
    process.wait_ready(lambda: http_get(f"http://127.0.0.1:{port}/-/healthy")[0] == 200, what="vmalert /-/healthy")
    return RunningVmalert(port, process)


def start_vmagent(processes, tmp_path: Path, scrape_configs: list[dict], vm: RunningVictoriaMetrics,
                  scrape_interval: str = "1s", external_labels: Labels | None = None) -> object:
    """vmagent scraping `scrape_configs` (Prometheus format) every `scrape_interval`, remote
    writing into `vm`."""
    binary = require_binary("vmagent")
    folder = tmp_path / "vmagent"
    folder.mkdir(exist_ok=True)
    config = {"global": {"scrape_interval": scrape_interval, "external_labels": external_labels or {}},
              "scrape_configs": scrape_configs}
    (folder / "scrape.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = processes(
        [binary, f"-promscrape.config={folder / 'scrape.yml'}", f"-remoteWrite.url={vm.url}/api/v1/write",
         f"-remoteWrite.tmpDataPath={folder / 'buffer'}", "-remoteWrite.flushInterval=200ms",
         f"-httpListenAddr=127.0.0.1:{port}", "-loggerLevel=WARN"],
        folder / "vmagent.log",
    )
    process.wait_ready(lambda: http_get(f"http://127.0.0.1:{port}/health")[0] == 200, what="vmagent /health")
    return process


def _recorded_names(documents: Sequence[dict]) -> set[str]:
    return {rule["record"] for doc in documents for group in doc.get("groups") or [] for rule in group["rules"]
            if "record" in rule}


def rule_layers(documents: Sequence[dict]) -> list[dict]:
    """The rule files' groups split into layers: layer 0 reads only raw series; a rule reading a
    series recorded in layer N is in layer N+1 or later. Each layer is one rule document whose
    groups keep their names, intervals and rule order."""
    recorded = _recorded_names(documents)
    patterns = {name: re.compile(rf"(?<![\w:]){re.escape(name)}(?![\w:])") for name in recorded}
    rules = [(group, rule) for doc in documents for group in doc.get("groups") or [] for rule in group["rules"]]
    layer_of_name: dict[str, int] = {}
    layer_of_rule: list[int | None] = [None] * len(rules)
    for _ in range(len(rules) + 1):  # at most one layer per rule: a cycle never settles
        changed = False
        for index, (_, rule) in enumerate(rules):
            reads = [name for name in recorded if patterns[name].search(str(rule["expr"]))]
            if any(name not in layer_of_name for name in reads):
                continue
            layer = max((layer_of_name[name] + 1 for name in reads), default=0)
            if layer_of_rule[index] != layer:
                layer_of_rule[index], changed = layer, True
            if "record" in rule and layer_of_name.get(rule["record"], -1) < layer:
                layer_of_name[rule["record"]], changed = layer, True
        if not changed:
            break
    unresolved = [rule.get("record") or rule.get("alert") for index, (_, rule) in enumerate(rules)
                  if layer_of_rule[index] is None]
    assert not unresolved, f"rules reading recordings that never resolve (a cycle?): {unresolved}"
    out: list[dict] = []
    for layer in range(max(layer_of_rule, default=-1) + 1):
        groups: list[dict] = []
        for index, (group, rule) in enumerate(rules):
            if layer_of_rule[index] != layer:
                continue
            if not groups or groups[-1]["name"] != group["name"]:
                groups.append({k: v for k, v in group.items() if k != "rules"} | {"rules": []})
            groups[-1]["rules"].append(rule)
        out.append({"groups": groups})
    return out


def rfc3339_seconds(rfc3339: str) -> float:
    """Unix seconds of an RFC 3339 time with up to nanoseconds (Prometheus and vmalert APIs)."""
    head, _, rest = rfc3339.partition(".")
    digits = "".join(c for c in rest if c.isdigit())
    zone = rest[len(digits):] if rest else rfc3339[19:]
    return datetime.fromisoformat(f"{head}.{digits[:6] or '0'}{zone.replace('Z', '+00:00')}").timestamp()


def _rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def replay_rules(vm: RunningVictoriaMetrics, rule_files: Sequence[Path], tmp_path: Path, start: float, end: float,
                 interval: str = "1m") -> None:
    """Evaluate `rule_files` with vmalert's replay mode over [start, end] every `interval`,
    layer by layer; recordings and ALERTS land in `vm`. Fails with vmalert's output if it fails."""
    binary = require_binary("vmalert")
    documents = [yaml.safe_load(Path(path).read_text()) for path in rule_files]
    folder = tmp_path / "vmalert-replay"
    folder.mkdir(exist_ok=True)
    for number, layer in enumerate(rule_layers(documents)):
        path = folder / f"layer-{number}.yaml"
        path.write_text(yaml.safe_dump(layer, sort_keys=False))
        result = subprocess.run(
            [binary, f"-rule={path}", f"-datasource.url={vm.url}", f"-remoteWrite.url={vm.url}",
             f"-replay.timeFrom={_rfc3339(start)}", f"-replay.timeTo={_rfc3339(end)}",
             f"-evaluationInterval={interval}", f"-datasource.queryStep={interval}",
             "-replay.rulesDelay=0s", "-replay.disableProgressBar",
             f"-httpListenAddr=127.0.0.1:{free_port()}", "-loggerLevel=WARN"],
            capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"vmalert replay of layer {number} failed:\n{result.stdout}{result.stderr}"
        vm.flush()
