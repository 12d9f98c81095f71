"""Alertmanager: route by cluster (for the clusters given their own receivers), by severity, then
by mesh; group per service; inhibit the noise.

Receivers hold no secret: the PagerDuty routing key, the Slack webhook URL and the webhook's
bearer token are read from files that the Alertmanager pod mounts from a Secret
(SECRETS_DIR/<key>), never written into this ConfigMap.
"""

from __future__ import annotations

from typing import Iterable

from meshobs.config import ClusterReceivers, Config
from meshobs.errors import BuildError
from meshobs.meshes import Dialect
from meshobs.render.deploy.common import kustomization, yaml_file
from meshobs.render.rules import ALERT_NAMES

SECRETS_DIR = "/etc/alertmanager/secrets"
# Severities that wake someone up; the others (warning, ticket, info) go to chat.
PAGING_SEVERITIES = ("critical", "page")
# Alerts read from exporter series; while the exporter cannot read a mesh's proxies their
# rates jump across the gap, so they are held back until the targets are back.
EXPORTER_FED_ALERTS = ("MeshMTLSFailure", "MeshUnauthorizedAccessBurst", "MeshUnauthorizedAccessSustained",
                       "MeshPlaintextTraffic", "MeshCertificateExpiringSoon")
TARGET_DOWN_ALERT = "MeshExporterTargetDown"
# Labels naming the object an alert is about (after the cluster label); an alert's labels are a
# subset of these.
OBJECT_LABELS = ("mesh", "destination_namespace", "destination_service", "destination_workload", "cert")
# The labels naming one workload of one mesh.
WORKLOAD_LABELS = ("mesh", "destination_namespace", "destination_workload")


def _matcher_alternatives(values: Iterable[str]) -> str:
    return "|".join(values)


FALLBACK_RECEIVER = "meshobs-default"
# Files in SECRETS_DIR that the shared receivers read.
PAGER_KEY_FILE = "pagerduty-routing-key"
SLACK_URL_FILE = "slack-webhook-url"
WEBHOOK_TOKEN_FILE = "webhook-token"


def pager_receiver(cluster: str = "") -> str:
    """The PagerDuty receiver of `cluster` (alertmanager.clusters); of every other cluster when empty."""
    return f"meshobs-{cluster}-pager" if cluster else "meshobs-pager"


def mesh_chat_receiver(mesh: str) -> str:
    """The shared chat receiver of one mesh's alerts."""
    return f"meshobs-chat-{mesh}"


def cluster_chat_receiver(cluster: str) -> str:
    """The chat receiver of every mesh's alerts of `cluster` (alertmanager.clusters)."""
    # "-chat" last: a cluster named like a mesh cannot take that mesh's receiver name
    return f"meshobs-{cluster}-chat"


def cluster_secret_files(cluster: str, receivers: ClusterReceivers) -> tuple[str, str]:
    """The PagerDuty routing key and Slack webhook URL files (in SECRETS_DIR) of `cluster`'s receivers."""
    return receivers.pager_key_file or f"{PAGER_KEY_FILE}-{cluster}", receivers.chat_webhook_file or SLACK_URL_FILE


def _pager(name: str, key_file: str) -> dict:
    return {
        "name": name,
        "pagerduty_configs": [{"routing_key_file": f"{SECRETS_DIR}/{key_file}", "send_resolved": True}],
    }


def _chat(name: str, channel: str, subject: str, url_file: str) -> dict:
    """A Slack receiver; `subject` (no template in it) leads each message's title."""
    return {
        "name": name,
        "slack_configs": [
            {
                "api_url_file": f"{SECRETS_DIR}/{url_file}",
                "channel": channel,
                "send_resolved": True,
                "title": f"[{{{{ .Status | toUpper }}}}] {subject}: {{{{ .CommonLabels.alertname }}}}",
                "text": "{{ range .Alerts }}{{ .Annotations.summary }}\n{{ .Annotations.runbook_url }}\n{{ end }}",
            }
        ],
    }


def _receivers(cfg: Config, dialects: list[Dialect]) -> list[dict]:
    fallback = {
        "name": FALLBACK_RECEIVER,
        "webhook_configs": [
            {
                "url": "http://alert-receiver.monitoring.svc:8080/alerts",
                "http_config": {"authorization": {"credentials_file": f"{SECRETS_DIR}/{WEBHOOK_TOKEN_FILE}"}},
                "send_resolved": True,
            }
        ],
    }
    chat = [_chat(mesh_chat_receiver(d.name), f"#meshobs-{d.name}", d.title, SLACK_URL_FILE) for d in dialects]
    per_cluster = []
    for cluster, receivers in cfg.alertmanager.clusters:
        key_file, url_file = cluster_secret_files(cluster, receivers)
        # the mesh is in the title: one channel holds every mesh's alerts of the cluster
        subject = f"{cluster} {{{{ .CommonLabels.mesh }}}}"
        per_cluster += [
            _pager(pager_receiver(cluster), key_file),
            _chat(cluster_chat_receiver(cluster), receivers.chat_channel or f"#meshobs-{cluster}", subject, url_file),
        ]
    return [fallback, _pager(pager_receiver(), PAGER_KEY_FILE), *chat, *per_cluster]


