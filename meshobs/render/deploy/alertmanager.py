"""Alertmanager: route by severity, then by mesh; group per service; inhibit the noise.

Receivers hold no secret: the PagerDuty routing key, the Slack webhook URL and the webhook's
bearer token are read from files that the Alertmanager pod mounts from a Secret
(SECRETS_DIR/<key>), never written into this ConfigMap.
"""

from __future__ import annotations

from meshobs.config import Config
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


def _matcher_alternatives(values: tuple[str, ...]) -> str:
    return "|".join(values)


def _receivers(dialects: list[Dialect]) -> list[dict]:
    pager = {
        "name": "meshobs-pager",
        "pagerduty_configs": [{"routing_key_file": f"{SECRETS_DIR}/pagerduty-routing-key", "send_resolved": True}],
    }
    chat = [
        {
            "name": f"meshobs-chat-{d.name}",
            "slack_configs": [
                {
                    "api_url_file": f"{SECRETS_DIR}/slack-webhook-url",
                    "channel": f"#meshobs-{d.name}",
                    "send_resolved": True,
                    "title": f"[{{{{ .Status | toUpper }}}}] {d.title}: {{{{ .CommonLabels.alertname }}}}",
                    "text": "{{ range .Alerts }}{{ .Annotations.summary }}\n{{ .Annotations.runbook_url }}\n{{ end }}",
                }
            ],
        }
        for d in dialects
    ]
    fallback = {
        "name": "meshobs-default",
        "webhook_configs": [
            {
                "url": "http://alert-receiver.monitoring.svc:8080/alerts",
                "http_config": {"authorization": {"credentials_file": f"{SECRETS_DIR}/webhook-token"}},
                "send_resolved": True,
            }
        ],
    }
    return [fallback, pager, *chat]


def _route(cluster: str, dialects: list[Dialect]) -> dict:
    paging = f'severity=~"{_matcher_alternatives(PAGING_SEVERITIES)}"'
    return {
        "receiver": "meshobs-default",
        "group_by": ["alertname", cluster, "mesh", "destination_namespace"],
        "group_wait": "30s",
        "group_interval": "5m",
        "repeat_interval": "4h",
        "routes": [
            {
                "matchers": [paging],
                "receiver": "meshobs-pager",
                "group_by": ["alertname", cluster, *OBJECT_LABELS[:-1]],
                "group_wait": "10s",
                "repeat_interval": "1h",
                # Paged alerts also reach the mesh's channel below.
                "continue": True,
            },
            *(
                {"matchers": [f'mesh="{d.name}"'], "receiver": f"meshobs-chat-{d.name}"}
                for d in dialects
            ),
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
        "route": _route(cfg.cluster_label, dialects),
        "inhibit_rules": _inhibit_rules(cfg.cluster_label),
        "receivers": _receivers(dialects),
    }


def render(cfg: Config, dialects: list[Dialect]) -> dict[str, bytes]:
    return {
        "deploy/alertmanager/alertmanager.yml": yaml_file(alertmanager_config(cfg, dialects)),
        "deploy/alertmanager/kustomization.yaml": kustomization(
            namespace=cfg.deploy.monitoring_namespace,
            generators=[{"name": "meshobs-alertmanager-config", "files": ["alertmanager.yml"]}],
        ),
    }
