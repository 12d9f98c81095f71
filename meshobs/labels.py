"""The labels each mesh's series must carry for the rules and dashboards to work, and what
provides each one: the proxy itself, or a relabelling of the scrape job meshobs renders.

Derived from the dialects' Sources (which native label becomes which normalized one) and from the
rendered scrape jobs (which target labels they set), so `docs/labels.md` and the live check of
`meshobs check --prometheus` say the same as the rules do. A series without one of these labels
is summed into an unlabelled group: a second copy of every alert and an empty dashboard variable.

    python -m meshobs.labels > docs/labels.md
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from meshobs import promql, signals
from meshobs.config import Config
from meshobs.meshes import DIALECTS, Dialect
from meshobs.promql import Cut, FirstOf, Source

# What sets a label that no scrape job sets: the proxy's own stats, per mesh.
_PROXY = {
    "istio": "the sidecar's Istio stats filter (standard Istio metrics labels)",
    "linkerd": "linkerd2-proxy itself",
    "consul": "the stats tags of Consul's Envoy bootstrap (`local_cluster`, `consul_destination_*`), "
              "present when the sidecar was started by `consul connect envoy` or consul-dataplane",
}


# The normalized labels rules and dashboards group by (a response code is only ever filtered on).
_GROUPED = frozenset(signals.SERVICE + signals.WORKLOAD + signals.EDGE)


@dataclass(frozen=True)
class Need:
    """`source`'s series must carry the native `label` (`a|b`: one of them); meshobs reads it as `normalized`."""

    source: Source
    label: str
    normalized: tuple[str, ...]

    @property
    def metric(self) -> str:
        return promql.selector(self.unscoped)

    @property
    def unscoped(self) -> Source:
        """The source without the matchers that require one of its labels to be set (Consul's
        `local_cluster!=""`): the series lacking the label are what this check looks for."""
        mapped = {_native_name(native) for native in self.source.labels.values()}
        present = {f'{name}!=""' for label in mapped for name in label.split("|")}
        return replace(self.source, matchers=tuple(m for m in self.source.matchers if m not in present))

    @property
    def missing(self) -> str:
        """Matchers of the series that carry none of the labels."""
        return ", ".join(f'{name}=""' for name in self.label.split("|"))


def _native_name(native: str | FirstOf | Cut) -> str:
    if isinstance(native, FirstOf):
        return "|".join(native.natives)
    return native.native if isinstance(native, Cut) else native


def _native_sources(dialect: Dialect) -> list[Source]:
    sources = [dialect.requests, *dialect.service_requests, dialect.edges, dialect.request_duration, *dialect.authz_denied,
               *dialect.authz_allowed, *dialect.tls_handshakes, *dialect.tls_failures, *dialect.cert_expiry,
               *dialect.config_rejected]
    plane = dialect.control_plane
    sources += [getattr(plane, name) for name in plane.__dataclass_fields__ if getattr(plane, name) is not None]
    unique: list[Source] = []
    for source in sources:
        if source.origin == "native" and source not in unique:
            unique.append(source)
    return unique


def _all_sources(dialect: Dialect) -> list[Source]:
    """Native sources and the exporter's, each once."""
    sources = _native_sources(dialect)
    for extra in (*dialect.authz_denied_sources(), *dialect.authz_allowed_sources(), *dialect.tls_failure_sources(),
                  *dialect.tls_handshake_sources(), *dialect.plaintext_sources(), *dialect.cert_expiry_sources(),
                  dialect.target_up_source(), dialect.burst_source()):
        if extra not in sources:
            sources.append(extra)
    return sources


def normalized_from(dialect: Dialect, metrics: set[str]) -> set[str]:
    """Normalized labels that the mesh's sources reading any of `metrics` take from a native label:
    a series of those metrics without it is a mistake of the scrape, not of the data."""
    found: set[str] = set()
    for source in _all_sources(dialect):
        if metrics & set(source.metric_names()):
            found |= set(source.labels)
    return found


def needs(dialect: Dialect, cluster_label: str) -> list[Need]:
    """Every (source, native label) the mesh's rules and dashboards group or filter by."""
    found = []
    for source in _native_sources(dialect):
        by_native: dict[str, list[str]] = {cluster_label: [cluster_label]}
        for normalized, native in source.labels.items():
            if normalized in _GROUPED:
                by_native.setdefault(_native_name(native), []).append(normalized)
        found += [Need(source, label, tuple(sorted(normalized))) for label, normalized in by_native.items()]
    return found


def providers(cfg: Config, dialect: Dialect) -> dict[str, str]:
    """Label -> the scrape job relabelling (rendered by `meshobs build`) that sets it."""
    from meshobs.render.deploy.prometheus import scrape_jobs

    found: dict[str, str] = {}
    for job in scrape_jobs(cfg, [dialect]):
        if job["job_name"] == "meshobs-exporter":
            continue
        for rule in job.get("relabel_configs", []):
            if rule.get("action") == "labelmap":
                group = re.search(r"\(([^()]*)\)", rule["regex"])
                prefix = rule["regex"][:group.start()] if group else ""
                for name in group.group(1).split("|") if group else ():
                    found.setdefault(name, f"`{job['job_name']}`: labelmap of `{prefix}{name}`")
            elif "target_label" in rule and not rule["target_label"].startswith("__"):
                source = ", ".join(f"`{s}`" for s in rule.get("source_labels", [])) or f"`\"{rule.get('replacement')}\"`"
                found.setdefault(rule["target_label"], f"`{job['job_name']}`: {source} → `{rule['target_label']}`")
    if cfg.cluster_label not in found:
        found[cfg.cluster_label] = "nothing: `deploy.cluster` is empty, so your Prometheus must attach it"
    return found


