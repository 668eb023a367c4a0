"""`makoto tokens revoke <tenant> <jti>`: end one token of a tenant (RevokeToken, through Envoy).

Every service refuses the token within a second (UNAUTHENTICATED, TOKEN_REVOKED); the call is
in the tenant's audit log. A tenant-admin token of that tenant or a platform-admin token is
needed (--token / $MAKOTO_TOKEN; without one a dev platform-admin token is minted)."""

from __future__ import annotations

from typing import Annotated

import typer

from services.cli_api import TokenOption, UrlOption, call_api
from services.common.identity import Role

tokens_app = typer.Typer(help="Tokens: revoke one by its jti.", no_args_is_help=True)


@tokens_app.command("revoke")
def tokens_revoke(
    tenant: Annotated[str, typer.Argument(help="Tenant id (the token's tenant claim)")],
    jti: Annotated[str, typer.Argument(help="The token's `jti` claim")],
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Revoke the tenant's token with this jti; prints the answer (revokedUntil) as JSON."""
    call_api(
        "POST",
        f"/api/v1/auth/tenants/{tenant}/tokens:revoke",
        url=url,
        token=token,
        role=Role.PLATFORM_ADMIN,
        tenant=None,
        body={"tokenId": jti},
    )
