"""Configuration: built-in defaults, overridden by a meshobs.yaml, validated key by key.

Every section is a frozen dataclass; each field carries its documentation in `metadata["doc"]`
and, where a value has limits, a `check` that returns the reason it is wrong. `load` rejects
unknown keys (suggesting the key meant), wrong types and impossible values, all of them at once,
each naming its dotted key; it logs a warning for a setting that has no effect without another.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from meshobs import ruler_fields, yamlfmt
from meshobs.errors import ConfigError, ConfigErrors

log = logging.getLogger(__name__)

_DURATION = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_DURATION_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


def duration_seconds(text: str) -> float:
    """Seconds in a Prometheus duration such as `1h30m`; ValueError when it is not one."""
    match = _DURATION.match(text)
    if not text or not match or not any(match.groups()):
        raise ValueError(f"{text!r} is not a Prometheus duration such as 30s, 5m, 1h or 7d")
    return sum(int(g) * unit for g, unit in zip(match.groups(), _DURATION_UNITS) if g)


def _duration(zero_allowed: bool = False) -> Callable[[Any], str | None]:
    def check(value: str) -> str | None:
        try:
            seconds = duration_seconds(value)
        except ValueError:
            return "is not a Prometheus duration such as 30s, 5m, 1h or 7d"
        if zero_allowed:
            return "must be 0s or longer" if seconds < 0 else None
        return "must be longer than 0s" if seconds <= 0 else None

    return check


# The validator of every `for:`-like setting (how long a condition must hold; 0s: at once).
_how_long = _duration(zero_allowed=True)


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _non_negative(value: float) -> str | None:
    return None if value >= 0 else "must be 0 or more"


def _fraction(value: float) -> str | None:
    return None if 0 < value < 1 else "must be a ratio between 0 and 1 (exclusive), e.g. 0.05 for 5%"


def _percent_open(value: float) -> str | None:
    return None if 0 < value < 100 else "must be a percentage above 0 and below 100"


def _percent_closed(value: float) -> str | None:
    return None if 0 <= value <= 100 else "must be a percentage from 0 to 100"


def _severity(value: str) -> str | None:
    return None if value in ("critical", "warning", "info", "page", "ticket") else (
        "must be one of critical, warning, info, page, ticket"
    )


def _label_name(value: str) -> str | None:
    return None if re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", value) else "must be a Prometheus label name"


def _matchers(value: str) -> str | None:
    """Extra label matchers joined into every selector, e.g. `namespace!~"kube-.*"`."""
    if not value:
        return None
    matcher = r'\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=|!=|=~|!~)\s*"(?:[^"\\]|\\.)*"\s*'
    if re.fullmatch(rf"{matcher}(,{matcher})*", value):
        return None
    return 'must be label matchers without braces, e.g. namespace!~"kube-.*",env="prod"'


def _url(value: str) -> str | None:
    return None if re.match(r"^https?://[^\s]+$", value) else "must be an http(s) URL"


def _label_value(value: str) -> str | None:
    return None if re.fullmatch(r"[A-Za-z0-9._-]*", value) else "must be letters, digits, '.', '_' or '-'"


def _host_port(value: str) -> str | None:
    match = re.fullmatch(r"[A-Za-z0-9.-]+:(\d+)", value)
    return None if match and 1 <= int(match.group(1)) <= 65535 else "must be host:port, e.g. alertmanager.monitoring.svc:9093"


def _k8s_name(value: str) -> str | None:
    ok = re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", value) and len(value) <= 63
    return None if ok else "must be a Kubernetes name (lower case letters, digits and '-')"


def _each_once(check: Callable[[str], str | None]) -> Callable[[tuple[str, ...]], str | None]:
    """`check` for every value of a list, and no value twice."""

    def check_all(values: tuple[str, ...]) -> str | None:
        for value in values:
            reason = check(value)
            if reason:
                return f"has {value!r}, which {reason}"
        duplicates = sorted({value for value in values if values.count(value) > 1})
        return f"names {duplicates[0]!r} twice" if duplicates else None

    return check_all


_k8s_names = _each_once(_k8s_name)


_LABEL_KEY = r"(?:[a-z0-9]([-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_LABEL_VALUE = r"(?:[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"


def label_selector(text: str) -> dict[str, str]:
    """`key=value,key=value` (kubectl's -l equality form) as matchLabels."""
    return dict(pair.split("=", 1) for pair in text.split(","))


def _label_selector(value: str) -> str | None:
    pair = rf"{_LABEL_KEY}={_LABEL_VALUE}"
    if re.fullmatch(rf"{pair}(,{pair})*", value):
        return None
    return "must be labels as key=value[,key=value], e.g. app.kubernetes.io/name=prometheus"


def _cidr(value: str) -> str | None:
    import ipaddress

    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError:
        return "must be an IPv4 or IPv6 network such as 10.0.0.0/24 (host bits zero)"
    return None


def _setting(default: Any, doc: str, check: Callable[[Any], str | None] | None = None) -> Any:
    return field(default=default, metadata={"doc": doc, "check": check})


def _section(cls: type, doc: str) -> Any:
    return field(default_factory=cls, metadata={"doc": doc, "check": None})


@dataclass(frozen=True)
class ErrorRateAlert:
    ratio: float = _setting(
        0.10, "share of failed requests (5xx, failed gRPC calls, calls no pod answered) above which MeshHighErrorRate fires",
        _fraction,
    )
    window: str = _setting("5m", "rate window of the ratio", _duration())
    for_: str = _setting("5m", "how long the ratio must stay high before firing", _how_long)
    min_requests: float = _setting(
        20, "requests the service must have received over the window for the ratio to count (a count, not a rate: "
        "a quiet service is alerted on too)", _non_negative,
    )
    severity: str = _setting("critical", "severity label", _severity)


@dataclass(frozen=True)
class LatencyAlert:
    threshold_seconds: float = _setting(1.0, "p99 latency above which MeshHighLatencyP99 fires", _positive)
    quantile: float = _setting(0.99, "the quantile compared with the threshold", _fraction)
    window: str = _setting("5m", "rate window of the histogram", _duration())
    for_: str = _setting("10m", "how long latency must stay high", _how_long)
    min_requests_per_second: float = _setting(0.5, "minimum traffic for the alert to be considered", _non_negative)
    severity: str = _setting("warning", "severity label", _severity)


@dataclass(frozen=True)
class UnauthorizedBurstAlert:
    window: str = _setting("5m", "window of the current denial rate", _duration())
    baseline_window: str = _setting("1h", "window of the baseline the current rate is compared with", _duration())
    factor: float = _setting(5.0, "a burst is the current rate above factor x baseline", _positive)
    min_denials_per_second: float = _setting(
        0.05, "the relative rule only counts when at least this many denials per second", _non_negative
    )
    absolute_denials_per_second: float = _setting(
        1.0, "denials per second that fire whatever the baseline (a burst from zero)", _positive
    )
    for_: str = _setting(
        "1m", "how long the burst must last where it is judged from rates (without the exporter; with it, "
        "the exporter's real-time burst state fires at once)", _how_long,
    )
    severity: str = _setting("critical", "severity label", _severity)


@dataclass(frozen=True)
class UnauthorizedSustainedAlert:
    min_denials_per_second: float = _setting(
        0.1, "denials per second at a workload (over alerts.unauthorized_burst.window) that fire for as long as they last",
        _positive,
    )
    for_: str = _setting("5m", "how long the denials must go on", _how_long)
    severity: str = _setting("warning", "severity label", _severity)


@dataclass(frozen=True)
class MTLSFailureAlert:
    window: str = _setting("5m", "window of the failure rate", _duration())
    min_failures_per_second: float = _setting(
        0.01, "failures per second above which MeshMTLSFailure fires (0.01/s: a few in 5m, not one stray probe)",
        _non_negative,
    )
    for_: str = _setting("2m", "how long failures must go on", _how_long)
    severity: str = _setting("critical", "severity label", _severity)


@dataclass(frozen=True)
class PlaintextAlert:
    window: str = _setting("5m", "window of the plaintext request rate", _duration())
    min_requests_per_second: float = _setting(
        0.01, "plaintext requests per second tolerated (0.01/s: one stray request does not fire)", _non_negative
    )
    for_: str = _setting("5m", "how long plaintext traffic must go on", _how_long)
    severity: str = _setting("warning", "severity label", _severity)


@dataclass(frozen=True)
class CertExpiryAlert:
    warning: str = _setting("7d", "warn when a CA / issuer / root certificate expires within this time", _duration())
    critical: str = _setting("1d", "critical when a CA / issuer / root certificate expires within this time", _duration())
    leaf_warning_fraction: float = _setting(
        0.1, "warn when a leaf (workload) certificate has less than this share of its lifetime left: its rotation "
        "has failed (the meshes renew leaves at 50-90% of their lifetime)", _fraction,
    )
    leaf_critical_fraction: float = _setting(
        0.05, "critical when a leaf certificate has less than this share of its lifetime left", _fraction,
    )
    for_: str = _setting("5m", "how long the condition must hold", _how_long)


@dataclass(frozen=True)
class ConfigRejectedAlert:
    window: str = _setting("10m", "window in which any rejection counts", _duration())
    for_: str = _setting("5m", "how long rejections must go on", _how_long)
    severity: str = _setting("warning", "severity label", _severity)


@dataclass(frozen=True)
class UpstreamHealthAlerts:
    window: str = _setting("5m", "rate window of upstream failures (no healthy upstream, connect failures, overflows)", _duration())
    min_failures_per_second: float = _setting(
        0.05, "failures per second from one caller to one service above which an upstream alert fires", _non_negative
    )
    for_: str = _setting("5m", "how long upstream failures, ejections or a proxy not live must go on", _how_long)
    severity: str = _setting("warning", "severity label of the upstream and proxy alerts", _severity)
    control_plane_for: str = _setting("5m", "how long a control-plane component must be missing", _how_long)
    control_plane_severity: str = _setting("critical", "severity label of MeshControlPlaneDown", _severity)


@dataclass(frozen=True)
class ZtunnelAlerts:
    down_for: str = _setting(
        "2m", "how long a ztunnel must fail its scrapes (or be gone) before MeshZtunnelDown fires: every ambient "
        "pod of its node is unreachable meanwhile", _how_long)
    gone_within: str = _setting(
        "15m", "a node whose ztunnel was scraped within this time but is no longer counts as down (a node removed "
        "from the cluster too, until this time has passed)", _duration())
    down_severity: str = _setting("critical", "severity label of MeshZtunnelDown", _severity)
    window: str = _setting("5m", "rate window of a ztunnel's xDS and identity failures", _duration())
    min_xds_failures_per_second: float = _setting(
        0.005, "failed xDS streams to istiod per second (reason ConnectionError or Error) above which MeshZtunnelXdsFailures "
        "fires (0.005/s: more than one in 5m; normal stream recycling is reason Reconnect)", _non_negative)
    min_identity_failures_per_second: float = _setting(
        0.01, "connections per second a ztunnel closed with IDENTITY_ERROR, TLS_FAILURE or CERT_REVOKED above which "
        "MeshZtunnelIdentityFailures fires", _non_negative)
    for_: str = _setting("5m", "how long xDS or identity failures must go on", _how_long)
    severity: str = _setting("warning", "severity label of the xDS and identity alerts", _severity)


@dataclass(frozen=True)
class CrossClusterAlerts:
    window: str = _setting(
        "5m", "rate window of the requests between clusters the error ratio is computed from (also recorded, with the "
        "dashboards' traffic window, for the panels of traffic between clusters)", _duration())
    error_ratio: float = _setting(
        0.1, "share of failed requests (5xx, failed gRPC calls) from one cluster to another above which "
        "MeshCrossClusterErrors fires", _fraction)
    min_requests: float = _setting(
        20, "requests from one cluster to the other over the window for the ratio to count (a count, not a rate)",
        _non_negative)
    errors_for: str = _setting("5m", "how long the error ratio between two clusters must stay high", _how_long)
    errors_severity: str = _setting("warning", "severity label of MeshCrossClusterErrors", _severity)
    unreachable_for: str = _setting(
        "5m", "how long the mesh's own reachability of a remote cluster (Linkerd's gateway probes, Consul's peering "
        "health) must stay below 1 before MeshRemoteClusterUnreachable fires", _how_long)
    unreachable_severity: str = _setting("critical", "severity label of MeshRemoteClusterUnreachable", _severity)


@dataclass(frozen=True)
class Alerts:
    error_rate: ErrorRateAlert = _section(ErrorRateAlert, "MeshHighErrorRate")
    latency: LatencyAlert = _section(LatencyAlert, "MeshHighLatencyP99")
    unauthorized_burst: UnauthorizedBurstAlert = _section(UnauthorizedBurstAlert, "MeshUnauthorizedAccessBurst")
    unauthorized_sustained: UnauthorizedSustainedAlert = _section(UnauthorizedSustainedAlert, "MeshUnauthorizedAccessSustained")
    mtls_failure: MTLSFailureAlert = _section(MTLSFailureAlert, "MeshMTLSFailure")
    plaintext: PlaintextAlert = _section(PlaintextAlert, "MeshPlaintextTraffic")
    cert_expiry: CertExpiryAlert = _section(CertExpiryAlert, "MeshCertificateExpiringSoon")
    config_rejected: ConfigRejectedAlert = _section(ConfigRejectedAlert, "MeshProxyConfigRejected")
    upstream_health: UpstreamHealthAlerts = _section(
        UpstreamHealthAlerts, "MeshNoHealthyUpstream, MeshUpstreamConnectFailures, MeshCircuitBreakerOpen, "
        "MeshOutlierEjections, MeshProxyNotLive, MeshControlPlaneDown")
    ztunnel: ZtunnelAlerts = _section(
        ZtunnelAlerts, "Istio ambient's ztunnels: MeshZtunnelDown, MeshZtunnelXdsFailures, MeshZtunnelIdentityFailures")
    cross_cluster: CrossClusterAlerts = _section(
        CrossClusterAlerts, "calls between clusters: MeshRemoteClusterUnreachable, MeshCrossClusterErrors")


@dataclass(frozen=True)
class BurnRate:
    """One multi-window burn-rate alert: the error ratio over both windows above factor x budget."""

    long_window: str
    short_window: str
    factor: float
    for_: str
    severity: str


# The burn-rate alerts per SLO period (SRE workbook, ch. 5; Sloth's 30d and 28d tables): 2% of the
# budget spent in 1h or 5% in 6h pages, 10% in 1d or 3d opens a ticket. Recording rules, alerts
# and the dashboards' budget panel all derive from this table.
BURN_RATES: dict[str, tuple[BurnRate, ...]] = {
    "30d": (
        BurnRate("1h", "5m", 14.4, "2m", "page"),
        BurnRate("6h", "30m", 6.0, "2m", "page"),
        BurnRate("1d", "2h", 3.0, "15m", "ticket"),
        BurnRate("3d", "6h", 1.0, "15m", "ticket"),
    ),
    "28d": (
        BurnRate("1h", "5m", 13.44, "2m", "page"),
        BurnRate("6h", "30m", 5.6, "2m", "page"),
        BurnRate("1d", "2h", 2.8, "15m", "ticket"),
        BurnRate("3d", "6h", 0.933, "15m", "ticket"),
    ),
}


def _slo_period(value: str) -> str | None:
    if value in BURN_RATES:
        return None
    return f"is not a supported SLO period (supported: {', '.join(sorted(BURN_RATES))})"


@dataclass(frozen=True)
class SLO:
    availability_percent: float = _setting(
        99.9, "availability SLO target in percent (share of requests that did not fail)", _percent_open
    )
    period: str = _setting("30d", "SLO period the burn rates are relative to (one of: 28d, 30d)", _slo_period)
    min_failed_requests: float = _setting(
        3, "failed requests a burn-rate alert needs in its short window (a single failure never pages)", _non_negative
    )

    @property
    def burn_rates(self) -> tuple[BurnRate, ...]:
        return BURN_RATES[self.period]


def _cluster_name(value: str) -> str | None:
    if value and not _label_value(value):
        return None
    return "must be a cluster label value: letters, digits, '.', '_' or '-', not empty"


def _secret_file(value: str) -> str | None:
    # The name becomes a key of the Kubernetes Secret and a file in Alertmanager's secrets folder.
    if value not in (".", "..") and re.fullmatch(r"[A-Za-z0-9._-]+", value):
        return None
    return "must be a file name: letters, digits, '.', '_' or '-'"


def _slack_channel(value: str) -> str | None:
    # Alertmanager expands templates in `channel`; these characters leave none to expand.
    if re.fullmatch(r"[#@]?[A-Za-z0-9._-]{1,80}", value):
        return None
    return "must be a Slack channel such as #eu-oncall: letters, digits, '.', '_' or '-' after an optional '#' or '@'"


def _or_empty(check: Callable[[str], str | None]) -> Callable[[str], str | None]:
    """`check`, with the empty string allowed (it stands for a value derived from the context)."""
    return lambda value: None if value == "" else check(value)


def _entries(cls: type, entry: str, doc: str, check: Callable[[str], str | None]) -> Any:
    """A mapping in meshobs.yaml (`entry` name -> a `cls` section), kept as a tuple of pairs so that
    the Config stays frozen and hashable; `check` judges each name."""
    return field(default=(), metadata={"doc": doc, "check": None, "entries": cls, "entry": entry, "entry_check": check})


@dataclass(frozen=True)
class ClusterReceivers:
    pager_key_file: str = _setting(
        "", "file in Alertmanager's secrets folder holding this cluster's PagerDuty routing key; empty: "
        "pagerduty-routing-key-<cluster>", _or_empty(_secret_file),
    )
    chat_channel: str = _setting("", "Slack channel of this cluster's alerts; empty: #meshobs-<cluster>", _or_empty(_slack_channel))
    chat_webhook_file: str = _setting(
        "", "file in Alertmanager's secrets folder holding the Slack webhook URL that posts to chat_channel (a Slack "
        "app's webhook posts to its own channel only); empty: slack-webhook-url, the shared receivers' file",
        _or_empty(_secret_file),
    )


@dataclass(frozen=True)
class Alertmanager:
    clusters: tuple[tuple[str, ClusterReceivers], ...] = _entries(
        ClusterReceivers, "cluster",
        "clusters whose alerts go to receivers of their own: value of the cluster label -> its pager and chat "
        "(paging severities reach its pager and its chat, the rest its chat); every other cluster keeps the shared "
        "receivers", _cluster_name,
    )


@dataclass(frozen=True)
class Selectors:
    """Extra label matchers added to every selector of a source, e.g. to leave out a namespace."""

    istio: str = _setting("", "matchers added to Istio metric selectors", _matchers)
    linkerd: str = _setting("", "matchers added to Linkerd metric selectors", _matchers)
    consul: str = _setting("", "matchers added to Consul/Envoy metric selectors", _matchers)
    exporter: str = _setting("", "matchers added to the meshobs exporter's series", _matchers)


@dataclass(frozen=True)
class Deploy:
    namespace: str = _setting("meshobs", "namespace the exporter runs in", _k8s_name)
    monitoring_namespace: str = _setting(
        "monitoring", "namespace of Prometheus; only it may reach the exporter's metrics port", _k8s_name
    )
    image: str = _setting("ghcr.io/meshobs/meshobs:0.1.0", "exporter container image")
    exporter_port: int = _setting(9942, "port the exporter serves /metrics on", lambda v: None if 1 <= v <= 65535 else "must be a TCP port")
    shards: int = _setting(3, "replicas of the sharded exporter StatefulSet", _positive)
    scrape_interval: str = _setting("15s", "Prometheus scrape interval", _duration())
    prometheus_url: str = _setting(
        "http://prometheus.monitoring.svc:9090", "URL of Prometheus for the Grafana datasource", _url
    )
    alertmanager_address: str = _setting(
        "alertmanager.monitoring.svc:9093", "host:port of Alertmanager that Prometheus sends alerts to", _host_port
    )
    consul_address: str = _setting(
        "consul-server.consul.svc:8500", "host:port of the Consul HTTP API for consul_sd_configs", _host_port
    )
    cluster: str = _setting(
        "default",
        "value of the cluster label (see cluster_label) that every scrape job attaches, so the dashboards' "
        "cluster variable has a value; name each cluster when several share a Grafana; empty: none (your "
        "Prometheus must then attach the label itself)",
        _label_value,
    )
    app_namespaces: tuple[str, ...] = _setting(
        ("default",),
        "application namespaces rendered under deploy/allow-scrapes/<mesh>/namespaces/ (policies that let Prometheus "
        "and the exporter reach the proxies' metrics ports under default-deny); for any other namespace apply "
        "deploy/allow-scrapes/<mesh>/template with `kubectl apply -n NAMESPACE -k`",
        _k8s_names,
    )
    prometheus_pod_labels: str = _setting(
        "app.kubernetes.io/name=prometheus",
        "labels (key=value[,key=value]) of the Prometheus pods in monitoring_namespace; the allow-scrapes "
        "NetworkPolicies admit only these pods (the prometheus-operator and the Helm charts set this one)",
        _label_selector,
    )
    prometheus_service_account: str = _setting(
        "prometheus",
        "ServiceAccount of Prometheus in monitoring_namespace; Linkerd's allow-scrapes authorization names this identity",
        _k8s_name,
    )
    api_server_cidr: str = _setting(
        "0.0.0.0/0",
        "addresses of the Kubernetes API server that Prometheus and the exporter may reach on 443/6443 when their "
        "namespace denies egress; narrow it to your control plane's endpoints (`kubectl get endpoints kubernetes`)",
        _cidr,
    )
    remote_write_url: str = _setting(
        "http://metrics-store.monitoring.svc/api/v1/write",
        "where deploy/prometheus-agent remote-writes: the long-term store's write endpoint (Mimir /api/v1/push, "
        "Thanos Receive /api/v1/receive, VictoriaMetrics /api/v1/write)",
        _url,
    )


def _ruler_kind(value: str) -> str | None:
    return None if value in ruler_fields.KINDS else f"must be one of {', '.join(ruler_fields.KINDS)}"


def _partial_response_strategy(value: str) -> str | None:
    return None if value in ("", "abort", "warn") else "must be abort or warn (or empty: not rendered; Thanos aborts)"


def _group_labels(value: dict[str, str]) -> str | None:
    for name, label_value in value.items():
        if _label_name(name) or name.startswith("__"):
            return f"has {name!r}, which must be a Prometheus label name not starting with '__'"
        if not label_value or _label_value(label_value):
            return (f"has {name}: {label_value!r}, which must be letters, digits, '.', '_' or '-' (not empty: an "
                    "empty value removes the label)")
    return None


def _tenant_id(value: str) -> str | None:
    # Mimir's tenant ID rules (dskit tenant.ValidTenantID): at most 150 of these characters, not . or ..
    if re.fullmatch(r"[A-Za-z0-9!_.*'()-]{1,150}", value) and value not in (".", ".."):
        return None
    return "is not a Mimir tenant ID (letters, digits and !-_.*'(), at most 150)"


class FrozenLabels(dict):
    """Label name -> value, a mapping in meshobs.yaml that the frozen Config can hold and hash."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items())))

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("configuration labels cannot change")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]


@dataclass(frozen=True)
class Ruler:
    """The rule-group fields of deploy/ruler/rules/ for the ruler of a long-term store
    (docs/long-term-stores.md); which kind reads which field is meshobs/ruler_fields.py."""

    kind: str = _setting(
        "prometheus", "the ruler that loads deploy/ruler/rules/: prometheus, thanos, mimir or victoriametrics "
        "(vmalert); only fields this kind reads are rendered, and a setting it does not read is refused",
        _ruler_kind)
    query_offset: str = _setting(
        "0s", "evaluate every group this long in the past, so that remote-written samples have arrived "
        "(group field query_offset: Prometheus >= 2.53, Thanos >= 0.36, Mimir); 0s: not rendered", _how_long)
    partial_response_strategy: str = _setting(
        "", "Thanos Ruler only: warn evaluates with the stores that answer, abort (Thanos's default) skips the "
        "evaluation when one fails; empty: not rendered", _partial_response_strategy)
    source_tenants: tuple[str, ...] = _setting(
        (), "Mimir only: the tenants every group reads, as a federated rule group (when each cluster writes to a "
        "tenant of its own; needs -ruler.tenant-federation.enabled); what the rules record goes to the tenant the "
        "files are loaded into; []: not rendered", _each_once(_tenant_id))
    group_labels: FrozenLabels = _setting(
        FrozenLabels(), "labels added to every rule of every group (group field labels: Prometheus >= 3.0, "
        "Thanos >= 0.38, Mimir >= 3.0, vmalert), e.g. {ruler: global}; never the cluster label; {}: not rendered",
        _group_labels)

    def __post_init__(self) -> None:
        for name in ruler_fields.values(self):
            group_field = ruler_fields.BY_KEY[name]
            if self.kind not in group_field.kinds:
                raise ConfigError(f"ruler.{group_field.setting}",
                                  f"{_plain(getattr(self, group_field.setting))!r} cannot be set for ruler.kind "
                                  f"{self.kind}: {ruler_fields.refusal(group_field, self.kind)}")


@dataclass(frozen=True)
class Tracing:
    sampling_percent: float = _setting(1.0, "share of requests traced by the proxies, in percent", _percent_closed)
    collector_namespace: str = _setting("observability", "namespace of the OpenTelemetry Collector and Jaeger", _k8s_name)
    collector_image: str = _setting(
        "otel/opentelemetry-collector-contrib:0.115.1", "OpenTelemetry Collector image (contrib: it has tail_sampling)"
    )
    jaeger_image: str = _setting("jaegertracing/jaeger:2.11.0", "Jaeger v2 image (receives OTLP on 4317/4318)")
    slow_trace_ms: int = _setting(1000, "tail sampling keeps every trace slower than this, in milliseconds", _positive)
    keep_percent: float = _setting(
        10.0, "tail sampling keeps this share of the traces that are neither errors nor slow, in percent", _percent_closed
    )
    accept_zipkin: bool = _setting(
        False, "also receive Zipkin v2 on 9411, for proxies still configured to send it (meshobs configures OTLP)"
    )


@dataclass(frozen=True)
class Logging:
    elasticsearch_host: str = _setting("elasticsearch.logging.svc", "Elasticsearch host Fluentd writes to")
    elasticsearch_port: int = _setting(9200, "Elasticsearch port", lambda v: None if 1 <= v <= 65535 else "must be a TCP port")
    forward_host: str = _setting("", "optional Fluentd/Fluent Bit aggregator to forward to as well (empty: none)")
    forward_port: int = _setting(24224, "port of the forward aggregator", lambda v: None if 1 <= v <= 65535 else "must be a TCP port")
    access_log_encoding: str = _setting(
        "json", "encoding of the proxies' access logs and of the Fluentd parser reading them",
        lambda v: None if v in ("json", "text") else "must be json or text",
    )
    namespace: str = _setting("logging", "namespace Fluentd runs in", _k8s_name)
    fluentd_image: str = _setting(
        "fluent/fluentd-kubernetes-daemonset:v1.17-debian-elasticsearch8-1",
        "Fluentd image; needs the elasticsearch, kubernetes_metadata, rewrite_tag_filter and concat plugins",
    )


@dataclass(frozen=True)
class Config:
    cluster_label: str = _setting("cluster", "label that tells clusters apart (dashboard variable, alert grouping)", _label_name)
    datasource: str = _setting("Prometheus", "name of the Grafana Prometheus datasource selected by default")
    runbook_url_base: str = _setting(
        "https://github.com/meshobs/meshobs/blob/main/docs/runbooks.md#", "prefix of every alert's runbook_url", _url
    )
    selectors: Selectors = _section(Selectors, "extra label matchers per source")
    alerts: Alerts = _section(Alerts, "alert thresholds, windows, for durations and severities")
    slo: SLO = _section(SLO, "availability SLO for MeshErrorBudgetBurn")
    alertmanager: Alertmanager = _section(Alertmanager, "routing of deploy/alertmanager/alertmanager.yml")
    deploy: Deploy = _section(Deploy, "Kubernetes deployment of the exporter")
    ruler: Ruler = _section(Ruler, "the group fields of deploy/ruler/rules/ for a long-term store's ruler")
    tracing: Tracing = _section(Tracing, "tracing settings rendered into mesh and collector configs")
    logging: Logging = _section(Logging, "log shipping settings rendered into Fluentd configs")

    def __post_init__(self) -> None:
        expiry = self.alerts.cert_expiry
        if duration_seconds(expiry.critical) >= duration_seconds(expiry.warning):
            raise ConfigError("alerts.cert_expiry.critical", f"{expiry.critical} must be shorter than warning ({expiry.warning})")
        if expiry.leaf_critical_fraction >= expiry.leaf_warning_fraction:
            raise ConfigError("alerts.cert_expiry.leaf_critical_fraction",
                              f"{expiry.leaf_critical_fraction:g} must be smaller than leaf_warning_fraction "
                              f"({expiry.leaf_warning_fraction:g})")
        if self.cluster_label in self.ruler.group_labels:
            raise ConfigError(
                f"ruler.group_labels.{self.cluster_label}",
                f"{self.cluster_label} is the cluster label (cluster_label): every series the ruler records, "
                f"per-cluster ones included, would carry {self.cluster_label}="
                f"{self.ruler.group_labels[self.cluster_label]!r}, and every global series would land in that fake "
                "cluster; name the ruler with another label, e.g. ruler: global",
            )
        burst = self.alerts.unauthorized_burst
        if duration_seconds(burst.baseline_window) <= duration_seconds(burst.window):
            raise ConfigError(
                "alerts.unauthorized_burst.baseline_window",
                f"{burst.baseline_window} must be longer than window ({burst.window})",
            )


def _yaml_key(name: str) -> str:
    # `for` is a Python keyword, so the attribute is `for_`.
    return name.rstrip("_")


def _type_name(kind: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list"}.get(kind, "a mapping")


def _coerce(kind: Any, value: Any, key: str) -> Any:
    if kind is FrozenLabels:
        value = _coerce(dict, value, key)
        for name, item in value.items():
            _coerce(str, name, f"{key} key {name!r}")
            _coerce(str, item, f"{key}.{name}")
        return FrozenLabels(value)
    if typing.get_origin(kind) is tuple:
        # A list of strings in YAML; a tuple in the frozen Config.
        value = _coerce(list, value, key)
        for index, item in enumerate(value):
            _coerce(str, item, f"{key}[{index}]")
        return tuple(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is str and isinstance(value, (int, float)) and not isinstance(value, bool) and key.endswith(
        ("window", "for", "period", "warning", "critical", "interval")
    ):
        raise ConfigError(key, f"expected a duration string such as '5m', got {value!r}")
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ConfigError(key, f"expected {_type_name(kind)}, got {type(value).__name__} {value!r}")
    return value


def _dotted(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _all_keys(cls: type = None, prefix: str = "") -> dict[str, list[str]]:
    """Every key name of the schema -> the dotted paths it has (for "did you mean")."""
    found: dict[str, list[str]] = {}
    hints = typing.get_type_hints(cls or Config)
    for f in dataclasses.fields(cls or Config):
        name = _yaml_key(f.name)
        found.setdefault(name, []).append(_dotted(prefix, name))
        inner_cls, inner_prefix = hints[f.name], _dotted(prefix, name)
        if "entries" in f.metadata:
            inner_cls, inner_prefix = f.metadata["entries"], f"{inner_prefix}.<{f.metadata['entry']}>"
        if dataclasses.is_dataclass(inner_cls):
            for inner, paths in _all_keys(inner_cls, inner_prefix).items():
                found.setdefault(inner, []).extend(paths)
    return found


def _unknown_key(name: str, known: list[str], key: str) -> ConfigError:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    if close:
        return ConfigError(key, f"unknown key; did you mean {close[0]}?")
    elsewhere = _all_keys().get(name)
    if elsewhere:
        return ConfigError(key, f"unknown key here; did you mean {' or '.join(elsewhere)}?")
    return ConfigError(key, f"unknown key (known keys here: {', '.join(known)})")


def _build(cls: type, data: Any, prefix: str, errors: list[ConfigError]) -> Any:
    """The section `cls` from `data`; each wrong value is added to `errors` and left at its
    default, so that one run names every mistake."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        errors.append(ConfigError(prefix or "(top level)", f"expected a mapping, got {type(data).__name__}"))
        return cls()
    hints = typing.get_type_hints(cls)
    fields = {_yaml_key(f.name): f for f in dataclasses.fields(cls)}
    for unknown in sorted(set(map(str, data)) - set(fields)):
        errors.append(_unknown_key(unknown, sorted(fields), _dotted(prefix, unknown)))
    values = {}
    for yaml_key, f in fields.items():
        if yaml_key not in data:
            continue
        key = _dotted(prefix, yaml_key)
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            values[f.name] = _build(kind, data[yaml_key], key, errors)
            continue
        if "entries" in f.metadata:
            values[f.name] = _build_entries(f, data[yaml_key], key, errors)
            continue
        try:
            value = _coerce(kind, data[yaml_key], key)
        except ConfigError as exc:
            errors.append(exc)
            continue
        check = f.metadata.get("check")
        reason = check(value) if check else None
        if reason:
            errors.append(ConfigError(key, f"{_plain(value)!r} {reason}"))
            continue
        values[f.name] = value
    try:
        return cls(**values)
    except ConfigError as exc:
        # a rule across keys: only worth saying when the keys it compares are themselves valid
        section = exc.key.rpartition(".")[0]
        if not any(e.key.startswith(f"{section}.") for e in errors):
            errors.append(exc)
        return cls()  # never used: the errors are raised; the defaults keep the outer sections buildable


def _build_entries(f: dataclasses.Field, data: Any, prefix: str, errors: list[ConfigError]) -> tuple:
    """The (name, section) pairs of the mapping `data` for the `_entries` field `f`; a wrong name
    or section is added to `errors` and left out."""
    if data is None:
        return ()
    if not isinstance(data, dict):
        errors.append(ConfigError(prefix, f"expected a mapping of {f.metadata['entry']} -> settings, got {type(data).__name__}"))
        return ()
    entries = []
    for name, settings in data.items():
        # a name that is not a valid one is quoted, so that its spaces or emptiness show
        where = f"{prefix}[{name!r}]"
        try:
            _coerce(str, name, where)
        except ConfigError as exc:
            errors.append(exc)
            continue
        reason = f.metadata["entry_check"](name)
        if reason:
            errors.append(ConfigError(where, f"{name!r} {reason}"))
            continue
        entries.append((name, _build(f.metadata["entries"], settings, _dotted(prefix, name), errors)))
    return tuple(entries)


# Settings that do nothing alone: (key given in the file, test that it is alone, what to say).
_TOGETHER: tuple[tuple[str, Callable[["Config"], bool], str], ...] = (
    ("cluster_label", lambda c: c.deploy.cluster == "",
     "no scrape job attaches this label while deploy.cluster is empty, so the dashboards' cluster "
     "variable is empty unless your Prometheus adds the label; set deploy.cluster"),
    ("logging.forward_port", lambda c: c.logging.forward_host == "",
     "has no effect while logging.forward_host is empty; set logging.forward_host"),
)


def _given(data: Any, key: str) -> bool:
    for part in key.split("."):
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def warnings(cfg: "Config", data: Any) -> list[str]:
    """Settings the file gives that have no effect because another setting is empty."""
    return [f"{key}: {message}" for key, alone, message in _TOGETHER if _given(data, key) and alone(cfg)]


def from_dict(data: Any, source: str = "") -> Config:
    """A Config from parsed YAML, defaults filling what is absent. Raises a ConfigError naming
    every wrong key (a ConfigErrors when there are several); logs settings that do nothing alone."""
    errors: list[ConfigError] = []
    cfg = _build(Config, data, "", errors)
    if len(errors) == 1:
        raise ConfigError(errors[0].key, errors[0].reason, source)
    if errors:
        raise ConfigErrors(errors, source)
    where = f"{source}: " if source else ""
    for warning in warnings(cfg, data):
        log.warning("%s%s", where, warning)
    return cfg


def load(path: Path) -> Config:
    """Read and validate a meshobs.yaml."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError("(file)", f"cannot read: {exc.strerror}", str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise ConfigError(where, f"not valid YAML: {getattr(exc, 'problem', exc)}", str(path)) from None
    return from_dict(data, str(path))


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return _as_dict(value)
    if isinstance(value, FrozenLabels):
        return dict(value)
    return list(value) if isinstance(value, tuple) else value


def _field_plain(f: dataclasses.Field, value: Any) -> Any:
    if "entries" in f.metadata:
        return {name: _as_dict(entry) for name, entry in value}
    return _plain(value)


def _as_dict(obj: Any) -> dict:
    return {_yaml_key(f.name): _field_plain(f, getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def to_yaml(cfg: Config) -> str:
    return yamlfmt.dump(_as_dict(cfg))


def _default_line(key: str, value: Any) -> str:
    if isinstance(value, tuple):
        # Flow style keeps a list on the one line under its comment.
        return f"{key}: {yaml.safe_dump(list(value), default_flow_style=True).strip()}"
    return yamlfmt.dump({key: _plain(value)}).rstrip("\n")


def documented_defaults() -> str:
    """Every key with its default value, preceded by a comment saying what it does."""
    lines = ["# meshobs.yaml: every key with its default. Any key may be left out.", ""]

    def walk(obj: Any, indent: int) -> None:
        pad = "  " * indent
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            lines.append(f"{pad}# {f.metadata['doc']}")
            if dataclasses.is_dataclass(value):
                lines.append(f"{pad}{_yaml_key(f.name)}:")
                walk(value, indent + 1)
            elif "entries" in f.metadata:
                # none by default: the settings of one entry, commented out, show the form
                lines.append(f"{pad}#   <{f.metadata['entry']}>:")
                for inner in dataclasses.fields(f.metadata["entries"]):
                    lines.append(f"{pad}#     # {inner.metadata['doc']}")
                    lines.append(f"{pad}#     {_default_line(_yaml_key(inner.name), inner.default)}")
                lines.append(f"{pad}{_yaml_key(f.name)}: {{}}")
            else:
                lines.append(f"{pad}{_default_line(_yaml_key(f.name), value)}")

    walk(Config(), 0)
    return "\n".join(lines) + "\n"
