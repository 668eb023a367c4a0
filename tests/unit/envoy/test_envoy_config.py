"""Envoy configuration: every config in the repo passes `envoy --mode validate`, the committed
reference is what the renderer produces, and the rendered routes say what envoy/README.md says."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.common.config import JwtProvider, MeshSettings
from services.common.dev_issuer import ensure_signing_key
from services.common.tls import ensure_certs
from services.mesh.envoy_config import (
    DESCRIPTOR_PATH,
    OPENAI_CLUSTER,
    REFERENCE_PATH,
    REPO_ROOT,
    reference_config,
    render,
    write_config,
)
from services.mesh.methods import PUBLIC_SERVICES, Access, public_methods
from services.mesh.processes import envoy_binary
from tests.support import make_settings

COGNITO = JwtProvider(
    name="cognito",
    issuer="https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Example",
    jwks_url="https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Example/.well-known/jwks.json",
    client_ids=["example-client"],
)


def validate(config: Path, cwd: Path) -> None:
    run = subprocess.run(
        [
            str(envoy_binary()),
            "--mode",
            "validate",
            "-c",
            str(config),
            "--disable-hot-restart",
            "-l",
            "error",
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


def every_envoy_config_in_repo() -> list[Path]:
    skip = {".venv", "node_modules", ".git", ".makoto"}
    found = []
    for path in REPO_ROOT.rglob("*.yaml"):
        if skip & set(path.relative_to(REPO_ROOT).parts):
            continue
        text = path.read_text(errors="replace")
        if "static_resources:" in text:
            found.append(path)
    return sorted(found)


def test_the_reference_config_is_in_the_repo_scan() -> None:
    assert REFERENCE_PATH in every_envoy_config_in_repo()


@pytest.mark.parametrize("config", every_envoy_config_in_repo(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_envoy_config_in_the_repo_validates(config: Path, tmp_path: Path) -> None:
    # Repo configs use paths relative to the repository root (gen/, .makoto/): give them a root
    # with the real descriptor set and a fresh dev JWKS.
    (tmp_path / "gen").symlink_to(REPO_ROOT / "gen", target_is_directory=True)
    ensure_signing_key(MeshSettings.model_construct(home=tmp_path / ".makoto"))
    ensure_certs(MeshSettings.model_construct(home=tmp_path / ".makoto"))  # Envoy reads them at start
    (tmp_path / ".makoto" / "logs").mkdir()
    validate(config, cwd=tmp_path)


def test_a_freshly_rendered_config_validates(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    validate(write_config(settings), cwd=tmp_path)


def test_a_config_with_a_cognito_provider_validates(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home", extra_jwt_providers=[COGNITO])
    path = write_config(settings)
    validate(path, cwd=tmp_path)
    config = yaml.safe_load(path.read_text())
    jwt = _filter(config, "envoy.filters.http.jwt_authn")
    assert set(jwt["providers"]) == {"makoto", "cognito"}
    cognito = jwt["providers"]["cognito"]
    assert cognito["remote_jwks"]["http_uri"]["uri"] == COGNITO.jwks_url
    # Cognito access tokens carry client_id, not aud: the services check client_id.
    assert "audiences" not in cognito
    assert jwt["rules"][-1]["requires"] == {
        "requires_any": {"requirements": [{"provider_name": "makoto"}, {"provider_name": "cognito"}]}
    }
    cluster = next(c for c in config["static_resources"]["clusters"] if c["name"] == "jwks_cognito")
    assert cluster["transport_socket"]["typed_config"]["sni"] == "cognito-idp.eu-west-1.amazonaws.com"


def test_the_committed_reference_is_current() -> None:
    assert REFERENCE_PATH.read_text() == reference_config(), (
        "envoy/envoy.yaml is stale: run `python -m services.mesh.envoy_config --reference`"
    )


def test_reference_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAKOTO_ENVOY_PORT", "1234")
    monkeypatch.setenv("MAKOTO_STORAGE_PORT", "4321")
    assert reference_config() == REFERENCE_PATH.read_text()


def _hcm(config: dict[str, Any]) -> dict[str, Any]:
    [listener] = config["static_resources"]["listeners"]
    [chain] = listener["filter_chains"]
    hcm = next(f for f in chain["filters"] if f["name"] == "envoy.filters.network.http_connection_manager")
    return dict(hcm["typed_config"])


def _filter(config: dict[str, Any], name: str) -> dict[str, Any]:
    return dict(next(f for f in _hcm(config)["http_filters"] if f["name"] == name)["typed_config"])


@pytest.fixture
def rendered(tmp_path: Path) -> dict[str, Any]:
    return render(make_settings(tmp_path / "home"))


def test_filter_order(rendered: dict[str, Any]) -> None:
    names = [f["name"] for f in _hcm(rendered)["http_filters"]]
    assert names == [
        "envoy.filters.http.header_mutation",
        # the client's content-type, before the transcoder rewrites it (local_replies.py)
        "envoy.filters.http.header_to_metadata",
        # names the field of the transcoder's own 400s (bad_request_field.lua)
        "envoy.filters.http.lua",
        "envoy.filters.http.jwt_authn",
        # exact `Bearer <jwt>`, iat/nbf not in the future (strict_token.lua)
        "makoto.strict_token",
        # /healthz, then /healthz/<service> for each public service
        *["envoy.filters.http.health_check"] * 5,
        "envoy.filters.http.buffer",
        "envoy.filters.http.grpc_json_transcoder",
        "envoy.filters.http.grpc_field_extraction",
        "envoy.filters.http.rbac",
        "envoy.filters.http.router",
    ]


def test_json_body_limit_applies_to_json_only(rendered: dict[str, Any]) -> None:
    """The buffer filter (413 for oversized JSON) is skipped unless Content-Type is JSON, so gRPC
    client streaming and raw uploads are never buffered by it."""
    from services.common.config import MeshSettings
    from services.mesh.envoy_config import rest_body_limit

    wrapped = _filter(rendered, "envoy.filters.http.buffer")
    inner = wrapped["extension_config"]["typed_config"]
    assert inner["max_request_bytes"] == rest_body_limit(MeshSettings())
    [rule] = wrapped["xds_matcher"]["matcher_list"]["matchers"]
    predicate = rule["predicate"]["not_matcher"]["single_predicate"]
    assert predicate["input"]["typed_config"]["header_name"] == "content-type"
    assert predicate["value_match"] == {"prefix": "application/json"}
    assert rule["on_match"]["action"]["typed_config"]["@type"].endswith("SkipFilter")


def test_listener_and_admin(rendered: dict[str, Any]) -> None:
    hcm = _hcm(rendered)
    assert hcm["codec_type"] == "AUTO"  # HTTP/1.1 and h2c on one port
    assert hcm["http_protocol_options"] == {"enable_trailers": True}
    # No TCP admin at all: a Unix socket only its user may open.
    pipe = rendered["admin"]["address"]["pipe"]
    assert pipe["mode"] == 0o600 and pipe["path"].endswith("/home/run/envoy-admin.sock")
    assert "socket_address" not in rendered["admin"]["address"]


def test_admin_socket_path_must_fit_a_unix_socket(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home", envoy_admin_socket="/tmp/" + "x" * 120)
    with pytest.raises(ValueError, match="MAKOTO_ENVOY_ADMIN_SOCKET"):
        render(settings)


def test_jwt_only_from_the_authorization_header(rendered: dict[str, Any]) -> None:
    jwt = _filter(rendered, "envoy.filters.http.jwt_authn")
    [provider] = jwt["providers"].values()
    assert provider["from_headers"] == [{"name": "authorization", "value_prefix": "Bearer "}]
    assert "from_params" not in provider and "from_cookies" not in provider
    assert provider["forward"] is True
    assert provider["issuer"] == "makoto-dev" and provider["audiences"] == ["makoto"]
    assert Path(provider["local_jwks"]["filename"]).is_absolute()
    # The services' maximum token lifetime, enforced at the edge too.
    assert provider["max_lifetime"] == f"{MeshSettings().max_token_ttl_seconds}s"


def test_only_the_api_key_exchange_and_the_signed_export_download_are_public(
    rendered: dict[str, Any],
) -> None:
    jwt = _filter(rendered, "envoy.filters.http.jwt_authn")
    unauthenticated = [r["match"] for r in jwt["rules"] if "requires" not in r]
    posts = sorted(m["path"] for m in unauthenticated if m["headers"][0]["string_match"] == {"exact": "POST"})
    assert posts == [
        "/api/v1/auth/token",
        "/makoto.tenant.v1.TenantService/DownloadExport",
        "/makoto.tenant.v1.TenantService/ExchangeApiKey",
    ]
    gets = {m["path"] for m in unauthenticated if m["headers"][0]["string_match"] == {"exact": "GET"}}
    # The download's REST path is exempt for GET only (a POST there still needs a token).
    assert "/api/v1/exports:download" in gets
    assert "/api/v1/auth/token" not in gets
    public = [m.full_name for m in public_methods(DESCRIPTOR_PATH) if m.access is Access.PUBLIC]
    assert public == [
        "makoto.tenant.v1.TenantService.DownloadExport",
        "makoto.tenant.v1.TenantService.ExchangeApiKey",
    ]


def test_transcoder_settings(rendered: dict[str, Any]) -> None:
    t = _filter(rendered, "envoy.filters.http.grpc_json_transcoder")
    assert t["services"] == list(PUBLIC_SERVICES.values())
    assert "makoto.tenant.v1.TenantDirectoryService" not in t["services"]
    assert t["convert_grpc_status"] is True and t["auto_mapping"] is False
    assert t["url_unescape_spec"] == "ALL_CHARACTERS_EXCEPT_SLASH"
    assert t["print_options"]["stream_sse_style_delimited"] is True
    assert t["max_request_body_size"] > 1024 * 1024
    assert Path(t["proto_descriptor"]).is_absolute()


def test_routes_match_the_method_table(rendered: dict[str, Any]) -> None:
    routes = {r["name"]: r for r in _hcm(rendered)["route_config"]["virtual_hosts"][0]["routes"]}
    methods = public_methods(DESCRIPTOR_PATH)
    routed = [m for m in methods if m.access is not Access.INTERNAL]
    # Plus one route that is no gRPC method: the OpenAI-compatible API (its own test below).
    assert set(routes) == {m.full_name for m in routed} | {"openai"}
    assert "makoto.metering.v1.MeteringService.RecordUsage" not in routes
    assert not [n for n in routes if "TenantDirectoryService" in n]
    for m in routed:
        route = routes[m.full_name]
        action = route["route"]
        assert route["match"] == {"path": m.grpc_path, "grpc": {}}
        assert action["cluster"] == m.cluster
        if m.streaming:
            assert action["timeout"] == "0s", m.full_name
        else:
            assert action["timeout"] != "0s", m.full_name
            # The whole stream is bounded, with or without a client grpc-timeout.
            duration = action["max_stream_duration"]
            assert duration["max_stream_duration"] == duration["grpc_timeout_header_max"] == action["timeout"]
        # A slow service's call is not cut by the listener's shorter idle timeout.
        assert float(action["idle_timeout"].rstrip("s")) >= float(action["timeout"].rstrip("s") or 0)
        if m.cluster == "llm":
            assert action["idle_timeout"] == "300s", m.full_name
        retry_on = set(action["retry_policy"]["retry_on"].split(","))
        # Only reads are retried after they may have reached a service; every call is retried
        # when it provably did not (connection or stream refused).
        assert {"connect-failure", "refused-stream"} <= retry_on, m.full_name
        assert ("unavailable" in retry_on) == m.idempotent, m.full_name
        assert ("reset" in retry_on) == m.idempotent, m.full_name
        per_route = route["typed_per_filter_config"]["envoy.filters.http.rbac"]
        if m.access is Access.PUBLIC:
            assert "rbac" not in per_route, m.full_name  # no claims to check: no token needed
            continue
        assert per_route["rbac"]["rules"]["action"] == "ALLOW"
    idempotent = {m.name for m in routed if m.idempotent}
    assert {
        "GetItem",
        "ListObjects",
        "QueryItems",
        "GetObjectContent",
        "DownloadObject",
        "GetInvoice",
    } <= idempotent
    assert not idempotent & {
        "PutItem",
        "PutObjectContent",
        "UploadObject",
        "CreateTenant",
        "CreateChatCompletion",
    }


def test_tenant_fields(rendered: dict[str, Any]) -> None:
    extraction = _filter(rendered, "envoy.filters.http.grpc_field_extraction")["extractions_by_method"]
    assert extraction["makoto.storage.v1.StorageService.UploadObject"] == {
        "request_field_extractions": {"header.tenant_id": {}}
    }
    assert extraction["makoto.storage.v1.StorageService.GetItem"] == {
        "request_field_extractions": {"tenant_id": {}}
    }
    # Admin-only methods need no tenant: the role decides.
    assert "makoto.tenant.v1.TenantService.CreateTenant" not in extraction
    for m in public_methods(DESCRIPTOR_PATH):
        if m.access in (Access.TENANT, Access.TENANT_OR_ADMIN):
            assert m.full_name in extraction


def test_clusters_are_http2_with_grpc_health_checks(rendered: dict[str, Any]) -> None:
    clusters = {c["name"]: c for c in rendered["static_resources"]["clusters"]}
    assert set(clusters) == {*PUBLIC_SERVICES, OPENAI_CLUSTER}
    del clusters[OPENAI_CLUSTER]  # plain HTTP/1.1 (LLMService's OpenAI-compatible listener)
    for name, cluster in clusters.items():
        opts = cluster["typed_extension_protocol_options"][
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
        ]
        h2 = opts["explicit_http_config"]["http2_protocol_options"]
        assert h2["initial_stream_window_size"] == 1024 * 1024
        [hc] = cluster["health_checks"]
        assert hc["interval"] == "1s" and hc["no_traffic_interval"] == "1s"
        assert hc["grpc_health_check"]["service_name"] == PUBLIC_SERVICES[name]
    health = _filter(rendered, "envoy.filters.http.health_check")
    assert health["pass_through_mode"] is False
    assert {k: v["value"] for k, v in health["cluster_min_healthy_percentages"].items()} == {
        c: 100.0 for c in PUBLIC_SERVICES
    }


def test_openai_route_goes_untranscoded_to_the_llm_http_listener(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home", llm_replicas=2, llm_openai_replica_ports=[41002])
    config = render(settings)
    [route] = [r for r in _hcm(config)["route_config"]["virtual_hosts"][0]["routes"] if r["name"] == "openai"]
    assert route["match"] == {"prefix": "/v1/"}
    assert route["route"]["cluster"] == OPENAI_CLUSTER
    assert route["route"]["timeout"] == "0s"  # SSE streams; the idle timeout ends a silent one
    per_filter = route["typed_per_filter_config"]
    assert per_filter["envoy.filters.http.grpc_json_transcoder"]["disabled"] is True
    policies = per_filter["envoy.filters.http.rbac"]["rbac"]["rules"]["policies"]
    # Either no tenant named (the token's is used) or the token's own tenant named.
    [no_org] = policies["openai-token-tenant"]["permissions"]
    assert no_org["not_rule"]["header"] == {"name": "openai-organization", "present_match": True}
    condition = json.dumps(policies["openai-named-tenant"]["condition"])
    assert "openai-organization" in condition and "tenant_id" in condition
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    [group] = clusters[OPENAI_CLUSTER]["load_assignment"]["endpoints"]
    ports = [e["endpoint"]["address"]["socket_address"]["port_value"] for e in group["lb_endpoints"]]
    assert ports == [settings.llm_openai_port, 41002]
    # The /v1 paths are not public: jwt_authn's catch-all rule requires a token for them.
    rules = _filter(config, "envoy.filters.http.jwt_authn")["rules"]
    assert not [r for r in rules if r["match"].get("path", "").startswith("/v1/")]
    assert rules[-1]["match"] == {"prefix": "/"} and "requires" in rules[-1]


def test_access_log_has_no_query_string_or_headers(rendered: dict[str, Any]) -> None:
    [log] = _hcm(rendered)["access_log"]
    fmt = log["typed_config"]["log_format"]["json_format"]
    text = " ".join(fmt.values()).upper()
    assert "AUTHORIZATION" not in text
    assert "%REQ(:PATH)%" not in text and "REQ_WITHOUT_QUERY" in text


def test_wildcard_host_connects_to_loopback(tmp_path: Path) -> None:
    config = render(make_settings(tmp_path / "home", host="0.0.0.0"))
    for cluster in config["static_resources"]["clusters"]:
        addr = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        assert addr["socket_address"]["address"] == "127.0.0.1"


def test_envoy_binary_is_the_real_one() -> None:
    assert os.access(envoy_binary(), os.X_OK)


def test_replicas_are_endpoints_of_one_cluster_with_outlier_detection(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path / "home", storage_replicas=3, storage_replica_ports=[41001], llm_replicas=2
    )
    config = render(settings)
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}

    def ports(name: str) -> list[int]:
        [group] = clusters[name]["load_assignment"]["endpoints"]
        return [e["endpoint"]["address"]["socket_address"]["port_value"] for e in group["lb_endpoints"]]

    # A listed port is used; the next replica defaults to the service's port + 100 * index.
    assert ports("storage") == [settings.storage_port, 41001, settings.storage_port + 200]
    assert ports("llm") == [settings.llm_port, settings.llm_port + 100]
    assert ports("tenant") == [settings.tenant_port]
    for cluster in clusters.values():
        if cluster["name"] in ("tenant", "storage", "llm", "metering"):
            assert cluster["outlier_detection"]["max_ejection_percent"] == 50
            assert cluster["health_checks"][0]["grpc_health_check"]["service_name"].startswith("makoto.")
    # /healthz needs one healthy replica of each service (a hair under 1/N).
    health = [f["typed_config"] for f in _hcm(config)["http_filters"] if f["name"].endswith("health_check")]
    [aggregate] = [h for h in health if h["headers"][0]["string_match"]["exact"] == "/healthz"]
    assert aggregate["cluster_min_healthy_percentages"]["storage"]["value"] == pytest.approx(33.32)
    assert aggregate["cluster_min_healthy_percentages"]["tenant"]["value"] == 100.0
    [only_llm] = [h for h in health if h["headers"][0]["string_match"]["exact"] == "/healthz/llm"]
    assert set(only_llm["cluster_min_healthy_percentages"]) == {"llm"}
    validate(write_config(settings), cwd=tmp_path)


def test_envoy_local_replies_are_status_json_for_rest_only(rendered: dict[str, Any]) -> None:
    """One mapper per status Envoy answers itself (429 included: no Envoy filter makes one yet,
    but a rate-limit filter would speak the same language), all JSON; gRPC callers are matched
    first and left alone."""
    from services.mesh.local_replies import METADATA_KEY, METADATA_NAMESPACE

    mappers = _hcm(rendered)["local_reply_config"]["mappers"]
    grpc_first = mappers[0]
    assert set(grpc_first) == {"filter"}
    matcher = grpc_first["filter"]["metadata_filter"]["matcher"]
    assert (matcher["filter"], matcher["path"]) == (METADATA_NAMESPACE, [{"key": METADATA_KEY}])
    by_status = {
        m["filter"]["status_code_filter"]["comparison"]["value"]["default_value"]: m for m in mappers[2:-1]
    }
    assert set(by_status) == {400, 401, 403, 404, 408, 413, 429, 502, 503, 504}
    for mapper in mappers[1:]:
        assert mapper["body_format_override"]["content_type"] == "application/json"
    limited = by_status[429]["body_format_override"]["json_format"]
    assert limited["code"] == 8
    assert [d["@type"].rsplit(".", 1)[1] for d in limited["details"]] == ["ErrorInfo", "RetryInfo"]
    assert by_status[504]["body_format_override"]["json_format"]["code"] == 4
    assert mappers[-1]["filter"]["status_code_filter"]["comparison"]["op"] == "GE"
