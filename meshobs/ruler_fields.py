"""The rule-group fields a ruler reads besides Prometheus 2's `name`, `interval`, `limit` and
`rules`, per ruler product: the one table the `ruler:` settings, deploy/ruler's rendering and
`meshobs check` all read.

Each product's strict YAML decoder refuses a group field it does not define (Prometheus's
rulefmt decodes with KnownFields, vmalert fails on its catch-all `XXX` map, Thanos hands the
group to Prometheus's rulefmt), so a field is rendered only for a kind that defines it, and only
into deploy/ruler/rules/: the per-cluster files stay readable by Prometheus 2.x's promtool.

Where each field is defined (looked up in each product's source):
- Prometheus: model/rulefmt/rulefmt.go, `RuleGroup` (query_offset since v2.53.0, labels since
  v3.0.0);
- Thanos: pkg/rules/manager.go, `configRuleAdapter` (partial_response_strategy, with Prometheus's
  `rulefmt.RuleGroup` inline: query_offset from v0.36.0, labels from v0.38.0, the releases built
  on a Prometheus main of June 2024 (after 2.53) and on 3.1);
- Mimir: pkg/ruler/rulespb/rules.proto, `RuleGroupDesc` (queryOffset — evaluationDelay is its
  deprecated older name, never rendered; sourceTenants, a federated group's tenants; group labels
  since Mimir 3.0, grafana/mimir#12397 — older Mimir accepts and drops them);
- VictoriaMetrics 1.79.5 (Debian 12's vmalert): app/vmalert/config/config.go, `Group` (labels;
  eval_offset came in v1.94.0 and eval_delay in v1.95.0, so neither is rendered).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

KINDS = ("prometheus", "thanos", "mimir", "victoriametrics")
PRODUCT = {
    "prometheus": "Prometheus",
    "thanos": "Thanos Ruler",
    "mimir": "the Mimir ruler",
    "victoriametrics": "vmalert 1.79",
}
# The group keys every kind reads, Prometheus 2.42's promtool included.
COMMON_KEYS = ("name", "interval", "limit", "rules")


@dataclass(frozen=True)
class GroupField:
    """One group field: its key in the rule file, the `ruler:` setting that fills it, the kinds
    that read it, what to say to a kind that does not, and the rendered value of a setting
    (None: not rendered)."""

    key: str
    setting: str
    kinds: tuple[str, ...]
    elsewhere: Mapping[str, str]
    rendered: Callable[[Any], Any]


def _offset(value: str) -> str | None:
    # imported here: meshobs.config imports this table for its checks
    from meshobs.config import duration_seconds

    return value if duration_seconds(value) > 0 else None


def _labels(value: Mapping[str, str]) -> dict[str, str] | None:
    return dict(sorted(value.items())) or None


FIELDS = (
    GroupField(
        "query_offset", "query_offset", ("prometheus", "thanos", "mimir"),
        {"victoriametrics": "vmalert 1.79 has no per-group query offset; set its -datasource.lookback flag "
                            "(VictoriaMetrics already hides samples newer than -search.latencyOffset, 30s)"},
        _offset,
    ),
    GroupField("partial_response_strategy", "partial_response_strategy", ("thanos",), {}, lambda v: v or None),
    GroupField("source_tenants", "source_tenants", ("mimir",), {}, lambda v: list(v) or None),
    GroupField("labels", "group_labels", KINDS, {}, _labels),
)
BY_KEY = {f.key: f for f in FIELDS}


def refusal(field: GroupField, kind: str) -> str:
    """Why `kind` cannot have `field`."""
    readers = " and ".join(PRODUCT[k] for k in field.kinds)
    return field.elsewhere.get(kind, f"only {readers} read{'s' if len(field.kinds) == 1 else ''} "
                                     f"the group field {field.key}")


def values(ruler: Any) -> dict[str, Any]:
    """The group fields `ruler` (the config's `ruler:` section) renders, in table order; a
    setting left at its default renders nothing."""
    rendered = {f.key: f.rendered(getattr(ruler, f.setting)) for f in FIELDS}
    return {key: value for key, value in rendered.items() if value is not None}


def unknown(group_keys: list[str], kind: str | None) -> list[str]:
    """What is wrong with a group's keys for `kind` (None: the kind is not known, so a field only
    has to be read by some kind, and all of a group's fields by one)."""
    extra = [key for key in group_keys if key not in COMMON_KEYS]
    problems = []
    for key in extra:
        field = BY_KEY.get(key)
        if field is None:
            problems.append(f"field {key!r} is not a rule group field of any ruler meshobs knows ({', '.join(KINDS)})")
        elif kind is not None and kind not in field.kinds:
            problems.append(f"field {key!r} is not read by {PRODUCT[kind]} (ruler.kind: {kind}): "
                            f"{refusal(field, kind)}")
    if kind is None and not problems and extra:
        common = set(KINDS).intersection(*(BY_KEY[key].kinds for key in extra))
        if not common:
            problems.append(f"fields {', '.join(map(repr, extra))}: no one ruler reads them all")
    return problems


def shadowed(group: dict) -> list[tuple[str, str]]:
    """(rule, label) for each group label a rule of the group sets itself: the rule's own value
    wins in every ruler (Prometheus's rules manager and vmalert's mergeLabels alike), so the group
    label would mean two things."""
    labels = group.get("labels") if isinstance(group.get("labels"), dict) else {}
    return [(str(rule.get("alert") or rule.get("record")), name)
            for rule in group.get("rules") or [] if isinstance(rule, dict)
            for name in sorted(set(labels) & set(rule.get("labels") or {}))]


def without_fields(document: dict) -> dict:
    """A rule document without the product-only group fields: what Prometheus 2's promtool reads."""
    groups = [{key: value for key, value in group.items() if key not in BY_KEY} if isinstance(group, dict) else group
              for group in document.get("groups") or []]
    return document | {"groups": groups}
