"""The many-clusters layout: each cluster runs Prometheus in agent mode, remote-writing every
series (the cluster label on each) to a long-term store (Mimir, Thanos Receive,
VictoriaMetrics), and one ruler next to the store evaluates all the rules.

    deploy/prometheus-agent  prometheus.yml for `prometheus --agent` (Prometheus 3;
                             `--enable-feature=agent` on 2.x): the scrape jobs of
                             deploy/prometheus, external labels, remote_write; no rules
    deploy/ruler             every rule file for the central ruler: the per-cluster recordings
                             and alerts (grouped by cluster, so one ruler serves all clusters)
                             and the global roll-ups (alerts/<mesh>/global/), each group with
                             the fields the configured ruler reads (`ruler:`, meshobs/ruler_fields.py)
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import yaml

from meshobs import ruler_fields, yamlfmt
from meshobs.config import Config
from meshobs.errors import ConfigError
from meshobs.meshes import Dialect
from meshobs.render.deploy.common import kustomization, yaml_file
from meshobs.render.deploy.prometheus import global_settings, rule_files, scrape_jobs


def agent_config(cfg: Config, dialects: list[Dialect]) -> dict:
    return {
        "global": global_settings(cfg),
        "scrape_configs": scrape_jobs(cfg, dialects),
        "remote_write": [{"url": cfg.deploy.remote_write_url}],
    }


def ruler_rule_files(artefacts: dict[str, bytes]) -> dict[str, bytes]:
    """The per-cluster rule files and the global ones (alerts/<mesh>/global/<name>.yaml as
    `<mesh>-<name>.yaml`)."""
    rules = rule_files(artefacts)
    for path, content in artefacts.items():
        parts = PurePosixPath(path).parts
        if len(parts) == 4 and parts[0] == "alerts" and parts[2] == "global" and parts[3].endswith(".yaml"):
            rules[f"{parts[1]}-{parts[3]}"] = content
    return dict(sorted(rules.items()))


def _header(text: str) -> str:
    """The comment lines a rule file starts with."""
    lines = text.splitlines(keepends=True)
    count = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    return "".join(lines[:count])


def _refuse_shadowed_labels(group: dict, where: str) -> None:
    for rule, name in ruler_fields.shadowed(group):
        raise ConfigError(
            f"ruler.group_labels.{name}",
            f"{where}: group {group['name']!r}: {rule} sets its own {name} label, which wins over a group label in "
            "every ruler: the label would mean two things; choose another name")


def with_group_fields(name: str, content: bytes, fields: dict[str, Any], kind: str) -> bytes:
    """The rule file `name` with `fields` (those the ruler `kind` reads) in each group, after its
    name and interval (the order of Prometheus's RuleGroup), and a comment saying so; unchanged,
    byte for byte, when there are none."""
    if not fields:
        return content
    text = content.decode()
    document = yaml.safe_load(text)
    groups = []
    for group in document["groups"]:
        head = {key: group[key] for key in ("name", "interval") if key in group}
        groups.append(head | fields | {key: value for key, value in group.items() if key not in head})
        _refuse_shadowed_labels(groups[-1], f"deploy/ruler/rules/{name}")
    note = (f"# For ruler.kind {kind}: each group has {', '.join(fields)} (meshobs/ruler_fields.py); the same rules "
            "without them are under alerts/.\n")
    return (_header(text) + note + yamlfmt.dump(document | {"groups": groups})).encode()


def render(cfg: Config, dialects: list[Dialect], artefacts: dict[str, bytes]) -> dict[str, bytes]:
    ns = cfg.deploy.monitoring_namespace
    fields = ruler_fields.values(cfg.ruler)
    rules = {name: with_group_fields(name, content, fields, cfg.ruler.kind)
             for name, content in ruler_rule_files(artefacts).items()}
    files = {
        "deploy/prometheus-agent/prometheus.yml": yaml_file(agent_config(cfg, dialects)),
        "deploy/prometheus-agent/kustomization.yaml": kustomization(
            namespace=ns, generators=[{"name": "meshobs-prometheus-agent-config", "files": ["prometheus.yml"]}]),
        "deploy/ruler/kustomization.yaml": kustomization(
            namespace=ns, generators=[{"name": "meshobs-ruler-rules", "files": [f"rules/{name}" for name in rules]}]),
    }
    files.update({f"deploy/ruler/rules/{name}": content for name, content in rules.items()})
    return files
