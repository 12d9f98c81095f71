"""Fluentd: `fluent.conf` per mesh (tail the proxy container, join CRI partial lines, parse with
the record's own parser definition, add Kubernetes metadata, route security records to their own
tag, ship to Elasticsearch and optionally forward) and the DaemonSet, ServiceAccount, RBAC and
NetworkPolicy running it.

The same config receives the meshobs exporter's events on a `forward` source that takes only
clients proving the shared key (`<security>`), from the exporter's namespace only: both arrive
under `meshobs.security.<kind>` and leave through one `<match meshobs.security.**>`. An
access-log line that fails to parse is never dropped: it leaves under `meshobs.parse_error.<mesh>`
with its raw text and source file tag. After a failed TLS handshake, the certificate SAN the
client presented is kept as `presented_peer_principal`, never in the identity field.
"""

from __future__ import annotations

from typing import Any

from meshobs import accesslog, yamlfmt, ztunnellog
from meshobs.config import Config
from meshobs.meshes import ambient
from meshobs.render.collectors.endpoints import (
    FLUENTD_NAME, FORWARD_KEY_ITEM, FORWARD_KEY_SECRET, FORWARD_PORT, PROXY_CONTAINER, forward_key_volume, labels,
)

CONTAINER_TAG = "kubernetes.var.log.containers.**"
# Istio ambient: ztunnel's container is istio-proxy too, but it writes its own connection log
# (meshobs.ztunnellog), so its files are tailed apart, under their own tag, and parsed into the
# same record before the shared steps (identity, metadata, security routing).
ZTUNNEL_TAG = "ztunnel.var.log.containers.**"
ZTUNNEL_PATH = (f"/var/log/containers/{ambient.ZTUNNEL_POD_PREFIX}*_{ambient.ROOT_NAMESPACE}_"
                f"{PROXY_CONTAINER['istio']}-*.log")
ACCESS_TAG_PREFIX = "meshobs.access"
PARSE_ERROR_TAG_PREFIX = "meshobs.parse_error"
FORWARD_KEY_DIR = "/etc/fluentd/forward"
# CRI log lines as containerd and CRI-O write them: time, stream, partial/full flag, message.
CRI_REGEXP = r"^(?<time>[^ ]+) (?<stream>stdout|stderr) (?<logtag>[FP]) (?<log>.*)$"
CRI_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%N%:z"
ENVOY_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%LZ"  # START_TIME is always UTC, milliseconds
LINKERD_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%NZ"  # linkerd2-proxy writes nanoseconds

Directive = tuple[str, str, list]  # (name, argument, body of (key, value) pairs and Directives)


def _lines(directive: Directive, indent: int = 0) -> list[str]:
    name, arg, body = directive
    pad = "  " * indent
    out = [f"{pad}<{name}{' ' + arg if arg else ''}>"]
    for item in body:
        if len(item) == 3:
            out += _lines(item, indent + 1)
        else:
            out.append(f"{pad}  {item[0]} {item[1]}")
    out.append(f"{pad}</{name}>")
    return out


def _buffer(name: str) -> Directive:
    return ("buffer", "", [
        ("@type", "file"), ("path", f"/var/log/fluentd-buffers/{name}"), ("flush_interval", "5s"),
        ("retry_max_interval", "30"), ("overflow_action", "drop_oldest_chunk"),
    ])


def _stores(cfg: Config, index: str) -> list[Directive]:
    log = cfg.logging
    stores: list[Directive] = [("store", "", [
        ("@type", "elasticsearch"), ("host", log.elasticsearch_host), ("port", str(log.elasticsearch_port)),
        ("scheme", "http"), ("logstash_format", "true"), ("logstash_prefix", index),
        ("include_tag_key", "true"), ("tag_key", "fluentd_tag"), _buffer(index),
    ])]
    if log.forward_host:
        stores.append(("store", "", [
            ("@type", "forward"), ("server", "", [("host", log.forward_host), ("port", str(log.forward_port))]),
            _buffer(f"{index}-forward"),
        ]))
    return stores


def _envoy_parse(encoding: str) -> Directive:
    time = [("time_key", "start_time"), ("keep_time_key", "true"), ("time_type", "string"),
            ("time_format", ENVOY_TIME_FORMAT), ("utc", "true")]
    if encoding == "json":
        return ("parse", "", [("@type", "json"), *time])
    return ("parse", "", [
        ("@type", "regexp"), ("expression", f"/{accesslog.text_regexp()}/"), *time,
        ("null_value_pattern", f"/^{accesslog.ABSENT}$/"), ("types", accesslog.fluentd_types()),
    ])


