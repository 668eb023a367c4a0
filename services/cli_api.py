"""`makoto limits …` and `makoto plans …`: the limits and price-plan API through Envoy, for
operators and tenants. Output is the API's JSON (for scripts and humans alike); errors print the
API's google.rpc.Status JSON and exit 1.

A token comes from --token or $MAKOTO_TOKEN; without one, a dev token is minted with the local
dev issuer (development meshes only) for the role the command needs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from services.common.config import MeshSettings
from services.common.identity import Role

limits_app = typer.Typer(help="A tenant's limits, budgets and quotas.", no_args_is_help=True)
plans_app = typer.Typer(help="Price plans (prices, limits, budgets, quotas).", no_args_is_help=True)

UrlOption = Annotated[
    str | None, typer.Option("--url", help="Envoy's base URL; default http://<host>:<envoy_port>")
]
TokenOption = Annotated[
    str | None,
    typer.Option("--token", envvar="MAKOTO_TOKEN", help="Bearer token (default: mint a dev token)"),
]


def call_api(
    method: str,
    path: str,
    *,
    url: str | None,
    token: str | None,
    role: Role,
    tenant: str | None,
    body: Any = None,
) -> None:
    settings = MeshSettings()
    if token is None:
        from services.common.dev_issuer import mint_token

        token = mint_token(settings, role=role, tenant_id=tenant, ttl_seconds=300)
    base = url or f"http://{settings.host}:{settings.envoy_port}"
    with httpx.Client(base_url=base, timeout=30) as client:
        r = client.request(method, path, json=body, headers={"authorization": f"Bearer {token}"})
    try:
        answer = r.json() if r.content else {}
    except ValueError:  # not JSON (e.g. a proxy's plain-text error): still one JSON document
        answer = {"httpStatus": r.status_code, "message": r.text.strip()}
    typer.echo(json.dumps(answer, indent=2, sort_keys=True))
    if r.status_code != 200:
        raise typer.Exit(1)


@limits_app.command("get")
def limits_get(
    tenant: Annotated[str, typer.Argument(help="Tenant id")],
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Effective limits, overrides, remaining LLM budget and storage quota of a tenant."""
    call_api(
        "GET", f"/api/v1/tenants/{tenant}/limits", url=url, token=token, role=Role.TENANT_ADMIN, tenant=tenant
    )


def _rate(rps: float | None, burst: int | None, name: str) -> dict[str, Any] | None:
    if rps is None and burst is None:
        return None
    if rps is None or burst is None:
        raise typer.BadParameter(f"--{name}-rps and --{name}-burst go together")
    return {"requestsPerSecond": rps, "burst": burst}


@limits_app.command("set")
def limits_set(
    tenant: Annotated[str, typer.Argument(help="Tenant id")],
    api_rps: Annotated[float | None, typer.Option(help="All API calls: requests per second")] = None,
    api_burst: Annotated[int | None, typer.Option(help="All API calls: burst")] = None,
    reads_rps: Annotated[float | None, typer.Option(help="Reads: requests per second")] = None,
    reads_burst: Annotated[int | None, typer.Option(help="Reads: burst")] = None,
    writes_rps: Annotated[float | None, typer.Option(help="Writes: requests per second")] = None,
    writes_burst: Annotated[int | None, typer.Option(help="Writes: burst")] = None,
    llm_rps: Annotated[float | None, typer.Option(help="LLM calls: requests per second")] = None,
    llm_burst: Annotated[int | None, typer.Option(help="LLM calls: burst")] = None,
    llm_tpm: Annotated[int | None, typer.Option(help="LLM tokens per minute")] = None,
    monthly_tokens: Annotated[int | None, typer.Option(help="Monthly LLM budget in tokens")] = None,
    monthly_spend: Annotated[str | None, typer.Option(help="Monthly LLM budget in money (decimal)")] = None,
    max_object_bytes: Annotated[int | None, typer.Option(help="Largest object in bytes")] = None,
    quota_bytes: Annotated[int | None, typer.Option(help="Stored object bytes quota")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove all overrides (plan limits apply)")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Replace a tenant's overrides (platform-admin). Unset options inherit from the plan."""
    body: dict[str, Any] = {}
    if not clear:
        for name, rate in (
            ("api", _rate(api_rps, api_burst, "api")),
            ("reads", _rate(reads_rps, reads_burst, "reads")),
            ("writes", _rate(writes_rps, writes_burst, "writes")),
            ("llm", _rate(llm_rps, llm_burst, "llm")),
        ):
            if rate is not None:
                body[name] = rate
        for name, value in (
            ("llmTokensPerMinute", llm_tpm),
            ("llmMonthlyTokens", monthly_tokens),
            ("llmMonthlySpend", monthly_spend),
            ("maxObjectBytes", max_object_bytes),
            ("storageQuotaBytes", quota_bytes),
        ):
            if value is not None:
                body[name] = str(value)
        if not body:
            raise typer.BadParameter("name at least one limit, or --clear")
    call_api(
        "PUT",
        f"/api/v1/admin/tenants/{tenant}/limits",
        url=url,
        token=token,
        role=Role.PLATFORM_ADMIN,
        tenant=None,
        body=body,
    )


@plans_app.command("get")
def plans_get(
    plan_id: Annotated[str, typer.Argument(help="Plan id, e.g. default")],
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """A price plan: prices and limits."""
    call_api(
        "GET",
        f"/api/v1/admin/price-plans/{plan_id}",
        url=url,
        token=token,
        role=Role.PLATFORM_ADMIN,
        tenant=None,
    )


@plans_app.command("set")
def plans_set(
    plan_file: Annotated[Path, typer.Argument(help="The plan as JSON (as `plans get` prints it)")],
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Create or replace a price plan from a JSON file (platform-admin)."""
    plan = json.loads(plan_file.read_text())
    plan_id = plan.get("planId")
    if not plan_id:
        raise typer.BadParameter("the plan needs a planId")
    call_api(
        "PUT",
        f"/api/v1/admin/price-plans/{plan_id}",
        url=url,
        token=token,
        role=Role.PLATFORM_ADMIN,
        tenant=None,
        body=plan,
    )
