"""Envoy's configuration for the containerised gateway (compose, Kubernetes).

It is `services.mesh.envoy_config.render` - the same code `make up` uses - with the few things a
fleet changes: upstreams are DNS names (one per replica in compose, a headless Service in
Kubernetes) instead of loopback ports, paths are the image's, and access logs go to stdout.

    python -m services.deploy.gateway render --target k8s --out deploy/k8s/base/gateway/envoy.json
    python -m services.deploy.gateway run --target compose     # render to /tmp, exec Envoy
    python -m services.deploy.gateway exec --config /etc/envoy/envoy.json   # Kubernetes (ConfigMap)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Literal

from services.common.config import MeshSettings
from services.mesh.envoy_config import DESCRIPTOR_PATH, OPENAI_CLUSTER, OPENAPI_DOC, REPO_ROOT, render
from services.mesh.processes import envoy_binary

Target = Literal["compose", "k8s"]
TARGETS: tuple[Target, ...] = ("compose", "k8s")

# Paths inside the image (deploy/Dockerfile): the repository is at /app, MAKOTO_HOME is a volume.
IMAGE_DESCRIPTOR = Path("/app/gen/makoto.binpb")
IMAGE_OPENAPI = Path("/app/docs/openapi.json")
IMAGE_HOME = Path("/var/lib/makoto")
K8S_TLS_DIR = Path("/etc/makoto/tls")
K8S_CONFIG_PATH = REPO_ROOT / "deploy" / "k8s" / "base" / "gateway" / "envoy.json"

SERVICES = ("tenant", "storage", "llm", "metering")
# /metrics of every MAKOTO container (services and the gateway's stats listener).
METRICS_PORT = 9464


def upstream_hosts(target: Target) -> dict[str, list[str]]:
    """DNS names Envoy balances over, per cluster. Compose runs each replica as its own service
    (`storage`, `storage-2`: each needs its own MAKOTO_REPLICA_INDEX, hence its own usage spool);
    Kubernetes has one headless Service per Deployment whose A records are the ready pods."""
    if target == "compose":
        hosts = {
            "tenant": ["tenant"],
            "storage": ["storage", "storage-2"],
            "llm": ["llm", "llm-2"],
            "metering": ["metering"],
        }
    else:
        hosts = {name: [name] for name in SERVICES}
    # LLMService's OpenAI-compatible HTTP listener runs in the same pods/containers.
    hosts[OPENAI_CLUSTER] = hosts["llm"]
    return hosts


def fleet_settings(target: Target = "compose") -> MeshSettings:
    # Defaults only (ports, limits, timeouts), never the renderer's environment.
    # Envoy's stats are served for Prometheus on the port every MAKOTO container uses (9464).
    # mTLS material: compose's init container writes it into the shared home (<home>/tls);
    # Kubernetes mounts the gateway's Secret at K8S_TLS_DIR. The admin socket goes to /tmp,
    # the container's one writable directory (an emptyDir).
    return MeshSettings.model_construct(
        home=IMAGE_HOME,
        host="0.0.0.0",
        metrics_ports={"envoy": METRICS_PORT},
        tls_dir=K8S_TLS_DIR if target == "k8s" else None,
        envoy_admin_socket="/tmp/envoy-admin.sock",  # noqa: S108 - a private emptyDir in the pod
    )


def gateway_config(target: Target) -> dict[str, Any]:
    settings = fleet_settings(target)
    # The routes come from the repository's descriptor set; Envoy in the image reads its copies
    # of it and of the OpenAPI document (served at /openapi.json).
    config: dict[str, Any] = render(
        settings, descriptor=DESCRIPTOR_PATH, log_dir=IMAGE_HOME / "logs", openapi=OPENAPI_DOC
    )
    config = _replace_strings(config, str(DESCRIPTOR_PATH), str(IMAGE_DESCRIPTOR))
    config = _replace_strings(config, str(OPENAPI_DOC), str(IMAGE_OPENAPI))
    hosts = upstream_hosts(target)
    for cluster in config["static_resources"]["clusters"]:
        names = hosts.get(cluster["name"])
        if names is None:
            continue  # remote JWKS clusters are DNS already
        port = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
            "socket_address"
        ]["port_value"]
        cluster["type"] = "STRICT_DNS"
        cluster["dns_lookup_family"] = "V4_ONLY"
        # New pods show up within seconds; the active health check still gates traffic to them.
        cluster["dns_refresh_rate"] = "5s"
        cluster["respect_dns_ttl"] = True
        cluster["load_assignment"]["endpoints"] = [
            {
                "lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": n, "port_value": port}}}}
                    for n in names
                ]
            }
        ]
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][1]["typed_config"]
    for log in hcm["access_log"]:
        log["typed_config"]["path"] = "/dev/stdout"
    for flt in hcm["http_filters"]:
        if flt["name"] == "envoy.filters.http.health_check":
            # The replica count changes under an HPA: "at least one healthy endpoint" is 1 %
            # (exact up to 100 pods), not the 1/N that `make up` derives from its fixed N.
            percentages = flt["typed_config"]["cluster_min_healthy_percentages"]
            for name in percentages:
                percentages[name] = {"value": 1.0}
    return config


def _replace_strings(node: Any, old: str, new: str) -> Any:
    if isinstance(node, dict):
        return {k: _replace_strings(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_strings(v, old, new) for v in node]
    return new if node == old else node


def dumps(config: dict[str, Any]) -> str:
    # Compact: the ConfigMap stays far below the 256 KiB `kubectl apply` annotation limit.
    return json.dumps(config, separators=(",", ":")) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=("render", "run", "exec"))
    parser.add_argument("--target", choices=TARGETS, default="k8s")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--config", type=Path, help="exec: the config file to run Envoy with")
    args = parser.parse_args(argv)
    if args.action == "exec":
        if args.config is None:
            parser.error("exec needs --config")
        _exec_envoy(args.config)
    text = dumps(gateway_config(args.target))
    out: Path = args.out or (
        K8S_CONFIG_PATH if args.action == "render" else Path(tempfile.gettempdir()) / "envoy.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    if args.action == "render":
        print(out)
        return 0
    _exec_envoy(out)
    return 1  # not reached


def _exec_envoy(config: Path) -> None:
    binary = str(envoy_binary())
    # exec: Envoy becomes the container's main process and gets its signals directly.
    os.execv(binary, [binary, "-c", str(config), "--log-level", "warning"])  # noqa: S606


if __name__ == "__main__":
    sys.exit(main())
