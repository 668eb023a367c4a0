"""Invoices exported as JSON and CSV, from the Invoice any client gets from GetInvoice.

Amounts, quantities and prices stay the exact decimal strings the service computed (never
floats), so an export re-imports to the same numbers and a recomputation of a closed month
(which uses the plan version in force at its start) reproduces it byte for byte.

    python -m services.metering.export --tenant acme --month 2025-04 --format csv

(platform-admin token from MAKOTO_TOKEN, else minted with the local dev issuer.)
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import sys

import grpc
from makoto.metering.v1 import metering_pb2, metering_pb2_grpc

from services.common import tls
from services.common.config import MeshSettings

CSV_COLUMNS = (
    "tenant_id",
    "month",
    "currency",
    "price_plan_id",
    "final",
    "meter",
    "quantity",
    "unit",
    "unit_price",
    "amount",
)


def invoice_json(invoice: metering_pb2.Invoice) -> str:
    body = {
        "tenant_id": invoice.tenant_id,
        "month": invoice.month,
        "currency": invoice.currency,
        "price_plan_id": invoice.price_plan_id,
        "final": invoice.final,
        "lines": [
            {
                "meter": li.meter,
                "quantity": li.quantity,
                "unit": li.unit,
                "unit_price": li.unit_price,
                "amount": li.amount,
            }
            for li in invoice.line_items
        ],
        "total": invoice.total,
    }
    return json.dumps(body, indent=2, sort_keys=False) + "\n"


def invoice_csv(invoice: metering_pb2.Invoice) -> str:
    """One row per line item, then a TOTAL row (meter "TOTAL", amount = the invoice total)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    head = (
        invoice.tenant_id,
        invoice.month,
        invoice.currency,
        invoice.price_plan_id,
        str(invoice.final).lower(),
    )
    for li in invoice.line_items:
        writer.writerow((*head, li.meter, li.quantity, li.unit, li.unit_price, li.amount))
    writer.writerow((*head, "TOTAL", "", "", "", invoice.total))
    return out.getvalue()


async def _fetch(settings: MeshSettings, token: str, tenant: str, month: str) -> metering_pb2.Invoice:
    # An operator's tool on the mesh's machine: the `operator` certificate (public methods only).
    async with tls.open_channel(settings, "metering", identity=tls.OPERATOR) as channel:
        stub = metering_pb2_grpc.MeteringServiceStub(channel)
        reply: metering_pb2.Invoice = await stub.GetInvoice(
            metering_pb2.GetInvoiceRequest(tenant_id=tenant, month=month),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=30,
        )
        return reply


def main(argv: list[str] | None = None) -> int:
    from services.common.dev_issuer import mint_token
    from services.common.identity import Role

    parser = argparse.ArgumentParser(description="Export one tenant's invoice as JSON or CSV.")
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--month", required=True, help="YYYY-MM")
    parser.add_argument("--format", choices=("json", "csv"), default="json")
    args = parser.parse_args(argv)
    settings = MeshSettings()
    token = os.environ.get("MAKOTO_TOKEN") or mint_token(settings, role=Role.PLATFORM_ADMIN, tenant_id=None)
    try:
        invoice = asyncio.run(_fetch(settings, token, args.tenant, args.month))
    except grpc.aio.AioRpcError as err:
        print(f"error: {err.code().name}: {err.details()}", file=sys.stderr)
        return 1
    sys.stdout.write(invoice_json(invoice) if args.format == "json" else invoice_csv(invoice))
    return 0


if __name__ == "__main__":
    sys.exit(main())