def provider(cfg: Config, dialect: Dialect, label: str, scrape: dict[str, str]) -> str:
    if label == cfg.cluster_label:
        return f"every scrape job: `deploy.cluster` (`{cfg.deploy.cluster}`) → `{label}`" if cfg.deploy.cluster \
            else scrape[label]
    found = [scrape[name] for name in label.split("|") if name in scrape]
    return f"scrape job {'; '.join(dict.fromkeys(found))}" if found else _PROXY[dialect.name]


def check_live(prometheus, dialect: Dialect, cfg: Config) -> tuple[list[str], int]:
    """(problems, requirements checked) of a live Prometheus (`meshobs.verify.promapi.Prometheus`):
    per metric and label of the list above, the series without the label. Edges are left out:
    a call to a destination outside the mesh rightly has no destination labels."""
    scrape = providers(cfg, dialect)
    totals: dict[str, int] = {}
    problems, checked = [], 0
    # one requirement per metric and label, whichever sources read it (as a workload, as a service)
    merged: dict[tuple[str, str], Need] = {}
    for need in needs(dialect, cfg.cluster_label):
        if need.source == dialect.edges:
            continue
        key = (need.metric, need.label)
        if key in merged:
            need = replace(merged[key], normalized=tuple(sorted(set(merged[key].normalized) | set(need.normalized))))
        merged[key] = need
    for need in merged.values():
        if need.metric not in totals:
            totals[need.metric] = _count(prometheus, need.metric)
        if not totals[need.metric]:
            continue  # nothing scraped of it: nothing to judge
        checked += 1
        missing = _count(prometheus, promql.selector(need.unscoped, extra=need.missing))
        if missing:
            problems.append(f"{prometheus.url}: {missing} of {totals[need.metric]} {need.metric} series have no "
                            f"{need.label} label (read as {', '.join(need.normalized)}); it comes from "
                            f"{provider(cfg, dialect, need.label, scrape)} (docs/labels.md)")
    return problems, checked


def check_folder(url: str, root: Path, stale: set[str]) -> tuple[list[str], int]:
    """`check_live` for every mesh the last build wrote into `root` (else every mesh folder in it
    but the `stale` ones), with that build's cluster label."""
    from meshobs import manifest
    from meshobs.verify.promapi import Prometheus

    built = manifest.read(root)
    meshes = built.meshes if built else tuple(m for m in manifest.mesh_folders(root) if m not in stale)
    cfg = Config(cluster_label=built.cluster_label) if built else Config()
    prometheus = Prometheus(url)
    prometheus.ready()
    problems, checked = [], 0
    for mesh in meshes:
        if mesh in DIALECTS:
            found, count = check_live(prometheus, DIALECTS[mesh], cfg)
            problems += found
            checked += count
    return problems, checked


def _count(prometheus, selector: str) -> int:
    import time

    result = prometheus.instant(f"count({selector})", time.time())
    return int(float(result[0]["value"][1])) if result else 0


def markdown(cfg: Config | None = None) -> str:
    cfg = cfg or Config()
    out = [
        "# Labels each mesh's series must carry",
        "",
        "<!-- Generated by `python -m meshobs.labels > docs/labels.md` from the dialects' Sources and the",
        "     rendered scrape jobs; a test fails when it is stale. -->",
        "",
        "The recording rules sum each mesh's series **by** normalized labels (`destination_service`,",
        "`destination_workload`, ...) read from the native labels below. A series without one of them",
        "is summed into a group where that label is empty: a second, unlabelled copy of an alert, and",
        "an empty value in the dashboards' variables. Each label comes either from the proxy itself or",
        "from a relabelling of the scrape job `meshobs build` renders into `deploy/prometheus/`",
        "(and `deploy/operator/`); if you scrape with your own jobs, they must provide the same.",
        "",
        "Check a live Prometheus against this list:",
        "",
        "```",
        "meshobs check DIR --prometheus http://prometheus:9090",
        "```",
        "",
        "It counts, per metric and label, the series without it, and fails naming the metric, the",
        "label and what should provide it. `meshobs verify` reports recorded series that lack a label",
        "their rule groups by.",
        "",
        "The cluster label (`cluster_label`, default `cluster`) is set on every job from",
        "`deploy.cluster` (default `default`).",
    ]
    for dialect in DIALECTS.values():
        scrape = providers(cfg, dialect)
        out += ["", f"## {dialect.title}", "", "| label | read as | on | provided by |", "|---|---|---|---|"]
        rows: dict[str, tuple[set[str], list[str]]] = {}
        for need in needs(dialect, cfg.cluster_label):
            normalized, metrics = rows.setdefault(need.label, (set(), []))
            normalized.update(need.normalized)
            if need.metric not in metrics:
                metrics.append(need.metric)
        for label, (normalized, metrics) in rows.items():
            # a `|` in a selector (`reporter=~"destination|waypoint"`) would end the table cell
            on = "every series" if label == cfg.cluster_label else "<br>".join(f"`{m}`".replace("|", "\\|") for m in metrics)
            read_as = ", ".join(f"`{n}`" for n in sorted(normalized))
            out.append(f"| `{label}` | {read_as} | {on} | {provider(cfg, dialect, label, scrape)} |")
    out += ["", "## The meshobs exporter", "",
            "Its series carry `mesh`, `namespace` and `workload` from its own targets (pod discovery, "
            "`--targets-file` labels or `--target MESH/NAMESPACE/WORKLOAD=`), kept by the `meshobs-exporter` "
            "job's `honor_labels: true`; the cluster label comes from the job like every other.", ""]
    return "\n".join(out)


def main() -> None:
    print(markdown(), end="")


if __name__ == "__main__":
    main()
