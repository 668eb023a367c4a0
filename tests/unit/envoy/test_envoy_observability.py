"""Envoy's tracing and stats listener (services/mesh/envoy_observability.py): off unless
configured; when on, the config validates and says what the README promises."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from services.common.identity import TENANT_CLAIM
from services.mesh.envoy_config import JWT_FILTER, JWT_PAYLOAD_KEY, render, write_config
from tests.support import make_settings
from tests.unit.envoy.test_envoy_config import validate


def _hcm(listener: dict) -> dict:  # type: ignore[type-arg]
    [chain] = listener["filter_chains"]
    return dict(chain["filters"][-1]["typed_config"])


def test_off_by_default(tmp_path: Path) -> None:
    config = render(make_settings(tmp_path / "home"))
    [listener] = config["static_resources"]["listeners"]
    assert "tracing" not in _hcm(listener)
    assert "layered_runtime" not in config
    names = {c["name"] for c in config["static_resources"]["clusters"]}
    assert not names & {"otlp_collector", "envoy_admin"}


def test_tracing_and_stats_listener_validate(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path / "home",
        otlp_endpoint="collector.example:4317",
        otlp_flush_seconds=0.5,
        trace_sample_percent=10,
        metrics_ports={"envoy": 19460},
    )
    path = write_config(settings)
    validate(path, cwd=tmp_path)
    config = yaml.safe_load(path.read_text())
    ingress, stats = config["static_resources"]["listeners"]
    tracing = _hcm(ingress)["tracing"]
    assert tracing["random_sampling"] == {"value": 10.0}
    [tag] = tracing["custom_tags"]
    assert tag["tag"] == "tenant.id"
    assert tag["metadata"]["metadata_key"] == {
        "key": JWT_FILTER,
        "path": [{"key": JWT_PAYLOAD_KEY}, {"key": TENANT_CLAIM}],
    }
    assert (
        tracing["provider"]["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"] == "otlp_collector"
    )
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    collector = clusters["otlp_collector"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert collector["endpoint"]["address"]["socket_address"] == {
        "address": "collector.example",
        "port_value": 4317,
    }
    admin = clusters["envoy_admin"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert admin["endpoint"]["address"]["pipe"]["path"] == str(settings.admin_socket_path)
    assert stats["address"]["socket_address"]["port_value"] == 19460
    [route] = _hcm(stats)["route_config"]["virtual_hosts"][0]["routes"]
    assert route["match"]["path"] == "/metrics"
    assert route["route"] == {"cluster": "envoy_admin", "prefix_rewrite": "/stats/prometheus"}
    layer = config["layered_runtime"]["layers"][0]["static_layer"]
    assert layer["tracing.opentelemetry.flush_interval_ms"] == 500


def test_a_bad_collector_endpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="host:port"):
        render(make_settings(tmp_path / "home", otlp_endpoint="collector-without-port"))
