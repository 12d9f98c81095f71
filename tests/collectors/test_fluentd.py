"""Rendered Fluentd configs, checked structurally (no Fluentd runs here)."""

from __future__ import annotations

import pytest

from meshobs import accesslog
from meshobs.render.collectors import fluentd
from meshobs.render.collectors.endpoints import PROXY_CONTAINER
from tests.collectors import fluent_conf
from tests.collectors.conftest import MESHES, render

# The exporter's event kinds (exporter issue contract), sent to the forward source.
EXPORTER_TAGS = [f"meshobs.security.{kind}" for kind in
                 ("authz_burst_started", "authz_burst_ended", "tls_failure_new_reason", "cert_expiring")]
CASES = [(mesh, enc) for mesh in MESHES for enc in ("json", "text")]


def sample_file_tag(mesh: str) -> str:
    container = PROXY_CONTAINER[mesh]
    return f"var.log.containers.web-7d9f_shop_{container}-0123abcd.log"


def directives(rendered, mesh, enc):
    return fluent_conf.parse(rendered[(mesh, enc)]["fluentd/fluent.conf"])


@pytest.mark.parametrize("mesh,enc", CASES)
def test_directives_are_balanced_and_every_type_is_known(rendered, mesh, enc):
    """Every directive closes, sets no parameter twice, and uses a known plugin @type."""
    assert fluent_conf.unknown_types(directives(rendered, mesh, enc)) == []


@pytest.mark.parametrize("mesh,enc", CASES)
def test_every_match_is_reached_and_tags_route_where_agreed(rendered, mesh, enc):
    """Proxy lines reach the rewrite, security and exporter tags reach one match, ordinary records another."""
    conf = directives(rendered, mesh, enc)
    file_tag = "kubernetes." + sample_file_tag(mesh)
    tags = fluent_conf.emitted_tags(conf, sample_file_tag(mesh), EXPORTER_TAGS)
    assert fluent_conf.unreachable_matches(conf, tags) == []
    assert fluent_conf.first_match(conf, file_tag).params["@type"] == "rewrite_tag_filter"
    security = fluent_conf.first_match(conf, "meshobs.security.access_denied")
    assert security.arg == "meshobs.security.**"
    for tag in EXPORTER_TAGS + ["meshobs.security.tls_failure"]:
        assert fluent_conf.first_match(conf, tag) is security
    access = fluent_conf.first_match(conf, f"meshobs.access.{mesh}")
    assert access.arg == "meshobs.access.**" and access is not security
    # A rewritten tag never comes back to the rewrite (no loop).
    rewrite = fluent_conf.first_match(conf, file_tag)
    assert all(fluent_conf.first_match(conf, rule.params["tag"]) is not rewrite for rule in rewrite.children)


@pytest.mark.parametrize("mesh,enc", CASES)
def test_outputs_go_to_elasticsearch_with_one_index_per_route(rendered, mesh, enc):
    """Security records go to meshobs-security, the rest to meshobs-access-<mesh>, both on the configured host."""
    conf = directives(rendered, mesh, enc)
    prefixes = {}
    for match in (d for d in conf if d.name == "match" and d.params["@type"] == "copy"):
        (store,) = match.children
        assert (store.params["@type"], store.params["host"], store.params["port"]) == ("elasticsearch", "elasticsearch.logging.svc", "9200")
        prefixes[match.arg] = store.params["logstash_prefix"]
    assert prefixes == {"meshobs.security.**": "meshobs-security", "meshobs.access.**": f"meshobs-access-{mesh}"}


def test_forward_output_is_added_when_configured():
    """`logging.forward_host` adds a forward store beside Elasticsearch on both routes."""
    conf = fluent_conf.parse(render("consul", forward_host="aggregator.logging.svc", forward_port=24225)["fluentd/fluent.conf"])
    for match in (d for d in conf if d.name == "match" and d.params["@type"] == "copy"):
        forward = [s for s in match.children if s.params["@type"] == "forward"]
        assert len(forward) == 1
        assert forward[0].child("server").params == {"host": "aggregator.logging.svc", "port": "24225"}


