"""The invoice export CLI (`python -m services.metering.export`, README "Plans with history") run
as an operator runs it -- a separate process with only the mesh's environment -- against a real
MeteringService (SQLite and PostgreSQL): its JSON and CSV are the invoice GetInvoice answers,
exact decimals and all; a bad tenant, month or token is a clear error on stderr, nothing on
stdout, and a non-zero exit."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import sys
from datetime import timedelta
from decimal import Decimal

from makoto.metering.v1 import metering_pb2

from services.common.dev_issuer import mint_token
from services.common.identity import Role
from tests.unit.metering.conftest import Metering, new_tenant
from tests.unit.metering.test_service import APR, event, invoice, record

PYTHON = sys.executable


async def export(m: Metering, *args: str, token: str | None = None) -> tuple[int, str, str]:
    """Exit code, stdout, stderr of the CLI in a child process (asynchronously: the
    MeteringService it talks to runs on this test's event loop)."""
    env = {
        **os.environ,
        "MAKOTO_HOME": str(m.settings.home),
        "MAKOTO_TLS_DIR": str(m.settings.tls_dir),
        "MAKOTO_METERING_PORT": str(m.settings.metering_port),
        "MAKOTO_HOST": m.settings.host,
    }
    env.pop("MAKOTO_TOKEN", None)
    if token is not None:
        env["MAKOTO_TOKEN"] = token
    proc = await asyncio.create_subprocess_exec(
        PYTHON,
        "-m",
        "services.metering.export",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def line_tuples(inv: metering_pb2.Invoice) -> list[tuple[str, str, str, str, str]]:
    return [(li.meter, li.quantity, li.unit, li.unit_price, li.amount) for li in inv.line_items]


async def test_json_and_csv_exports_are_the_invoice(metering: Metering) -> None:
    tenant = new_tenant()
    at = APR + timedelta(days=3)
    await record(
        metering,
        [
            event(f"{tenant}-calls", tenant, "api_calls", at, 1234, {"status": "OK"}),
            event(f"{tenant}-refused", tenant, "api_calls", at, 7, {"status": "RESOURCE_EXHAUSTED"}),
            event(f"{tenant}-prompt", tenant, "llm_prompt_tokens", at, 98765),
            event(f"{tenant}-completion", tenant, "llm_completion_tokens", at, 4321),
        ],
    )
    expected = await invoice(metering, tenant, "2025-04", role=Role.PLATFORM_ADMIN)
    assert expected.final and Decimal(expected.total) > 0
    by_meter = {li.meter: li for li in expected.line_items}
    assert by_meter["api_calls"].quantity == "1234"  # the refused calls are not billed

    code, out, err = await export(metering, "--tenant", tenant, "--month", "2025-04", "--format", "json")
    assert code == 0, err
    body = json.loads(out)
    assert {k: body[k] for k in ("tenant_id", "month", "currency", "price_plan_id", "final", "total")} == {
        "tenant_id": tenant,
        "month": "2025-04",
        "currency": expected.currency,
        "price_plan_id": expected.price_plan_id,
        "final": True,
        "total": expected.total,
    }
    assert [
        (li["meter"], li["quantity"], li["unit"], li["unit_price"], li["amount"]) for li in body["lines"]
    ] == line_tuples(expected)
    # Exact decimal strings: the lines add up to the total, no float anywhere.
    assert sum(Decimal(li["amount"]) for li in body["lines"]) == Decimal(body["total"])
    assert all(isinstance(li["amount"], str) and isinstance(li["quantity"], str) for li in body["lines"])

    code, out, err = await export(metering, "--tenant", tenant, "--month", "2025-04", "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    *items, total = rows
    assert [
        (r["meter"], r["quantity"], r["unit"], r["unit_price"], r["amount"]) for r in items
    ] == line_tuples(expected)
    assert all(
        (r["tenant_id"], r["month"], r["currency"], r["final"])
        == (tenant, "2025-04", expected.currency, "true")
        for r in rows
    )
    assert (total["meter"], total["amount"]) == ("TOTAL", expected.total)

    # A month without usage is an invoice too (zero lines), not an error.
    code, out, err = await export(metering, "--tenant", tenant, "--month", "2024-01")
    assert code == 0, err
    empty = json.loads(out)
    assert empty["month"] == "2024-01" and Decimal(empty["total"]) == 0
    assert all(Decimal(li["quantity"]) == 0 for li in empty["lines"]), empty


async def test_a_wrong_tenant_month_or_token_is_a_clear_error(metering: Metering) -> None:
    tenant = new_tenant()
    cases = [
        (("--tenant", tenant, "--month", "2025-13"), "INVALID_ARGUMENT", "month"),
        (("--tenant", tenant, "--month", "April"), "INVALID_ARGUMENT", "month"),
        (("--tenant", "Not A Tenant!", "--month", "2025-04"), "INVALID_ARGUMENT", "tenant_id"),
    ]
    for args, code_name, field in cases:
        code, out, err = await export(metering, *args)
        assert code == 1, (args, out, err)
        assert out == "", out
        assert err.startswith(f"error: {code_name}: ") and field in err, err
    # Another tenant's member token (MAKOTO_TOKEN) may not read this tenant's invoice.
    other = mint_token(metering.settings, role=Role.MEMBER, tenant_id=new_tenant())
    code, out, err = await export(metering, "--tenant", tenant, "--month", "2025-04", token=other)
    assert (code, out) == (1, "") and err.startswith("error: PERMISSION_DENIED: "), err
    # Usage errors: argparse's exit 2 and its message.
    code, out, err = await export(metering, "--tenant", tenant)
    assert code == 2 and out == "" and "--month" in err, err
    code, out, err = await export(metering, "--tenant", tenant, "--month", "2025-04", "--format", "xml")
    assert code == 2 and out == "" and "invalid choice" in err, err
