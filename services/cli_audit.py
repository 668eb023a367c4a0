"""`makoto audit verify`: read a tenant's audit log through the API and check its hash chain
here, so a verdict does not depend on trusting the server that stores the log."""

from __future__ import annotations

import json
from typing import Annotated, Any

import httpx
import typer

from services.cli_api import TokenOption, UrlOption
from services.common.audit_chain import verify
from services.common.config import MeshSettings
from services.common.identity import Role

audit_app = typer.Typer(help="A tenant's tamper-evident audit log.", no_args_is_help=True)

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


def fetch_records(client: httpx.Client, tenant: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    token = ""
    while True:
        r = client.get(f"/api/v1/tenants/{tenant}/audit", params={"pageSize": 1000, "pageToken": token})
        if r.status_code != 200:
            raise RuntimeError(r.text.strip() or f"HTTP {r.status_code}")
        page = r.json()
        records.extend(_record(x) for x in page.get("records", []))
        token = page.get("nextPageToken", "")
        if not token:
            return records


@audit_app.command("verify")
def audit_verify(
    tenant: Annotated[str, typer.Argument(help="Tenant id")],
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Check the tenant's audit chain: prints the verdict and the head hash (keep that hash
    elsewhere: removing records from the end can only be seen against it). Exit 1 if broken."""
    settings = MeshSettings()
    if token is None:
        from services.common.dev_issuer import mint_token

        token = mint_token(settings, role=Role.PLATFORM_ADMIN, ttl_seconds=300)
    base = url or f"http://{settings.host}:{settings.envoy_port}"
    with httpx.Client(base_url=base, timeout=30, headers={"authorization": f"Bearer {token}"}) as client:
        try:
            records = fetch_records(client, tenant)
        except RuntimeError as exc:
            typer.echo(str(exc))
            raise typer.Exit(1) from None
    verdict = verify(tenant, records)
    answer: dict[str, Any] = {
        "tenantId": tenant,
        "ok": verdict.ok,
        "records": verdict.records if verdict.ok else len(records),
        "headHash": verdict.head_hash,
    }
    if not verdict.ok:
        answer.update(badSeq=verdict.bad_seq, reason=verdict.reason, verifiedRecords=verdict.records)
    typer.echo(json.dumps(answer, indent=2, sort_keys=True))
    if not verdict.ok:
        raise typer.Exit(1)
