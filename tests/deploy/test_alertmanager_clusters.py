"""alertmanager.clusters: clusters with receivers of their own, checked by amtool and by a real
Alertmanager delivering to a webhook; every other cluster keeps the shared routing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from meshobs import config
from meshobs.errors import ConfigError
from meshobs.render.deploy.alertmanager import SECRETS_DIR
from tests.deploy.conftest import render
from tests.support.procs import require_binary, wait_until
from tests.support.prom import Webhook, amtool_routes, run_alertmanager

# A cluster label that is not the default, so that nothing can lean on the literal "cluster".
LABEL = "k8s_cluster"
TWO_CLUSTERS = {
    "cluster_label": LABEL,
    "alertmanager": {"clusters": {
        "eu-1": {"chat_channel": "#eu-oncall"},
        "us-1": {"pager_key_file": "pd-us", "chat_webhook_file": "slack-us"},
    }},
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    """alertmanager.yml rendered from TWO_CLUSTERS."""
    path = tmp_path_factory.mktemp("clusters") / "alertmanager.yml"
    path.write_bytes(render(config.from_dict(TWO_CLUSTERS))["deploy/alertmanager/alertmanager.yml"])
    return path


def test_amtool_accepts_the_config_with_two_clusters(rendered):
    """amtool check-config accepts alertmanager.yml with two clusters' pagers and chats beside the shared receivers."""
    amtool = require_binary("amtool")
    result = subprocess.run([amtool, "check-config", str(rendered)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " - 3 inhibit rules\n - 9 receivers\n" in result.stdout


def test_cluster_receivers_read_their_own_secret_files(rendered):
    """Each cluster's receivers read their key and webhook URL from files in the secrets folder, named by the cluster or by its settings."""
    receivers = {r["name"]: r for r in yaml.safe_load(rendered.read_text())["receivers"]}
    assert receivers["meshobs-eu-1-pager"]["pagerduty_configs"][0]["routing_key_file"] == (
        f"{SECRETS_DIR}/pagerduty-routing-key-eu-1")
    assert receivers["meshobs-us-1-pager"]["pagerduty_configs"][0]["routing_key_file"] == f"{SECRETS_DIR}/pd-us"
    eu_chat = receivers["meshobs-eu-1-chat"]["slack_configs"][0]
    us_chat = receivers["meshobs-us-1-chat"]["slack_configs"][0]
    assert (eu_chat["channel"], eu_chat["api_url_file"]) == ("#eu-oncall", f"{SECRETS_DIR}/slack-webhook-url")
    assert (us_chat["channel"], us_chat["api_url_file"]) == ("#meshobs-us-1", f"{SECRETS_DIR}/slack-us")


def test_each_configured_cluster_routes_to_its_own_receivers(rendered):
    """A listed cluster's pages reach its pager and its chat, its warnings its chat only; an alert of no mesh falls back as before."""
    assert amtool_routes(rendered, **{LABEL: "eu-1"}, alertname="MeshMTLSFailure", severity="critical", mesh="istio") == (
        "meshobs-eu-1-pager,meshobs-eu-1-chat")
    assert amtool_routes(rendered, **{LABEL: "eu-1"}, alertname="MeshErrorBudgetBurn", severity="page", mesh="consul") == (
        "meshobs-eu-1-pager,meshobs-eu-1-chat")
    assert amtool_routes(rendered, **{LABEL: "us-1"}, alertname="MeshHighLatencyP99", severity="warning", mesh="istio") == (
        "meshobs-us-1-chat")
    assert amtool_routes(rendered, **{LABEL: "us-1"}, alertname="MeshPlaintextTraffic", severity="warning", mesh="linkerd") == (
        "meshobs-us-1-chat")
    assert amtool_routes(rendered, **{LABEL: "eu-1"}, alertname="Other", severity="ticket") == "meshobs-default"
    assert amtool_routes(rendered, **{LABEL: "eu-1"}, alertname="Other", severity="critical") == "meshobs-eu-1-pager"


def test_other_clusters_keep_the_shared_routing(rendered):
    """An unlisted cluster, or an alert without the cluster label, is routed exactly as without alertmanager.clusters."""
    assert amtool_routes(rendered, **{LABEL: "ap-1"}, alertname="MeshMTLSFailure", severity="critical", mesh="istio") == (
        "meshobs-pager,meshobs-chat-istio")
    assert amtool_routes(rendered, **{LABEL: "ap-1"}, alertname="MeshHighLatencyP99", severity="warning", mesh="linkerd") == (
        "meshobs-chat-linkerd")
    assert amtool_routes(rendered, alertname="MeshErrorBudgetBurn", severity="page", mesh="consul") == (
        "meshobs-pager,meshobs-chat-consul")
    # the label name is the configured one: a label called "cluster" selects nothing
    assert amtool_routes(rendered, cluster="eu-1", alertname="MeshHighLatencyP99", severity="warning", mesh="istio") == (
        "meshobs-chat-istio")
    assert amtool_routes(rendered, **{LABEL: "ap-1"}, alertname="Other", severity="ticket") == "meshobs-default"


def test_inhibitions_still_require_the_same_cluster(rendered):
    """Every inhibition names the configured cluster label in `equal`, so one cluster never silences another."""
    rules = yaml.safe_load(rendered.read_text())["inhibit_rules"]
    assert len(rules) == 3 and all(LABEL in rule["equal"] for rule in rules)


def test_without_clusters_the_routing_is_the_shared_one():
    """An empty alertmanager.clusters renders the same alertmanager.yml as leaving the key out."""
    path = "deploy/alertmanager/alertmanager.yml"
    assert render(config.from_dict({"alertmanager": {"clusters": {}}}))[path] == render()[path]


def _to_webhook(rendered: Path, url: str, folder: Path) -> Path:
    """The rendered routing and inhibitions with every receiver (same name) posting to `url`, and
    every group sent at once rather than after 10-30s."""
    document = yaml.safe_load(rendered.read_text())

    def at_once(route: dict) -> None:
        if "group_wait" in route:
            route["group_wait"] = "0s"
        if "group_interval" in route:
            route["group_interval"] = "1s"
        for child in route.get("routes", []):
            at_once(child)

    at_once(document["route"])
    document["receivers"] = [{"name": r["name"], "webhook_configs": [{"url": url, "send_resolved": False}]}
                             for r in document["receivers"]]
    path = folder / "alertmanager.yml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_real_alertmanager_delivers_a_cluster_alert_to_that_clusters_receivers(rendered, tmp_path, processes, request):
    """A real Alertmanager with the rendered routing delivers an eu-1 page to eu-1's pager and chat and an unlisted cluster's page to the shared ones."""
    webhook = Webhook.start(request)
    am = run_alertmanager(processes, _to_webhook(rendered, webhook.url, tmp_path), tmp_path)
    am.post([
        {"labels": {"alertname": "MeshMTLSFailure", "severity": "critical", "mesh": "istio", LABEL: "eu-1"}},
        {"labels": {"alertname": "MeshMTLSFailure", "severity": "critical", "mesh": "istio", LABEL: "ap-1"}},
    ])

    expected = {("meshobs-eu-1-pager", "eu-1"), ("meshobs-eu-1-chat", "eu-1"),
                ("meshobs-pager", "ap-1"), ("meshobs-chat-istio", "ap-1")}

    def delivered():
        return {(p["receiver"], a["labels"][LABEL]) for p in list(webhook.posts) for a in p["alerts"]}

    wait_until(lambda: delivered() >= expected, timeout=20, what="alertmanager to deliver to the four receivers")
    assert delivered() == expected


@pytest.mark.parametrize("clusters, message", [
    (["eu-1"], "alertmanager.clusters: expected a mapping of cluster -> settings, got list"),
    ({"eu 1": {}}, "alertmanager.clusters['eu 1']: 'eu 1' must be a cluster label value: letters, digits, '.', '_' or "
                   "'-', not empty"),
    ({"": {}}, "alertmanager.clusters['']: '' must be a cluster label value: letters, digits, '.', '_' or '-', not empty"),
    ({1: {}}, "alertmanager.clusters[1]: expected a string, got int 1"),
    ({"eu-1": "#eu"}, "alertmanager.clusters.eu-1: expected a mapping, got str"),
    ({"eu-1": {"pager": "pd-eu"}},
     "alertmanager.clusters.eu-1.pager: unknown key (known keys here: chat_channel, chat_webhook_file, pager_key_file)"),
    ({"eu-1": {"pager_key_file": "../pd-eu"}},
     "alertmanager.clusters.eu-1.pager_key_file: '../pd-eu' must be a file name: letters, digits, '.', '_' or '-'"),
    ({"eu-1": {"chat_webhook_file": ".."}},
     "alertmanager.clusters.eu-1.chat_webhook_file: '..' must be a file name: letters, digits, '.', '_' or '-'"),
    ({"eu-1": {"chat_channel": "#{{ .CommonLabels.x }}"}},
     "alertmanager.clusters.eu-1.chat_channel: '#{{ .CommonLabels.x }}' must be a Slack channel such as #eu-oncall: "
     "letters, digits, '.', '_' or '-' after an optional '#' or '@'"),
    ({"eu-1": {"chat_channel": 7}}, "alertmanager.clusters.eu-1.chat_channel: expected a string, got int 7"),
])
def test_a_bad_cluster_setting_is_refused_naming_its_key(clusters, message):
    """A wrong cluster name or per-cluster setting is refused with its dotted key and the reason."""
    with pytest.raises(ConfigError) as info:
        config.from_dict({"alertmanager": {"clusters": clusters}})
    assert str(info.value) == message


def test_every_bad_cluster_setting_is_named_at_once():
    """Two wrong clusters give two errors in one run, and a good cluster beside them is not reported."""
    with pytest.raises(ConfigError) as info:
        config.from_dict({"alertmanager": {"clusters": {"eu 1": {}, "us-1": {"chat_channel": "a b"}, "ap-1": {}}}})
    assert str(info.value) == (
        "2 errors:\n"
        "  alertmanager.clusters['eu 1']: 'eu 1' must be a cluster label value: letters, digits, '.', '_' or '-', not empty\n"
        "  alertmanager.clusters.us-1.chat_channel: 'a b' must be a Slack channel such as #eu-oncall: letters, digits, "
        "'.', '_' or '-' after an optional '#' or '@'"
    )


def test_the_cluster_settings_load_back_from_config_validate_output():
    """`meshobs config --validate` writes the clusters as a mapping that loads back to the same configuration."""
    cfg = config.from_dict(TWO_CLUSTERS)
    written = yaml.safe_load(config.to_yaml(cfg))
    assert written["alertmanager"]["clusters"]["us-1"] == {
        "pager_key_file": "pd-us", "chat_channel": "", "chat_webhook_file": "slack-us"}
    assert config.from_dict(written) == cfg