def _ruby_value(field: accesslog.Field) -> str:
    # Linkerd writes numbers as strings and "" for absent; durations are nanoseconds.
    source = f'record["{field.linkerd}"]'
    if field.name == "duration_ms":
        converted = "v.to_i / 1000000"
    elif field.kind == "int":
        converted = "v.to_i"
    else:
        converted = "v"
    return f"${{(v = {source}).to_s.empty? ? nil : {converted}}}"


def linkerd_mapping() -> Directive:
    """Renames the Linkerd proxy's JSON keys to the meshobs record's fields."""
    fields = [f for f in accesslog.FIELDS if f.linkerd]
    return ("filter", CONTAINER_TAG, [
        ("@type", "record_transformer"), ("enable_ruby", "true"), ("auto_typecast", "true"), ("renew_record", "true"),
        ("record", "", [(f.name, _ruby_value(f)) for f in fields]),
    ])


def _parse_filters(cfg: Config, mesh: str) -> list[Directive]:
    if mesh == "linkerd":
        parse: Directive = ("parse", "", [
            ("@type", "json"), ("time_key", "timestamp"), ("keep_time_key", "true"), ("time_type", "string"),
            ("time_format", LINKERD_TIME_FORMAT), ("utc", "true"),
        ])
    else:
        parse = _envoy_parse(cfg.logging.access_log_encoding)
    # A line that does not parse goes to the @ERROR label (see _parse_errors), not away.
    parser: Directive = ("filter", CONTAINER_TAG, [
        ("@type", "parser"), ("key_name", "log"), ("reserve_data", "false"),
        ("emit_invalid_record_to_error", "true"), parse,
    ])
    return [parser, linkerd_mapping()] if mesh == "linkerd" else [parser]


def _join_partial_lines(tag: str = CONTAINER_TAG) -> Directive:
    """containerd and CRI-O split a line longer than 16 KiB into partial (P) pieces ended by a
    full (F) one: a denied request with a long header would otherwise be no record at all. A
    piece left alone longer than the flush interval goes to @ERROR, and so to the parse errors."""
    return ("filter", tag, [
        ("@type", "concat"), ("key", "log"), ("use_partial_cri_logtag", "true"),
        ("partial_cri_logtag_key", "logtag"), ("partial_cri_stream_key", "stream"), ("separator", '""'),
        ("flush_interval", "10"),
    ])


def _ztunnel_filters() -> list[Directive]:
    """ztunnel's files: lines joined, JSON lines (logAsJson) rewritten into the plain format,
    only its connection lines kept (the rest is its operational log, dropped as Envoy's is),
    parsed, and mapped onto the meshobs record."""
    return [
        _join_partial_lines(ZTUNNEL_TAG),
        ("filter", ZTUNNEL_TAG, [("@type", "record_transformer"), ("enable_ruby", "true"),
                                 ("record", "", [("log", ztunnellog.fluentd_json_to_plain())])]),
        ("filter", ZTUNNEL_TAG, [("@type", "grep"), ("regexp", "", [("key", "log"), ("pattern", f"/{ztunnellog.LINE_HINT}/")])]),
        ("filter", ZTUNNEL_TAG, [
            ("@type", "parser"), ("key_name", "log"), ("reserve_data", "false"), ("emit_invalid_record_to_error", "true"),
            ("parse", "", [("@type", "regexp"), ("expression", f"/{ztunnellog.line_regexp()}/"), ("time_key", "time"),
                           ("keep_time_key", "true"), ("time_type", "string"), ("time_format", ztunnellog.TIME_FORMAT),
                           ("utc", "true")]),
        ]),
        ("filter", ZTUNNEL_TAG, [
            ("@type", "record_transformer"), ("enable_ruby", "true"), ("renew_record", "true"),
            ("record", "", list(ztunnellog.fluentd_record().items())),
        ]),
    ]


# Ruby: the record's TLS handshake did not fail (its peer_principal is a verified identity).
_NO_TLS_FAILURE = 'record["transport_failure_reason"].to_s.empty?'


def _presented_identity(tags: str) -> Directive:
    """After a failed handshake Envoy still logs the SAN of the certificate it rejected: keep it,
    but never as the peer's identity."""
    return ("filter", tags, [
        ("@type", "record_transformer"), ("enable_ruby", "true"),
        ("record", "", [
            ("presented_peer_principal", f'${{{_NO_TLS_FAILURE} ? nil : record["peer_principal"]}}'),
            ("peer_principal", f'${{{_NO_TLS_FAILURE} ? record["peer_principal"] : nil}}'),
        ]),
    ])


