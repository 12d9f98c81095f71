"""Static target specs, file_sd files and shards."""

from __future__ import annotations

import json

import pytest

from meshobs.errors import ExporterError, TargetsFileError
from meshobs.exporter.discovery import TargetsFile, in_shard, parse_shard, read_targets_file
from meshobs.exporter.targets import Target, parse_target_spec


def test_target_spec_forms():
    """MESH/NAMESPACE/WORKLOAD=URL sets every label; a bare URL gets the mesh from port or path and the mesh's default path."""
    assert parse_target_spec("consul/shop/cart=http://10.0.0.7:19000/stats/prometheus") == Target(
        "http://10.0.0.7:19000/stats/prometheus", "consul", "shop", "cart")
    assert parse_target_spec("http://10.0.0.8:15090") == Target(
        "http://10.0.0.8:15090/stats/prometheus", "istio", "default", "10.0.0.8:15090")
    assert parse_target_spec("linkerd/web=http://10.0.0.9:4191") == Target(
        "http://10.0.0.9:4191/metrics", "linkerd", "web", "10.0.0.9:4191")


@pytest.mark.parametrize("spec, message", [
    ("consul=http://h:19000/quitquitquit", "target 'http://h:19000/quitquitquit': path /quitquitquit is not one of the read-only paths /certs, /metrics, /stats/prometheus"),
    ("kuma=http://h:1", "target 'http://h:1': unknown mesh 'kuma' (one of consul, istio, linkerd)"),
    ("http://h/stats/prometheus", "target 'http://h/stats/prometheus': expected http(s)://HOST:PORT[/PATH]"),
    ("consul=http://h:1/stats/prometheus?filter=x", "target 'http://h:1/stats/prometheus?filter=x': query strings are not allowed"),
    ("a/b/c/d=http://h:1", "--target 'a/b/c/d=http://h:1': expected [MESH[/NAMESPACE[/WORKLOAD]]=]URL"),
])
def test_bad_target_specs_are_refused(spec, message):
    """Mutating paths, unknown meshes, missing ports, query strings and bad label parts are errors."""
    with pytest.raises(ExporterError) as error:
        parse_target_spec(spec)
    assert str(error.value) == message


def test_file_sd_json_and_yaml(tmp_path):
    """A file_sd file in JSON or YAML gives targets with path and scheme from the __ labels."""
    entries = [{"targets": ["10.0.0.1:15090", "10.0.0.2:15090"], "labels": {"mesh": "istio", "namespace": "shop", "workload": "cart"}},
               {"targets": ["10.0.0.3:8443"], "labels": {"mesh": "consul", "namespace": "shop", "workload": "api",
                                                          "__metrics_path__": "/metrics", "__scheme__": "https"}}]
    (tmp_path / "t.json").write_text(json.dumps(entries))
    (tmp_path / "t.yaml").write_text("- targets: [10.0.0.3:8443]\n  labels: {mesh: consul, namespace: shop, workload: api, __metrics_path__: /metrics, __scheme__: https}\n")
    assert read_targets_file(tmp_path / "t.json") == {
        Target("http://10.0.0.1:15090/stats/prometheus", "istio", "shop", "cart"),
        Target("http://10.0.0.2:15090/stats/prometheus", "istio", "shop", "cart"),
        Target("https://10.0.0.3:8443/metrics", "consul", "shop", "api")}
    assert read_targets_file(tmp_path / "t.yaml") == {Target("https://10.0.0.3:8443/metrics", "consul", "shop", "api")}


@pytest.mark.parametrize("content, message", [
    ('{"targets": []}', "expected a list of {targets, labels} entries"),
    ('[{"targets": "h:1"}]', "entry 0: expected a mapping with a 'targets' list"),
    ('[{"targets": ["h:1"], "labels": {"mesh": "consul", "workload": "w"}}]', "entry 0: label 'namespace' is missing"),
    ('[{"targets": ["h:1"], "labels": {"mesh": "consul", "namespace": "n", "workload": "w", "__metrics_path__": "/logging"}}]',
     "entry 0: target 'http://h:1/logging': path /logging is not one of the read-only paths /certs, /metrics, /stats/prometheus"),
])
def test_malformed_targets_files_name_file_and_entry(tmp_path, content, message):
    """Errors name the file, the entry and the reason."""
    path = tmp_path / "t.json"
    path.write_text(content)
    with pytest.raises(TargetsFileError) as error:
        read_targets_file(path)
    assert str(error.value) == f"{path}: {message}"


def test_a_broken_rewrite_keeps_the_last_good_targets(tmp_path):
    """A targets file rewritten with an error keeps the previous targets; a good rewrite replaces them."""
    path = tmp_path / "t.json"
    path.write_text('[{"targets": ["h:1"], "labels": {"mesh": "consul", "namespace": "n", "workload": "w"}}]')
    watched = TargetsFile(path)
    first = watched.refresh()
    path.write_text("[{")
    assert watched.refresh() == first
    path.write_text('[{"targets": ["h:2", "h:3"], "labels": {"mesh": "consul", "namespace": "n", "workload": "w"}}]')
    assert len(watched.refresh()) == 2


def test_shards_split_the_fleet_without_overlap():
    """Every target lands in exactly one of N shards, shards are of similar size, and a workload is never split."""
    fleet = {Target(f"http://10.0.{i // 250}.{i % 250}:15090/stats/prometheus", "istio", "ns", f"w{i}") for i in range(1000)}
    shards = [in_shard(fleet, (index, 4)) for index in range(4)]
    assert set().union(*shards) == fleet and sum(map(len, shards)) == 1000
    assert all(200 < len(shard) < 300 for shard in shards)
    pods = {Target(f"http://10.1.0.{i}:15090/stats/prometheus", "istio", "ns", "big") for i in range(50)}
    assert sorted(len(in_shard(pods, (index, 4))) for index in range(4)) == [0, 0, 0, 50]
    assert parse_shard("3/4") == (3, 4)
    for bad in ("4/4", "x/2", "1", "-1/2"):
        with pytest.raises(ExporterError) as error:
            parse_shard(bad)
        assert str(error.value) == f"--shard {bad!r}: expected INDEX/COUNT with 0 <= INDEX < COUNT"
