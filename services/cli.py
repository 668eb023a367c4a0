"""`makoto`: run the mesh (`up`), one server (`serve`), mint dev tokens (`token`), render Envoy's config,
and operate tenants through the API (`tenants`, `usage`, `invoice`, `limits`, `plans`)."""

from __future__ import annotations

import os
import runpy
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from services.cli_api import limits_app, plans_app
from services.cli_audit import audit_app
from services.cli_ops import invoice, tenants_app, usage
from services.cli_tokens import tokens_app
from services.common.config import MeshSettings
from services.common.identity import Role, service_audience

app = typer.Typer(
    help="MAKOTO platform mesh: Tenant, Storage, LLM and Metering services behind Envoy.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(limits_app, name="limits")
app.add_typer(plans_app, name="plans")
app.add_typer(tenants_app, name="tenants")
app.command("usage")(usage)
app.command("invoice")(invoice)
app.add_typer(audit_app, name="audit")
app.add_typer(tokens_app, name="tokens")


HomeOption = Annotated[
    Path | None, typer.Option("--home", help="Mesh home (keys, data, logs); default $MAKOTO_HOME or .makoto")
]


def _settings(home: Path | None = None, **overrides: object) -> MeshSettings:
    values: dict[str, object] = {k: v for k, v in overrides.items() if v is not None}
    if home is not None:
        values["home"] = home
    return MeshSettings(**values)  # type: ignore[arg-type]


@app.command()
def up(
    home: HomeOption = None,
    port: Annotated[
        int | None, typer.Option("--port", help="Envoy port (REST and gRPC); default 8080")
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Address every server binds; default 127.0.0.1")
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for GET /healthz = 200")
    ] = 60.0,
) -> None:
    """Start the four services, the LLM simulator and Envoy; Ctrl-C stops everything."""
    import asyncio

    from services.mesh.launcher import run_up

    settings = _settings(home, envoy_port=port, host=host)
    code = asyncio.run(run_up(settings, ready_timeout=timeout, say=lambda s: print(s, flush=True)))
    raise typer.Exit(code)


class RoleChoice(StrEnum):
    platform_admin = "platform-admin"
    tenant_admin = "tenant-admin"
    member = "member"
    service = "service"


@app.command()
def token(
    role: Annotated[RoleChoice, typer.Option("--role", help="Role claim")] = RoleChoice.member,
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Tenant claim (tenant-admin, member)")
    ] = None,
    ttl: Annotated[
        int | None, typer.Option("--ttl", help="Lifetime in seconds (default: the role's maximum)")
    ] = None,
    for_service: Annotated[
        list[str] | None,
        typer.Option("--for-service", help="Service a `service` token is for (repeatable)"),
    ] = None,
    features: Annotated[str, typer.Option("--features", help="Comma-separated feature claims")] = "",
    subject: Annotated[str | None, typer.Option("--subject", help="sub claim")] = None,
    home: HomeOption = None,
) -> None:
    """Print a JWT signed by the dev issuer (creates the signing key on first use)."""
    from services.common.dev_issuer import mint_token

    the_role = Role(role.value)
    if the_role in (Role.TENANT_ADMIN, Role.MEMBER) and not tenant:
        raise typer.BadParameter(f"--role {the_role} needs --tenant", param_hint="--tenant")
    if the_role == Role.SERVICE and not for_service:
        raise typer.BadParameter("--role service needs --for-service", param_hint="--for-service")
    settings = _settings(home)
    feature_list = [f.strip() for f in features.split(",") if f.strip()]
    longest = (
        settings.max_service_token_ttl_seconds if the_role == Role.SERVICE else settings.max_token_ttl_seconds
    )
    jwt = mint_token(
        settings,
        role=the_role,
        tenant_id=tenant,
        subject=subject,
        features=feature_list or None,
        ttl_seconds=ttl or longest,
        audience=[service_audience(settings.audience, s) for s in for_service] if for_service else None,
    )
    typer.echo(jwt)


class ServerName(StrEnum):
    tenant = "tenant"
    storage = "storage"
    llm = "llm"
    metering = "metering"
    simulator = "simulator"


@app.command()
def serve(
    name: Annotated[ServerName, typer.Argument(help="Which server to run in this process")],
    home: HomeOption = None,
) -> None:
    """Run one server in the foreground (what `makoto up` starts as a child)."""
    from services.common.server import private_files

    private_files()
    settings = _settings(home)
    if home is not None:
        os.environ["MAKOTO_HOME"] = str(home)
    if name is ServerName.simulator:
        from services.common.dev_issuer import ensure_signing_key
        from services.mesh.launcher import seed_simulator_key

        ensure_signing_key(settings)
        os.environ["MAKOTO_SIMULATOR_API_KEY"] = seed_simulator_key(settings)
        sys.argv = ["services.llm.simulator", "--host", settings.host, "--port", str(settings.simulator_port)]
        runpy.run_module("services.llm.simulator", run_name="__main__", alter_sys=True)
        return
    sys.argv = [f"services.{name.value}"]
    runpy.run_module(f"services.{name.value}", run_name="__main__", alter_sys=True)


@app.command("envoy-config")
def envoy_config(
    home: HomeOption = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write here instead of <home>/envoy.yaml")] = None,
    reference: Annotated[
        bool, typer.Option("--reference", help="Rewrite the committed envoy/envoy.yaml")
    ] = False,
) -> None:
    """Render Envoy's configuration from the settings."""
    from services.mesh import envoy_config as render

    if reference:
        render.REFERENCE_PATH.write_text(render.reference_config())
        typer.echo(str(render.REFERENCE_PATH))
        return
    typer.echo(str(render.write_config(_settings(home), out)))


if __name__ == "__main__":
    app()
