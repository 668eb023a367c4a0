"""`makoto tenants …`, `makoto usage`, `makoto invoice`: operating tenants through the API (Envoy).

Output is JSON on stdout (the API's own, proto3 JSON names), for scripts and humans alike;
progress of long operations (paging through every tenant, offboarding) goes to stderr -- a
spinner on a terminal, one line per step otherwise -- and never mixes with the JSON. Errors print
the API's google.rpc.Status JSON and exit 1.

A token comes from --token or $MAKOTO_TOKEN; without one a dev token is minted with the local dev
issuer (development meshes only): platform-admin for tenant administration, the tenant's admin
for its usage and invoices.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console

from services.cli_api import TokenOption, UrlOption
from services.common.config import MeshSettings
from services.common.identity import Role

tenants_app = typer.Typer(
    help="Create, list, read, suspend, resume and delete tenants.", no_args_is_help=True
)

QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr")]
API = "/api/v1"


class Api:
    """One CLI invocation's HTTP client: base URL and bearer token resolved once."""

    def __init__(self, url: str | None, token: str | None, role: Role, tenant: str | None = None) -> None:
        settings = MeshSettings()
        if token is None:
            from services.common.dev_issuer import mint_token

            token = mint_token(settings, role=role, tenant_id=tenant, ttl_seconds=300)
        self._client = httpx.Client(
            base_url=url or f"http://{settings.host}:{settings.envoy_port}",
            headers={"authorization": f"Bearer {token}"},
            timeout=60,
        )

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def call(self, method: str, path: str, *, body: Any = None, params: Any = None) -> Any:
        """The answer's JSON; on an error answer, print it and exit 1."""
        try:
            r = self._client.request(method, path, json=body, params=params)
        except httpx.HTTPError as exc:
            _fail({"message": f"cannot reach the API: {exc}"})
        try:
            answer = r.json() if r.content else {}
        except ValueError:  # not JSON (a proxy's plain-text error): still one JSON document
            answer = {"httpStatus": r.status_code, "message": r.text.strip()}
        if r.status_code != 200:
            _fail(answer)
        return answer


def _fail(answer: Any) -> None:
    _print(answer)
    raise typer.Exit(1)


def _print(answer: Any) -> None:
    typer.echo(json.dumps(answer, indent=2, sort_keys=True))


@contextmanager
def progress(quiet: bool, what: str) -> Iterator[Any]:
    """Yields `step(text)`: a spinner line on a terminal, a plain stderr line otherwise."""
    if quiet:
        yield lambda _text: None
        return
    if sys.stderr.isatty():
        console = Console(stderr=True)
        with console.status(what) as status:
            yield lambda text: status.update(f"{what}: {text}")
        return
    typer.echo(f"{what}…", err=True)
    yield lambda text: typer.echo(f"{what}: {text}", err=True)


# -- tenants ---------------------------------------------------------------------------------


