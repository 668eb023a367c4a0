"""The `makoto` CLI: dev tokens and the `up` banner."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from services.cli import app
from services.common.identity import Role
from services.common.jwt_verify import JwtVerifier
from services.mesh.examples import banner
from tests.support import make_settings

runner = CliRunner()


def test_token_for_a_tenant_role_verifies(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    result = runner.invoke(
        app,
        [
            "token",
            "--home",
            str(settings.home),
            "--tenant",
            "acme",
            "--role",
            "tenant-admin",
            "--features",
            "a,b",
        ],
    )
    assert result.exit_code == 0, result.output
    principal = JwtVerifier(settings.jwt_providers()).verify(result.output.strip())
    assert principal.role is Role.TENANT_ADMIN
    assert principal.tenant_id == "acme"
    assert principal.features == {"a", "b"}


def test_platform_admin_token_needs_no_tenant(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    result = runner.invoke(
        app, ["token", "--home", str(settings.home), "--role", "platform-admin", "--ttl", "60"]
    )
    assert result.exit_code == 0, result.output
    principal = JwtVerifier(settings.jwt_providers()).verify(result.output.strip())
    assert principal.role is Role.PLATFORM_ADMIN and principal.tenant_id is None


def test_tenant_role_without_tenant_is_refused(tmp_path: Path) -> None:
    result = runner.invoke(app, ["token", "--home", str(tmp_path), "--role", "member"])
    assert result.exit_code != 0
    assert "--tenant" in result.output


def test_banner_has_working_examples(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    text = banner(settings)
    base = f"http://127.0.0.1:{settings.envoy_port}"
    assert f"{base}/healthz" in text
    for fragment in (
        "--role platform-admin",
        "--tenant acme --role tenant-admin",
        f"-X POST {base}/api/v1/admin/tenants",
        f"{base}/api/v1/tenants/acme/objects/docs/hello.txt",
        f"{base}/api/v1/tenants/acme/collections/notes/partitions/p1/items/s1",
        f"{base}/api/v1/tenants/acme/chat/completions:stream",
        f"{base}/api/v1/tenants/acme/usage?meter=api_calls",
        f"{base}/api/v1/tenants/acme/invoices/",
        # A service port speaks mTLS: the operator's certificate, the service's name.
        f"-cert {settings.tls_path / 'operator.pem'} -key {settings.tls_path / 'operator.key'}",
        f"-servername storage.makoto.internal {settings.address('storage')} list",
        f"-servername storage.makoto.internal {settings.address('storage')} describe "
        "makoto.storage.v1.StorageService",
        "makoto.storage.v1.StorageService/GetItem",
        str(settings.home),
    ):
        assert fragment in text, fragment
