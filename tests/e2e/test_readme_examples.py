"""The examples `makoto up` prints (services/mesh/examples.py) work as printed: this test takes
the banner from the launcher's own output, runs every command with bash from the repository
root (the real `makoto token`, curl and grpcurl), and checks each answer. A printed command this
test does not know fails it, so the banner and its test cannot drift apart."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from tests.e2e.conftest import REPO_ROOT, RunningMesh

pytestmark = pytest.mark.e2e

TENANT = "acme"  # the tenant the banner's examples use


def printed_commands(banner: str) -> list[str]:
    """Shell commands of the banner's "Try it" section, continuation lines joined."""
    section = banner.split("Try it from another shell:", 1)[1].split("Ctrl-C stops everything.", 1)[0]
    commands: list[str] = []
    pending = ""
    for raw in section.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending = f"{pending} {line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        commands.append(pending)
        pending = ""
    assert not pending, "a continued line never ended"
    return commands


def run(command: str, env: dict[str, str]) -> str:
    out = subprocess.run(
        ["bash", "-c", command], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, (command, out.returncode, out.stderr)
    return out.stdout


def sse_text(stdout: str) -> tuple[str, dict[str, Any]]:
    events = [json.loads(line[len("data: ") :]) for line in stdout.splitlines() if line.startswith("data: ")]
    assert events, stdout
    return "".join(e.get("delta", "") for e in events), events[-1]


def test_the_printed_examples_work(mesh: RunningMesh) -> None:
    assert shutil.which("curl"), "curl is needed to run the printed examples"
    banner = mesh.launcher_log.read_text()
    assert "MAKOTO mesh is up." in banner
    commands = printed_commands(banner)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKOTO_")}

    def created(out: str) -> None:
        tenant = json.loads(out)
        assert tenant["tenantId"] == TENANT and tenant["displayName"] == "Acme Corp"
        assert tenant["state"] == "TENANT_STATE_ACTIVE"

    def put_object(out: str) -> None:
        meta = json.loads(out)
        assert meta["key"] == "docs/hello.txt" and meta["contentType"] == "text/plain"
        assert meta["sha256"] == hashlib.sha256(b"hello, makoto").hexdigest()

    def item(out: str) -> None:
        got = json.loads(out)
        assert got["attributes"] == {"title": {"stringValue": "first"}, "count": {"intValue": "42"}}
        assert got["etag"]

    def chat(out: str) -> None:
        answer = json.loads(out)
        assert answer["choices"][0]["message"]["content"] == "Echo: Hello!"
        assert int(answer["usage"]["totalTokens"]) > 0

    def stream(out: str) -> None:
        text, last = sse_text(out)
        assert text == "Echo: Tell me a story"
        assert int(last["usage"]["completionTokens"]) > 0

    def invoice(out: str) -> None:
        bill = json.loads(out)
        assert bill["tenantId"] == TENANT and bill["currency"] == "USD"
        lines = {line["meter"]: line for line in bill["lineItems"]}
        assert int(lines["api_calls"]["quantity"]) > 0
        assert Decimal(bill["total"]) == sum(Decimal(line["amount"]) for line in bill["lineItems"])

    def grpc_list(out: str) -> None:
        assert "makoto.storage.v1.StorageService" in out.split()

    def grpc_describe(out: str) -> None:
        assert out.startswith("makoto.storage.v1.StorageService is a service:")
        assert "rpc GetItem" in out

    def grpc_get_item(out: str) -> None:
        item(out)
        assert json.loads(out)["sortKey"] == "s1"

    # (pattern on the printed command, what its output must show)
    checks: list[tuple[str, Callable[[str], None]]] = [
        (r"^ADMIN=\$\(\S*makoto token .*--role platform-admin\)$", ignore),
        (r"^TOKEN=\$\(\S*makoto token .*--tenant acme --role tenant-admin\)$", ignore),
        (r"^curl -s -X POST \S+/api/v1/admin/tenants ", created),
        (r"^curl -s -X PUT \S+/objects/docs/hello.txt ", put_object),
        (r"^curl -s \S+/objects/docs/hello.txt ", lambda out: assert_equal(out, "hello, makoto")),
        (r"^curl -s -X PUT \S+/items/s1 ", item),
        (r"^curl -s \S+/items/s1 ", item),
        (r"^curl -s -X POST \S+/chat/completions ", chat),
        (r"^curl -sN -X POST \S+/chat/completions:stream ", stream),
        (r"^curl -s '\S+/usage\?meter=api_calls' ", ignore),  # polled below
        (r"^curl -s \S+/invoices/\d{4}-\d{2} ", invoice),
        # A service port: mTLS with the operator's certificate (makoto up runs TLS by default).
        (r"^\S*grpcurl -cacert \S+ -cert \S+ -key \S+ -servername \S+ \S+ list$", grpc_list),
        (
            r"^\S*grpcurl -cacert \S+ -cert \S+ -key \S+ -servername \S+ \S+ describe "
            r"makoto.storage.v1.StorageService$",
            grpc_describe,
        ),
        (r"^\S*grpcurl -plaintext -protoset \S+ .*StorageService/GetItem$", grpc_get_item),
    ]
    assert len(commands) == len(checks), commands
    for command, (pattern, check) in zip(commands, checks, strict=True):
        assert re.search(pattern, command), (pattern, command)
        if command.startswith(("ADMIN=", "TOKEN=")):
            # The token commands set shell variables the later commands use.
            var = command.split("=", 1)[0]
            value = run(f'{command} && printf %s "${var}"', env)
            assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+", value), value
            env[var] = value
            continue
        out = run(command, env)
        if "/usage?meter=api_calls" in command:
            # Usage arrives through the services' spools: the same command shows it shortly.
            deadline = time.monotonic() + 15
            while not json.loads(out)["rows"]:
                assert time.monotonic() < deadline, out
                time.sleep(0.2)
                out = run(command, env)
            usage = json.loads(out)
            assert usage["meter"] == "api_calls"
            assert int(usage["rows"][0]["value"]) > 0
            continue
        check(out)


def assert_equal(out: str, expected: str) -> None:
    assert out == expected


def ignore(out: str) -> None:
    """Checked in the loop itself."""
