"""deploy/k8s: both overlays render, every manifest passes `kubernetes-validate --strict` against
Kubernetes 1.33, the fleet's invariants hold (probes, resources, non-root, secrets referenced
only, policies), and the gateway's ConfigMap is fresh and passes `envoy --mode validate`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.common.config import MeshSettings
from services.common.dev_issuer import ensure_signing_key
from services.common.tls import ensure_certs
from services.deploy.gateway import (
    IMAGE_DESCRIPTOR,
    IMAGE_HOME,
    IMAGE_OPENAPI,
    K8S_CONFIG_PATH,
    K8S_TLS_DIR,
    dumps,
    gateway_config,
)
from services.deploy.kustomize import KustomizeError, build, dump, merge
from services.mesh.envoy_config import DESCRIPTOR_PATH, OPENAPI_DOC, REPO_ROOT
from services.mesh.methods import PUBLIC_SERVICES
from tests.unit.envoy.test_envoy_config import validate as envoy_validate

K8S = REPO_ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
# The only Secrets the manifests may name; they are created outside the repository.
REFERENCED_SECRETS = {
    "makoto-keys",
    "makoto-backends",
    *(f"makoto-tls-{name}" for name in ("tenant", "storage", "llm", "metering", "gateway")),
}


def kubernetes_validate() -> Path:
    return Path(sys.executable).parent / "kubernetes-validate"


def run_validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(kubernetes_validate()), "--strict", "-k", "1.33.0", "--quiet", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, build(K8S / "overlays" / request.param)


def by_kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def test_every_rendered_manifest_passes_strict_validation(
    overlay: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    name, manifests = overlay
    out = tmp_path / f"{name}.yaml"
    out.write_text(dump(manifests))
    run = run_validate(out)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    kinds = {m["kind"] for m in manifests}
    assert {
        "Deployment",
        "Service",
        "ServiceAccount",
        "ConfigMap",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    } <= kinds


def test_the_validator_is_strict(tmp_path: Path) -> None:
    """A misspelled field fails: the validation above can fail."""
    deployment = by_kind(build(K8S / "overlays" / "dev"), "Deployment")["storage"]
    broken = merge(
        deployment,
        {"spec": {"template": {"spec": {"containers": [{"name": "storage", "readinesProbe": {}}]}}}},
    )
    out = tmp_path / "broken.yaml"
    out.write_text(dump([broken]))
    assert run_validate(out).returncode != 0


def test_deployments_are_probed_bounded_and_unprivileged(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, manifests = overlay
    deployments = by_kind(manifests, "Deployment")
    accounts = by_kind(manifests, "ServiceAccount")
    assert set(deployments) == {*PUBLIC_SERVICES, "gateway", "llm-simulator"}
    for name, d in deployments.items():
        pod = d["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] in accounts, name
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        for c in pod["containers"]:
            assert c["readinessProbe"] and c["livenessProbe"], name
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), name
            assert {"cpu", "memory"} <= set(c["resources"]["limits"]), name
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
    for service, full_name in PUBLIC_SERVICES.items():
        [c] = deployments[service]["spec"]["template"]["spec"]["containers"]
        # Readiness asks the gRPC health service about this very service (what Envoy asks too),
        # on the plaintext health-only port (kubelet cannot present an mTLS certificate).
        assert c["readinessProbe"]["grpc"]["service"] == full_name
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert c["readinessProbe"]["grpc"]["port"] == int(env["MAKOTO_HEALTH_PORT"])
        assert env["MAKOTO_TLS_DIR"] == "/etc/makoto/tls"
        assert c["args"] == ["serve", service]


def test_secrets_are_referenced_never_embedded(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, manifests = overlay
    assert not [m for m in manifests if m["kind"] == "Secret"]
    named: set[str] = set()
    for d in by_kind(manifests, "Deployment").values():
        pod = d["spec"]["template"]["spec"]
        named |= {v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
        for c in pod["containers"]:
            named |= {e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", []) if "valueFrom" in e}
            assert not any(
                "PASSWORD" in e["name"] or "postgres" in str(e.get("value", "")) for e in c.get("env", [])
            )
    assert named == REFERENCED_SECRETS
    # The gateway gets the public JWKS only, never the signing key or the secret store.
    gateway_secrets = {
        v["secret"]["secretName"]: v
        for v in by_kind(manifests, "Deployment")["gateway"]["spec"]["template"]["spec"]["volumes"]
        if "secret" in v
    }
    assert set(gateway_secrets) == {"makoto-keys", "makoto-tls-gateway"}
    assert gateway_secrets["makoto-keys"]["secret"]["items"] == [{"key": "jwks.json", "path": "jwks.json"}]
    # mTLS: each workload mounts only its own certificate Secret.
    for name, d in by_kind(manifests, "Deployment").items():
        volumes = d["spec"]["template"]["spec"].get("volumes", [])
        tls_secrets = {v["secret"]["secretName"] for v in volumes if "secret" in v} - {
            "makoto-keys",
            "makoto-backends",
        }
        if name in PUBLIC_SERVICES or name == "gateway":
            assert tls_secrets == {f"makoto-tls-{name}"}, name


def test_autoscalers_budgets_and_services_point_at_real_workloads(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, manifests = overlay
    deployments = by_kind(manifests, "Deployment")
    for hpa in by_kind(manifests, "HorizontalPodAutoscaler").values():
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    for pdb in by_kind(manifests, "PodDisruptionBudget").values():
        selected = pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        assert selected in deployments
    for name, svc in by_kind(manifests, "Service").items():
        target = deployments[svc["spec"]["selector"]["app.kubernetes.io/name"]]
        ports = {p["name"] for c in target["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= ports, name
        labels = target["spec"]["template"]["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in svc["spec"]["selector"].items())
    # Envoy balances over every pod: the services it reaches are headless.
    assert all(by_kind(manifests, "Service")[s]["spec"]["clusterIP"] == "None" for s in PUBLIC_SERVICES)


def test_network_policies_deny_by_default_and_only_the_gateway_reaches_services(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, manifests = overlay
    policies = by_kind(manifests, "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {} and deny["ingress"] == [] and deny["egress"] == []
    from_gateway = policies["services-from-gateway"]["spec"]
    assert from_gateway["ingress"][0]["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "gateway"}}}
    ]
    # Besides the gateway, only Prometheus, and only on the metrics port.
    assert len(from_gateway["ingress"]) == 2
    scrape = from_gateway["ingress"][1]
    assert scrape["ports"] == [{"protocol": "TCP", "port": 9464}]
    assert scrape["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    # No policy lets anything but the gateway into storage / llm pods.
    for name, p in policies.items():
        spec = p["spec"]
        sel = spec["podSelector"]
        reaches_data_plane = sel.get("matchLabels", {}).get(
            "app.kubernetes.io/component"
        ) == "service" or any(
            {"storage", "llm"} & set(e.get("values", [])) for e in sel.get("matchExpressions", [])
        )
        if reaches_data_plane and "Ingress" in spec["policyTypes"]:
            assert name == "services-from-gateway", name


def test_prod_service_accounts_carry_cloud_identities() -> None:
    accounts = by_kind(build(K8S / "overlays" / "prod"), "ServiceAccount")
    for name in ("storage", "llm", "tenant"):
        notes = accounts[name]["metadata"]["annotations"]
        assert notes["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
        assert notes["azure.workload.identity/client-id"]
    assert "annotations" not in accounts["metering"]["metadata"]


def test_overlays_differ_where_they_say() -> None:
    dev, prod = (build(K8S / "overlays" / o) for o in OVERLAYS)
    assert {m["metadata"]["namespace"] for m in dev} == {"makoto-dev"}
    assert {m["metadata"]["namespace"] for m in prod} == {"makoto"}
    assert by_kind(dev, "Deployment")["storage"]["spec"]["replicas"] == 1
    assert by_kind(prod, "Deployment")["tenant"]["spec"]["replicas"] == 2
    images = {
        c["image"]
        for d in by_kind(prod, "Deployment").values()
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert images == {"registry.example.com/makoto/makoto:0.1.0"}
    # The dev patch touched requests only: the base's limits survive the strategic merge.
    [c] = by_kind(dev, "Deployment")["storage"]["spec"]["template"]["spec"]["containers"]
    assert c["resources"] == {
        "requests": {"cpu": "50m", "memory": "256Mi"},
        "limits": {"cpu": "2", "memory": "1Gi"},
    }
    assert c["env"] and c["volumeMounts"]


# -- the gateway ConfigMap -----------------------------------------------------------------------


def test_the_gateway_config_map_is_fresh() -> None:
    assert K8S_CONFIG_PATH.read_text() == dumps(gateway_config("k8s")), (
        "deploy/k8s/base/gateway/envoy.json is stale: python -m services.deploy.gateway render"
    )
    [cm] = [m for m in build(K8S / "overlays" / "prod") if m["kind"] == "ConfigMap"]
    assert json.loads(cm["data"]["envoy.json"]) == gateway_config("k8s")


def _validate_image_config(config: dict[str, Any], tmp_path: Path) -> None:
    """`envoy --mode validate` on a config written for the image: its absolute paths (the
    descriptor set and the OpenAPI document in /app, the JWKS in MAKOTO_HOME) pointed at real
    files here."""
    home = tmp_path / "home"
    ensure_signing_key(MeshSettings.model_construct(home=home))
    ensure_certs(MeshSettings.model_construct(home=home))
    text = json.dumps(config)
    # Kubernetes mounts the gateway's mTLS Secret at K8S_TLS_DIR; compose has it in the home.
    text = text.replace(str(K8S_TLS_DIR), str(home / "tls"))
    for path in (IMAGE_DESCRIPTOR, IMAGE_OPENAPI, IMAGE_HOME / "keys" / "jwks.json"):
        assert str(path) in text
    text = text.replace(str(IMAGE_DESCRIPTOR), str(DESCRIPTOR_PATH)).replace(str(IMAGE_HOME), str(home))
    text = text.replace(str(IMAGE_OPENAPI), str(OPENAPI_DOC))
    path = tmp_path / "envoy.json"
    path.write_text(text)
    envoy_validate(path, cwd=tmp_path)


@pytest.mark.parametrize("target", ["k8s", "compose"])
def test_the_gateway_config_passes_envoy_validate(target: str, tmp_path: Path) -> None:
    config = gateway_config(target)  # type: ignore[arg-type]
    if target == "k8s":
        config = json.loads(K8S_CONFIG_PATH.read_text())
    _validate_image_config(config, tmp_path)


def test_a_broken_gateway_config_fails_envoy_validate(tmp_path: Path) -> None:
    config = gateway_config("k8s")
    config["static_resources"]["clusters"][0]["type"] = "STATIK"
    with pytest.raises(AssertionError):
        _validate_image_config(config, tmp_path)


def test_the_gateway_balances_over_dns_names_with_health_checks() -> None:
    config = gateway_config("k8s")
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    for name, full in PUBLIC_SERVICES.items():
        c = clusters[name]
        assert c["type"] == "STRICT_DNS"
        [endpoint] = c["load_assignment"]["endpoints"][0]["lb_endpoints"]
        assert endpoint["endpoint"]["address"]["socket_address"]["address"] == name
        assert c["health_checks"][0]["grpc_health_check"]["service_name"] == full
    compose = {c["name"]: c for c in gateway_config("compose")["static_resources"]["clusters"]}
    hosts = [
        e["endpoint"]["address"]["socket_address"]["address"]
        for e in compose["storage"]["load_assignment"]["endpoints"][0]["lb_endpoints"]
    ]
    assert hosts == ["storage", "storage-2"]


# -- the renderer itself ---------------------------------------------------------------------------


def test_the_renderer_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    shutil.copytree(K8S / "base", tmp_path / "base")
    kfile = tmp_path / "base" / "kustomization.yaml"
    k = yaml.safe_load(kfile.read_text())
    k["commonAnnotations"] = {"a": "b"}
    kfile.write_text(yaml.safe_dump(k))
    with pytest.raises(KustomizeError, match="commonAnnotations"):
        build(tmp_path / "base")


def test_strategic_merge_merges_named_lists_and_replaces_others() -> None:
    base = {"c": [{"name": "a", "x": 1, "y": [1, 2]}, {"name": "b"}], "s": [1, 2]}
    patch = {"c": [{"name": "a", "y": [3]}, {"name": "z"}], "s": [9]}
    assert merge(base, patch) == {
        "c": [{"name": "a", "x": 1, "y": [3]}, {"name": "b"}, {"name": "z"}],
        "s": [9],
    }


def test_every_workload_is_scraped_on_its_metrics_port(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, manifests = overlay
    deployments = by_kind(manifests, "Deployment")
    for name in ("tenant", "storage", "llm", "metering", "gateway"):
        template = deployments[name]["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", name
        assert annotations["prometheus.io/port"] == "9464", name
        [container] = template["spec"]["containers"]
        assert {"name": "metrics", "containerPort": 9464, "protocol": "TCP"} in container["ports"], name
        if name != "gateway":
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            assert json.loads(env["MAKOTO_METRICS_PORTS"]) == {name: 9464}, name
    gateway = json.loads(K8S_CONFIG_PATH.read_text())
    stats = [listener for listener in gateway["static_resources"]["listeners"] if listener["name"] == "stats"]
    assert stats[0]["address"]["socket_address"]["port_value"] == 9464