def access_log_hint(cfg: Config, mesh: str) -> str:
    """A regexp that only this mesh's access-log lines match (not the proxy's own log lines)."""
    first = accesslog.FIELDS[0]
    if mesh == "linkerd":
        return f'"{first.linkerd}":'
    return f'"{first.name}":' if cfg.logging.access_log_encoding == "json" else f'^{first.name}="'


def _parse_errors(cfg: Config, mesh: str) -> Directive:
    """Lines the parser refused (and partial lines never completed) that look like access-log
    records are kept, raw, under meshobs.parse_error.<mesh>; the proxy's own log lines, which
    share the container's output, are dropped here as before."""
    hints = [(CONTAINER_TAG, access_log_hint(cfg, mesh))]
    if mesh == "istio":
        hints.append((ZTUNNEL_TAG, ztunnellog.LINE_HINT))
    return ("label", "@ERROR", [
        ("filter", _tags(mesh), [("@type", "record_transformer"), ("record", "", [("source_tag", "${tag}")])]),
        *(("match", tag, [
            ("@type", "rewrite_tag_filter"),
            ("rule", "", [("key", "log"), ("pattern", f"/{hint}/"), ("tag", f"{PARSE_ERROR_TAG_PREFIX}.{mesh}")]),
        ]) for tag, hint in hints),
        ("match", f"{PARSE_ERROR_TAG_PREFIX}.**", [("@type", "copy"), *_stores(cfg, "meshobs-parse-errors")]),
    ])


def _tags(mesh: str) -> str:
    """The tags of parsed proxy records: Istio's include ztunnel's."""
    return f"{CONTAINER_TAG} {ZTUNNEL_TAG}" if mesh == "istio" else CONTAINER_TAG


def _forward_source() -> Directive:
    return ("source", "", [
        ("@type", "forward"), ("@id", "meshobs_exporter_events"), ("bind", "0.0.0.0"), ("port", str(FORWARD_PORT)),
        ("security", "", [
            ("self_hostname", "\"#{ENV['K8S_NODE_NAME']}\""),
            ("shared_key", f"\"#{{File.read('{FORWARD_KEY_DIR}/{FORWARD_KEY_ITEM}').strip}}\""),
        ]),
    ])


def _routing(mesh: str) -> Directive:
    rules: list[Directive] = [
        ("rule", "", [("key", name), ("pattern", f"/{pattern}/"), ("tag", f"{accesslog.SECURITY_TAG_PREFIX}.{kind}")])
        for kind, name, pattern in accesslog.SECURITY_RULES
    ]
    # Every record has a start time; anything without one was not an access-log record.
    rules.append(("rule", "", [("key", "start_time"), ("pattern", "/.+/"), ("tag", f"{ACCESS_TAG_PREFIX}.{mesh}")]))
    return ("match", _tags(mesh), [("@type", "rewrite_tag_filter"), *rules])


def _tail(name: str, path: str, tag: str, exclude: str | None = None) -> Directive:
    return ("source", "", [
        ("@type", "tail"), ("@id", f"{name}_proxy_access_log"), ("path", path),
        *([("exclude_path", f'["{exclude}"]')] if exclude else []),
        ("pos_file", f"/var/log/fluentd-meshobs-{name}.pos"), ("tag", tag), ("read_from_head", "false"),
        ("parse", "", [("@type", "regexp"), ("expression", f"/{CRI_REGEXP}/"), ("time_key", "time"),
                       ("time_type", "string"), ("time_format", CRI_TIME_FORMAT)]),
    ])


DENIED_TAG = f"{accesslog.SECURITY_TAG_PREFIX}.access_denied"


def attribution() -> Directive:
    """Denials carry who was denied and by which policy (accesslog's `source_principal` and
    `matched_policy`, the same pattern), so a log backend can group them."""
    policy = " || ".join(f'record["{name}"].to_s[/{accesslog.MATCHED_POLICY}/, 1]'
                         for name in ("response_code_details", "connection_termination_details"))
    principal = f'{_NO_TLS_FAILURE} ? record["peer_principal"] : nil'
    return ("filter", DENIED_TAG, [
        ("@type", "record_transformer"), ("enable_ruby", "true"),
        ("record", "", [("matched_policy", f"${{{policy}}}"), ("source_principal", f"${{{principal}}}")]),
    ])