def test_rewrite_rules_are_the_records_security_rules(rendered):
    """The Fluentd rules are SECURITY_RULES in order, then a catch-all on start_time."""
    conf = directives(rendered, "istio", "json")
    rewrite = fluent_conf.first_match(conf, "kubernetes." + sample_file_tag("istio"))
    rules = [(r.params["key"], r.params["pattern"], r.params["tag"]) for r in rewrite.children]
    assert rules == [
        ("transport_failure_reason", "/.+/", "meshobs.security.tls_failure"),
        ("response_code", "/^403$/", "meshobs.security.access_denied"),
        ("response_code_details", "/rbac_access_denied/", "meshobs.security.access_denied"),
        ("connection_termination_details", "/rbac_access_denied/", "meshobs.security.access_denied"),
        ("response_flags", "/^DENY$/", "meshobs.security.access_denied"),
        ("start_time", "/.+/", "meshobs.access.istio"),
    ]


@pytest.mark.parametrize("mesh", ["istio", "consul"])
def test_envoy_parser_is_the_records_own_definition(rendered, mesh):
    """The text parser's expression and types are accesslog's; the JSON parser keys time on start_time."""
    for enc in ("json", "text"):
        parser = [d for d in directives(rendered, mesh, enc) if d.name == "filter" and d.params["@type"] == "parser"][0]
        parse = parser.child("parse")
        assert (parse.params["time_key"], parse.params["time_format"]) == ("start_time", fluentd.ENVOY_TIME_FORMAT)
        if enc == "text":
            assert parse.params["expression"] == f"/{accesslog.text_regexp()}/"
            assert parse.params["types"] == "response_code:integer,duration_ms:integer,connection_id:integer,bytes_received:integer,bytes_sent:integer"
            assert parse.params["null_value_pattern"] == "/^-$/"
        else:
            assert parse.params["@type"] == "json"


def test_linkerd_keys_are_mapped_onto_the_record(rendered):
    """The Linkerd config renames every key linkerd2-proxy writes to the record's field names."""
    conf = directives(rendered, "linkerd", "json")
    transformer = [d for d in conf if d.name == "filter" and d.params["@type"] == "record_transformer"][0]
    record = transformer.child("record").params
    assert record["path"] == '${(v = record["uri"]).to_s.empty? ? nil : v}'
    assert record["duration_ms"] == '${(v = record["total_ns"]).to_s.empty? ? nil : v.to_i / 1000000}'
    assert record["peer_principal"] == '${(v = record["client.id"]).to_s.empty? ? nil : v}'
    assert set(record) == {f.name for f in accesslog.FIELDS if f.linkerd}
    assert transformer.params["renew_record"] == "true"


def test_tail_source_reads_the_proxy_container_of_each_mesh(rendered):
    """Each mesh tails its own proxy container's CRI log files."""
    paths = {mesh: directives(rendered, mesh, "json")[0].params["path"] for mesh in MESHES}
    assert paths == {
        "istio": "/var/log/containers/*_istio-proxy-*.log",
        "linkerd": "/var/log/containers/*_linkerd-proxy-*.log",
        "consul": "/var/log/containers/*_consul-dataplane-*.log",
    }


def test_checker_rejects_unbalanced_and_unknown_directives():
    """The structural checker names the line of a mismatched close and of an unknown @type."""
    with pytest.raises(fluent_conf.FluentConfError, match=r"^line 3: </match> closes <source>$"):
        fluent_conf.parse("<source>\n  @type forward\n</match>\n")
    with pytest.raises(fluent_conf.FluentConfError, match=r"^line 1: <source> is never closed$"):
        fluent_conf.parse("<source>\n  @type forward\n")
    assert fluent_conf.unknown_types(fluent_conf.parse("<match a.**>\n  @type s3\n</match>\n")) == [
        "line 1: <match> has unknown @type s3"
    ]
    conf = fluent_conf.parse("<match **>\n  @type null\n</match>\n<match a.**>\n  @type null\n</match>\n")
    assert fluent_conf.unreachable_matches(conf, ["a.b"]) == ["line 4: <match a.**>"]


