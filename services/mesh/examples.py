"""What `makoto up` prints once the mesh is healthy: endpoints and ready-to-paste examples."""

from __future__ import annotations

import shlex
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

from services.common.config import MeshSettings
from services.mesh.envoy_config import DESCRIPTOR_PATH


def _tool(name: str) -> str | None:
    """How to call a venv tool from the user's shell: on PATH, else the venv's script."""
    if shutil.which(name):
        return name
    script = Path(sys.executable).parent / name
    if not script.exists():
        return None
    try:
        return f"./{script.relative_to(Path.cwd())}"
    except ValueError:
        return shlex.quote(str(script))


def _makoto() -> str:
    return _tool("makoto") or f"{shlex.quote(sys.executable)} -m services.cli"


def _token_cmd(settings: MeshSettings) -> str:
    base = f"{_makoto()} token"
    if settings.home.resolve() != Path(".makoto").resolve():
        base += f" --home {shlex.quote(str(settings.home))}"
    return base


def banner(settings: MeshSettings, tenant: str = "acme") -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    base = f"http://{host}:{settings.envoy_port}"
    api = f"{base}/api/v1"
    token = _token_cmd(settings)
    month = datetime.now(UTC).strftime("%Y-%m")
    try:
        protoset = str(DESCRIPTOR_PATH.relative_to(Path.cwd()))
    except ValueError:
        protoset = shlex.quote(str(DESCRIPTOR_PATH))
    grpcurl = _tool("grpcurl") or "grpcurl"
    # A service's own port speaks mTLS: the operator's certificate, the service's name to verify.
    certs = settings.tls_path
    direct = (
        f"-cacert {shlex.quote(str(certs / 'ca.pem'))} -cert {shlex.quote(str(certs / 'operator.pem'))} "
        f"-key {shlex.quote(str(certs / 'operator.key'))} -servername storage.makoto.internal"
        if settings.tls
        else "-plaintext"
    )
    auth = '-H "Authorization: Bearer $TOKEN"'
    json_ct = "-H 'Content-Type: application/json'"
    item = f"{api}/tenants/{tenant}/collections/notes/partitions/p1/items/s1"
    lines = [
        "",
        "MAKOTO mesh is up.",
        "",
        f"  REST + gRPC (Envoy)  {base}        health: {base}/healthz",
        f"  Envoy admin          unix:{settings.admin_socket_path}  (mode 0600: this user only)",
        f"  TenantService        {settings.address('tenant')}   (direct gRPC: token required;"
        " reflection + health open)",
        f"  StorageService       {', '.join(settings.replica_addresses('storage'))}",
        f"  LLMService           {', '.join(settings.replica_addresses('llm'))}",
        f"  MeteringService      {settings.address('metering')}",
        f"  LLM simulator        {settings.simulator_url}",
        f"  home / logs          {settings.home}  /  {settings.home / 'logs'}",
        "",
        "Try it from another shell:",
        "",
        "  # tokens (dev issuer): the operator, and an admin of tenant 'acme'",
        f"  ADMIN=$({token} --role platform-admin)",
        f"  TOKEN=$({token} --tenant {tenant} --role tenant-admin)",
        "",
        "  # create a tenant (platform-admin)",
        f'  curl -s -X POST {api}/admin/tenants -H "Authorization: Bearer $ADMIN" {json_ct} \\',
        f'       -d \'{{"tenantId": "{tenant}", "displayName": "Acme Corp"}}\'',
        "",
        "  # put and get an object (raw bytes, Content-Type kept)",
        f"  curl -s -X PUT {api}/tenants/{tenant}/objects/docs/hello.txt {auth} \\",
        "       -H 'Content-Type: text/plain' --data-binary 'hello, makoto'",
        f"  curl -s {api}/tenants/{tenant}/objects/docs/hello.txt {auth}",
        "",
        "  # put and get an item",
        f"  curl -s -X PUT {item} {auth} {json_ct} \\",
        '       -d \'{"attributes": {"title": {"stringValue": "first"}, "count": {"intValue": "42"}}}\'',
        f"  curl -s {item} {auth}",
        "",
        "  # chat completion (LLM simulator behind the tenant's OpenAI binding), plain and streamed (SSE)",
        f"  curl -s -X POST {api}/tenants/{tenant}/chat/completions {auth} {json_ct} \\",
        '       -d \'{"messages": [{"role": "user", "content": "Hello!"}]}\'',
        f"  curl -sN -X POST {api}/tenants/{tenant}/chat/completions:stream {auth} {json_ct} \\",
        '       -d \'{"messages": [{"role": "user", "content": "Tell me a story"}]}\'',
        "",
        "  # usage and this month's invoice",
        f"  curl -s '{api}/tenants/{tenant}/usage?meter=api_calls' {auth}",
        f"  curl -s {api}/tenants/{tenant}/invoices/{month} {auth}",
        "",
        "  # gRPC: reflection on a service port, calls through Envoy with the descriptor set",
        f"  {grpcurl} {direct} {settings.address('storage')} list",
        f"  {grpcurl} {direct} {settings.address('storage')} describe makoto.storage.v1.StorageService",
        f"  {grpcurl} -plaintext -protoset {protoset} {auth.replace('Authorization', 'authorization')} \\",
        f'       -d \'{{"tenant_id": "{tenant}", "collection": "notes", "partition_key": "p1", '
        f'"sort_key": "s1"}}\' \\',
        f"       {host}:{settings.envoy_port} makoto.storage.v1.StorageService/GetItem",
        "",
        "Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)