@tenants_app.command("create")
def tenants_create(
    tenant: Annotated[str, typer.Argument(help="Tenant id (lowercase, 3-63 characters)")],
    name: Annotated[str | None, typer.Option("--name", help="Display name")] = None,
    plan: Annotated[str | None, typer.Option("--plan", help="Price plan id (default: default)")] = None,
    region: Annotated[str | None, typer.Option("--region", help="Region of its resources")] = None,
    request_id: Annotated[
        str | None, typer.Option("--request-id", help="Idempotency key: a retried create is one create")
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Create (provision) a tenant; prints it, ACTIVE with its default bindings."""
    body: dict[str, Any] = {"tenantId": tenant}
    for key, value in (("displayName", name), ("pricePlanId", plan), ("region", region)):
        if value is not None:
            body[key] = value
    params = {"requestId": request_id} if request_id else None
    with Api(url, token, Role.PLATFORM_ADMIN) as api:
        _print(api.call("POST", f"{API}/admin/tenants", body=body, params=params))


@tenants_app.command("list")
def tenants_list(
    every: Annotated[bool, typer.Option("--all", help="Every page (progress on stderr)")] = False,
    page_size: Annotated[int, typer.Option("--page-size", min=1, max=1000)] = 100,
    page_token: Annotated[str | None, typer.Option("--page-token", help="Continue a listing")] = None,
    show_deleted: Annotated[bool, typer.Option("--show-deleted", help="Include DELETED tenants")] = False,
    quiet: QuietOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Tenants, one page (with nextPageToken) or, with --all, every page as one list."""
    params: dict[str, Any] = {"pageSize": page_size, "showDeleted": str(show_deleted).lower()}
    if page_token:
        params["pageToken"] = page_token
    with Api(url, token, Role.PLATFORM_ADMIN) as api:
        if not every:
            _print(api.call("GET", f"{API}/admin/tenants", params=params))
            return
        tenants: list[Any] = []
        with progress(quiet, "listing tenants") as step:
            page = 0
            while True:
                answer = api.call("GET", f"{API}/admin/tenants", params=params)
                tenants += answer.get("tenants", [])
                page += 1
                step(f"page {page}, {len(tenants)} tenants")
                if not answer.get("nextPageToken"):
                    break
                params["pageToken"] = answer["nextPageToken"]
        _print({"tenants": tenants})


@tenants_app.command("get")
def tenants_get(
    tenant: Annotated[str, typer.Argument(help="Tenant id")],
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """A tenant: state, bindings, plan, etag."""
    with Api(url, token, Role.PLATFORM_ADMIN) as api:
        _print(api.call("GET", f"{API}/tenants/{tenant}"))


@tenants_app.command("suspend")
def tenants_suspend(
    tenant: Annotated[str, typer.Argument(help="Tenant id")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept with the tenant)")] = "",
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Suspend a tenant: its data-plane calls are refused (403 TENANT_SUSPENDED) until resumed."""
    with Api(url, token, Role.PLATFORM_ADMIN) as api:
        _print(api.call("POST", f"{API}/admin/tenants/{tenant}:suspend", body={"reason": reason}))


@tenants_app.command("resume")
def tenants_resume(
    tenant: Annotated[str, typer.Argument(help="Tenant id")],
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Resume a suspended tenant."""
    with Api(url, token, Role.PLATFORM_ADMIN) as api:
        _print(api.call("POST", f"{API}/admin/tenants/{tenant}:resume", body={}))


@tenants_app.command("delete")
def tenants_delete(
    tenant: Annotated[str, typer.Argument(help="Tenant id")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
    etag: Annotated[
        str | None, typer.Option("--etag", help="Only if the tenant is still this version")
    ] = None,
    quiet: QuietOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Offboard a tenant: deprovision its resources and users, then DELETED (not reversible)."""
    if not yes and not typer.confirm(f"Delete tenant {tenant} and all its data?", err=True):
        raise typer.Exit(1)
    with Api(url, token, Role.PLATFORM_ADMIN) as api, progress(quiet, f"deleting {tenant}") as step:
        answer = api.call("DELETE", f"{API}/admin/tenants/{tenant}", params={"etag": etag} if etag else None)
        step(str(answer.get("state", "")).removeprefix("TENANT_STATE_").lower() or "done")
    _print(answer)


# -- usage and invoices ----------------------------------------------------------------------


def usage(
    tenant: Annotated[str, typer.Argument(help="Tenant id")],
    meter: Annotated[str, typer.Option("--meter", help="e.g. api_calls, llm_prompt_tokens, storage_bytes")],
    start: Annotated[str | None, typer.Option("--start", help="RFC 3339 time (default: month start)")] = None,
    end: Annotated[str | None, typer.Option("--end", help="RFC 3339 time (default: now)")] = None,
    window: Annotated[str | None, typer.Option("--window", help="Bucket, e.g. 3600s (default: one)")] = None,
    group_by: Annotated[
        list[str] | None, typer.Option("--group-by", help="Dimension to group by (repeatable)")
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """A tenant's usage of one meter, optionally bucketed and grouped."""
    params: dict[str, Any] = {"meter": meter}
    for key, value in (("startTime", start), ("endTime", end), ("window", window)):
        if value is not None:
            params[key] = value
    if group_by:
        params["groupBy"] = group_by
    with Api(url, token, Role.TENANT_ADMIN, tenant) as api:
        _print(api.call("GET", f"{API}/tenants/{tenant}/usage", params=params))


def invoice(
    tenant: Annotated[str, typer.Argument(help="Tenant id")],
    month: Annotated[str | None, typer.Argument(help="YYYY-MM (default: this month, UTC)")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """A tenant's invoice for a month: priced lines and total (a running month is provisional)."""
    month = month or datetime.now(UTC).strftime("%Y-%m")
    with Api(url, token, Role.TENANT_ADMIN, tenant) as api:
        _print(api.call("GET", f"{API}/tenants/{tenant}/invoices/{month}"))