def _paging_route(receiver: str, cluster_label: str) -> dict:
    return {
        "matchers": [f'severity=~"{_matcher_alternatives(PAGING_SEVERITIES)}"'],
        "receiver": receiver,
        "group_by": ["alertname", cluster_label, *OBJECT_LABELS[:-1]],
        "group_wait": "10s",
        "repeat_interval": "1h",
        # Paged alerts also reach the chat below.
        "continue": True,
    }


def _cluster_route(cluster_label: str, cluster: str, dialects: list[Dialect]) -> dict:
    """`cluster`'s alerts to its own pager and chat; no `continue`, so the shared receivers never
    see them. An alert of no rendered mesh falls back to the parent's receiver, as elsewhere."""
    return {
        "matchers": [f'{cluster_label}="{cluster}"'],
        "routes": [
            _paging_route(pager_receiver(cluster), cluster_label),
            {
                "matchers": [f'mesh=~"{_matcher_alternatives(d.name for d in dialects)}"'],
                "receiver": cluster_chat_receiver(cluster),
            },
        ],
    }


def _route(cfg: Config, dialects: list[Dialect]) -> dict:
    cluster_label = cfg.cluster_label
    return {
        "receiver": FALLBACK_RECEIVER,
        "group_by": ["alertname", cluster_label, "mesh", "destination_namespace"],
        "group_wait": "30s",
        "group_interval": "5m",
        "repeat_interval": "4h",
        "routes": [
            *(_cluster_route(cluster_label, cluster, dialects) for cluster, _ in cfg.alertmanager.clusters),
            _paging_route(pager_receiver(), cluster_label),
            *({"matchers": [f'mesh="{d.name}"'], "receiver": mesh_chat_receiver(d.name)} for d in dialects),
        ],
    }


def _inhibit_rules(cluster: str) -> list[dict]:
    missing = sorted(set(EXPORTER_FED_ALERTS + (TARGET_DOWN_ALERT, "MeshErrorBudgetBurn")) - set(ALERT_NAMES))
    if missing:
        raise BuildError(f"alertmanager inhibitions name alerts the rules no longer render: {', '.join(missing)}")
    return [
        {
            "source_matchers": [f'alertname="{TARGET_DOWN_ALERT}"'],
            "target_matchers": [f'alertname=~"{_matcher_alternatives(EXPORTER_FED_ALERTS)}"'],
            # Only the alerts of the workload whose proxy is unread: one unreadable proxy must not
            # silence the security alerts of the whole mesh. (The target-down alert carries the
            # proxy's namespace and workload as destination_* too, as the alerts it holds back.)
            "equal": [cluster, *WORKLOAD_LABELS],
        },
        {
            # A critical alert makes the warning of the same alert on the same object redundant
            # (certificate expiry: 1d critical over 7d warning).
            "source_matchers": ['severity="critical"'],
            "target_matchers": ['severity="warning"'],
            "equal": ["alertname", cluster, *OBJECT_LABELS],
        },
        {
            # A fast budget burn pages; the slow burn ticket for the same service adds nothing.
            "source_matchers": ['alertname="MeshErrorBudgetBurn"', 'severity="page"'],
            "target_matchers": ['alertname="MeshErrorBudgetBurn"', 'severity="ticket"'],
            "equal": [cluster, "mesh", "destination_namespace", "destination_service"],
        },
    ]


def alertmanager_config(cfg: Config, dialects: list[Dialect]) -> dict:
    return {
        "global": {"resolve_timeout": "5m"},
        "route": _route(cfg, dialects),
        "inhibit_rules": _inhibit_rules(cfg.cluster_label),
        "receivers": _receivers(cfg, dialects),
    }


def render(cfg: Config, dialects: list[Dialect]) -> dict[str, bytes]:
    return {
        "deploy/alertmanager/alertmanager.yml": yaml_file(alertmanager_config(cfg, dialects)),
        "deploy/alertmanager/kustomization.yaml": kustomization(
            namespace=cfg.deploy.monitoring_namespace,
            generators=[{"name": "meshobs-alertmanager-config", "files": ["alertmanager.yml"]}],
        ),
    }