def fluent_conf(cfg: Config, mesh: str) -> str:
    container = PROXY_CONTAINER[mesh]
    istio = mesh == "istio"
    directives: list[Directive] = [
        _tail(mesh, f"/var/log/containers/*_{container}-*.log", "kubernetes.*", ZTUNNEL_PATH if istio else None),
        *([_tail("ztunnel", ZTUNNEL_PATH, "ztunnel.*")] if istio else []),
        _forward_source(),
        _join_partial_lines(),
        *_parse_filters(cfg, mesh),
        *(_ztunnel_filters() if istio else []),
        _presented_identity(_tags(mesh)),
        ("filter", _tags(mesh), [("@type", "kubernetes_metadata"), ("@id", "kubernetes_metadata")]),
        _routing(mesh),
        attribution(),
        ("match", f"{accesslog.SECURITY_TAG_PREFIX}.**", [("@type", "copy"), *_stores(cfg, "meshobs-security")]),
        ("match", f"{ACCESS_TAG_PREFIX}.**", [("@type", "copy"), *_stores(cfg, f"meshobs-access-{mesh}")]),
        _parse_errors(cfg, mesh),
    ]
    header = [
        f"# Fluentd for {mesh} proxy access logs and meshobs exporter events; rendered by meshobs.",
        "# Records follow the meshobs access-log record (meshobs/accesslog.py); security records are",
        f"# tagged {accesslog.SECURITY_TAG_PREFIX}.<kind>, the rest {ACCESS_TAG_PREFIX}.{mesh}; lines that do not",
        f"# parse {PARSE_ERROR_TAG_PREFIX}.{mesh}. The forward input needs the shared key of the Secret {FORWARD_KEY_SECRET}.",
    ]
    body = ["\n".join(_lines(d)) for d in directives]
    return "\n".join(header) + "\n\n" + "\n\n".join(body) + "\n"


def manifests(cfg: Config, mesh: str) -> list[dict[str, Any]]:
    ns = cfg.logging.namespace
    meta = {"name": FLUENTD_NAME, "namespace": ns, "labels": labels(FLUENTD_NAME)}
    selector = {"app.kubernetes.io/name": FLUENTD_NAME}
    host_paths = [("varlog", "/var/log")]
    container = {
        "name": FLUENTD_NAME,
        "image": cfg.logging.fluentd_image,
        "env": [
            {"name": "FLUENTD_CONF", "value": "fluent.conf"},
            {"name": "K8S_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        ],
        "ports": [{"name": "forward", "containerPort": FORWARD_PORT, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "100m", "memory": "200Mi"}, "limits": {"memory": "500Mi"}},
        "volumeMounts": [
            {"name": "config", "mountPath": "/fluentd/etc/fluent.conf", "subPath": "fluent.conf", "readOnly": True},
            {"name": "forward-key", "mountPath": FORWARD_KEY_DIR, "readOnly": True},
            *({"name": name, "mountPath": path} for name, path in host_paths),
        ],
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": f"meshobs-{FLUENTD_NAME}", "labels": labels(FLUENTD_NAME)},
            # kubernetes_metadata reads pod and namespace metadata; nothing else.
            "rules": [{"apiGroups": [""], "resources": ["pods", "namespaces"], "verbs": ["get", "list", "watch"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": f"meshobs-{FLUENTD_NAME}", "labels": labels(FLUENTD_NAME)},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"meshobs-{FLUENTD_NAME}"},
            "subjects": [{"kind": "ServiceAccount", "name": FLUENTD_NAME, "namespace": ns}],
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {**meta, "name": f"{FLUENTD_NAME}-config"},
         "data": {"fluent.conf": fluent_conf(cfg, mesh)}},
        {
            "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta,
            "spec": {
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": labels(FLUENTD_NAME)},
                    "spec": {
                        "serviceAccountName": FLUENTD_NAME,
                        "tolerations": [{"operator": "Exists", "effect": "NoSchedule"}],
                        "containers": [container],
                        "volumes": [
                            {"name": "config", "configMap": {"name": f"{FLUENTD_NAME}-config"}},
                            forward_key_volume("forward-key"),
                            *({"name": name, "hostPath": {"path": path}} for name, path in host_paths),
                        ],
                    },
                },
            },
        },
        {
            # The exporter sends its events here (`meshobs exporter --fluentd fluentd.<ns>:24224`).
            "apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"selector": selector, "ports": [{"name": "forward", "port": FORWARD_PORT, "targetPort": "forward", "protocol": "TCP"}]},
        },
        {
            # Only the exporter's namespace reaches the forward input (which also wants the key).
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta,
            "spec": {
                "podSelector": {"matchLabels": selector},
                "policyTypes": ["Ingress"],
                "ingress": [{
                    "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": cfg.deploy.namespace}}}],
                    "ports": [{"protocol": "TCP", "port": FORWARD_PORT}],
                }],
            },
        },
    ]


def render(cfg: Config, mesh: str) -> dict[str, str]:
    return {
        "fluentd/fluent.conf": fluent_conf(cfg, mesh),
        "fluentd/fluentd.yaml": yamlfmt.dump_all(manifests(cfg, mesh)),
    }
