"""`makoto audit list|verify`: read a tenant's audit log -- or, with --platform, the platform's
own chain (operator calls that name no tenant) -- through the API, and check its hash chain here,
so a verdict does not depend on trusting the server that stores the log."""

from __future__ import annotations

import json
from typing import Annotated, Any

import httpx
import typer

from services.cli_api import TokenOption, UrlOption
from services.common.audit_chain import verify
from services.common.config import MeshSettings
from services.common.identity import Role
from services.common.usage import PLATFORM_AUDIT_CHAIN

audit_app = typer.Typer(
    help="Tamper-evident audit logs: a tenant's, or the platform's (--platform).", no_args_is_help=True
)

TenantArg = Annotated[str | None, typer.Argument(help="Tenant id (omit with --platform)")]
PlatformOption = Annotated[
    bool, typer.Option("--platform", help="The platform's chain (platform-admin): GET /api/v1/admin/audit")
]

# JSON names of the API (proto3 JSON mapping) -> the names the chain hashes.
_NAMES = {
    "seq": "seq",
    "eventId": "event_id",
    "timeUs": "time_us",
    "source": "source",
    "principal": "principal",
    "role": "role",
    "method": "method",
    "resource": "resource",
    "outcome": "outcome",
    "apiKeyId": "api_key_id",
    "prevHash": "prev_hash",
    "hash": "hash",
}


def _record(raw: dict[str, Any]) -> dict[str, Any]:
    # proto3 JSON omits empty strings and renders int64 as strings.
    out: dict[str, Any] = {name: raw.get(json_name, "") for json_name, name in _NAMES.items()}
    out["seq"] = int(out["seq"] or 0)
    out["time_us"] = int(out["time_us"] or 0)
    return out


def _path(tenant: str | None, platform: bool) -> tuple[str, str]:
    """(the chain's name, its API path); exactly one of a tenant and --platform."""
    if platform == (tenant is not None):
        raise typer.BadParameter("name a tenant or pass --platform (not both)")
    if platform:
        return PLATFORM_AUDIT_CHAIN, "/api/v1/admin/audit"
    assert tenant is not None
    return tenant, f"/api/v1/tenants/{tenant}/audit"


def fetch_records(client: httpx.Client, path: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    token = ""
    while True:
        r = client.get(path, params={"pageSize": 1000, "pageToken": token})
        if r.status_code != 200:
            raise RuntimeError(r.text.strip() or f"HTTP {r.status_code}")
        page = r.json()
        records.extend(_record(x) for x in page.get("records", []))
        token = page.get("nextPageToken", "")
        if not token:
            return records


def _read(path: str, url: str | None, token: str | None) -> list[dict[str, Any]]:
    settings = MeshSettings()
    if token is None:
        from services.common.dev_issuer import mint_token

        token = mint_token(settings, role=Role.PLATFORM_ADMIN, ttl_seconds=300)
    base = url or f"http://{settings.host}:{settings.envoy_port}"
    with httpx.Client(base_url=base, timeout=30, headers={"authorization": f"Bearer {token}"}) as client:
        try:
            return fetch_records(client, path)
        except RuntimeError as exc:
            typer.echo(str(exc))
            raise typer.Exit(1) from None


@audit_app.command("list")
def audit_list(
    tenant: TenantArg = None,
    platform: PlatformOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Print the chain's records (oldest first) as JSON."""
    chain, path = _path(tenant, platform)
    records = _read(path, url, token)
    typer.echo(json.dumps({"chain": chain, "records": records}, indent=2, sort_keys=True))


@audit_app.command("verify")
def audit_verify(
    tenant: TenantArg = None,
    platform: PlatformOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Check the chain: prints the verdict and the head hash (keep that hash elsewhere: removing
    records from the end can only be seen against it). Exit 1 if broken."""
    chain, path = _path(tenant, platform)
    records = _read(path, url, token)
    verdict = verify(chain, records)
    answer: dict[str, Any] = {
        "tenantId": chain,
        "ok": verdict.ok,
        "records": verdict.records if verdict.ok else len(records),
        "headHash": verdict.head_hash,
    }
    if not verdict.ok:
        answer.update(badSeq=verdict.bad_seq, reason=verdict.reason, verifiedRecords=verdict.records)
    typer.echo(json.dumps(answer, indent=2, sort_keys=True))
    if not verdict.ok:
        raise typer.Exit(1)
