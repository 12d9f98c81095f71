"""OpenTelemetry Collector and Jaeger: pipelines reference defined components, OTLP end to end."""

from __future__ import annotations

import pytest
import yaml

from meshobs import config
from meshobs.meshes import DIALECTS
from meshobs.render import collectors
from tests.collectors.conftest import MESHES

SECTIONS = ("receivers", "processors", "exporters")


def undefined_components(collector: dict) -> list[str]:
    """`pipeline.section: name` for every pipeline entry that names no defined component."""
    problems = [f"extensions: {name}" for name in collector["service"].get("extensions", [])
                if name not in collector.get("extensions", {})]
    for pipeline, body in collector["service"]["pipelines"].items():
        for section in SECTIONS:
            problems += [f"{pipeline}.{section}: {name}" for name in body.get(section, [])
                         if name not in collector.get(section, {})]
    return problems


def component_types(collector: dict) -> set[str]:
    return {name.split("/")[0] for section in (*SECTIONS, "extensions") for name in collector.get(section, {})}


@pytest.mark.parametrize("mesh", MESHES)
def test_collector_pipelines_use_only_defined_components(rendered, mesh):
    """Every receiver, processor, exporter and extension a pipeline names is defined, and every defined one is used."""
    collector = yaml.safe_load(rendered[(mesh, "json")]["otel-collector/config.yaml"])
    assert undefined_components(collector) == []
    traces = collector["service"]["pipelines"]["traces"]
    assert traces == {"receivers": ["otlp"], "processors": ["memory_limiter", "tail_sampling", "batch"], "exporters": ["otlp/jaeger"]}
    assert collector["receivers"]["otlp"]["protocols"] == {"grpc": {"endpoint": "0.0.0.0:4317"}, "http": {"endpoint": "0.0.0.0:4318"}}
    assert collector["exporters"]["otlp/jaeger"]["endpoint"] == "jaeger.observability.svc.cluster.local:4317"


def test_tail_sampling_keeps_errors_slow_and_denied_traces(rendered):
    """Tail sampling keeps error and slow traces (threshold from the config), 403s, and a baseline share."""
    collector = yaml.safe_load(rendered[("istio", "json")]["otel-collector/config.yaml"])
    policies = {p["name"]: p for p in collector["processors"]["tail_sampling"]["policies"]}
    assert policies["errors"]["status_code"] == {"status_codes": ["ERROR"]}
    assert policies["slow"]["latency"] == {"threshold_ms": 1000}
    assert policies["denied"]["string_attribute"] == {"key": "http.status_code", "values": ["403"]}
    assert policies["baseline"]["probabilistic"] == {"sampling_percentage": 10.0}


def test_zipkin_receiver_only_when_asked():
    """`tracing.accept_zipkin` adds the Zipkin receiver to the pipeline and its port to the Service."""
    cfg = config.from_dict({"tracing": {"accept_zipkin": True}})
    files = collectors.render(cfg, DIALECTS["consul"])
    collector = yaml.safe_load(files["collectors/consul/otel-collector/config.yaml"])
    assert collector["service"]["pipelines"]["traces"]["receivers"] == ["otlp", "zipkin"]
    assert undefined_components(collector) == []
    service = list(yaml.safe_load_all(files["collectors/consul/otel-collector/otel-collector.yaml"]))[-1]
    assert [p["port"] for p in service["spec"]["ports"]] == [4317, 4318, 9411]


@pytest.mark.parametrize("mesh", MESHES)
def test_nothing_speaks_the_retired_jaeger_protocols(rendered, mesh):
    """No jaeger receiver/exporter in either config; Jaeger's Service exposes OTLP and the UI only."""
    files = rendered[(mesh, "json")]
    collector = yaml.safe_load(files["otel-collector/config.yaml"])
    assert "jaeger" not in component_types(collector)
    docs = list(yaml.safe_load_all(files["jaeger/jaeger.yaml"]))
    jaeger = yaml.safe_load(next(d for d in docs if d["kind"] == "ConfigMap")["data"]["config.yaml"])
    assert undefined_components(jaeger) == []
    assert component_types(jaeger) == {"otlp", "batch", "jaeger_storage_exporter", "jaeger_storage", "jaeger_query"}
    service = next(d for d in docs if d["kind"] == "Service")
    assert [(p["name"], p["port"]) for p in service["spec"]["ports"]] == [("otlp-grpc", 4317), ("otlp-http", 4318), ("query", 16686)]
    for text in files.values():
        for retired in ("14250", "14268", "6831", "6832", "thrift"):
            assert retired not in text