@pytest.mark.parametrize("mesh,enc", CASES)
def test_partial_lines_are_joined_before_parsing_and_failures_go_to_a_visible_tag(rendered, mesh, enc):
    """CRI partial lines are concatenated first; the parser sends what it cannot read to @ERROR, where access-log-looking lines are tagged meshobs.parse_error.<mesh> and stored with their source tag."""
    conf = directives(rendered, mesh, enc)
    filters = [d for d in conf if d.name == "filter"]
    concat, parser = filters[0], next(d for d in filters if d.params["@type"] == "parser")
    assert concat.params == {"@type": "concat", "key": "log", "use_partial_cri_logtag": "true", "partial_cri_logtag_key": "logtag",
                             "partial_cri_stream_key": "stream", "separator": '""', "flush_interval": "10"}
    assert parser.params["emit_invalid_record_to_error"] == "true"
    (errors,) = [d for d in conf if d.name == "label"]
    assert errors.arg == "@ERROR"
    source_tag, rewrite, *ztunnel, store = errors.children
    # Istio's ztunnel lines that fail are kept the same way, by their own hint
    assert [(z.arg, z.child("rule").params["pattern"]) for z in ztunnel] == (
        [(fluentd.ZTUNNEL_TAG, r"/\taccess\tconnection (?:complete|failed)\t/")] if mesh == "istio" else [])
    assert source_tag.child("record").params == {"source_tag": "${tag}"}
    (rule,) = rewrite.children
    hint = {"linkerd": '"timestamp":'}.get(mesh, '"start_time":' if enc == "json" else '^start_time="')
    assert (rule.params["key"], rule.params["pattern"], rule.params["tag"]) == ("log", f"/{hint}/", f"meshobs.parse_error.{mesh}")
    assert fluent_conf.first_match(errors.children, f"meshobs.parse_error.{mesh}") is store
    assert store.child("store").params["logstash_prefix"] == "meshobs-parse-errors"


@pytest.mark.parametrize("mesh,enc", CASES)
def test_the_forward_input_wants_the_shared_key(rendered, mesh, enc):
    """The exporter's forward source has a <security> section whose shared key is read from the mounted Secret."""
    (forward,) = [d for d in directives(rendered, mesh, enc) if d.name == "source" and d.params["@type"] == "forward"]
    assert forward.child("security").params == {
        "self_hostname": '"#{ENV[\'K8S_NODE_NAME\']}"',
        "shared_key": '"#{File.read(\'/etc/fluentd/forward/shared-key\').strip}"'}


def test_a_failed_handshakes_presented_san_never_lands_in_the_identity_field(rendered):
    """After the parser, peer_principal is emptied when transport_failure_reason is set, and the SAN kept as presented_peer_principal."""
    conf = directives(rendered, "istio", "json")
    (moved,) = [d for d in conf if d.name == "filter" and any(
        c.name == "record" and "presented_peer_principal" in c.params for c in d.children)]
    assert moved.child("record").params == {
        "presented_peer_principal": '${record["transport_failure_reason"].to_s.empty? ? nil : record["peer_principal"]}',
        "peer_principal": '${record["transport_failure_reason"].to_s.empty? ? record["peer_principal"] : nil}'}
    filters = [d for d in conf if d.name == "filter"]
    # right after the Envoy parser, but for the steps that make ztunnel's lines into records
    between = filters[[d.params["@type"] for d in filters].index("parser") + 1:filters.index(moved)]
    assert [d.arg for d in between] == [fluentd.ZTUNNEL_TAG] * len(fluentd._ztunnel_filters())
    assert moved.arg == f"kubernetes.var.log.containers.** {fluentd.ZTUNNEL_TAG}"
