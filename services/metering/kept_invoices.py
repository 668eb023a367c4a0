"""An Invoice as JSON for the kept_invoices table: amounts stay decimal strings (exact)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from services.metering.model import Invoice, InvoiceLine


def to_json(invoice: Invoice) -> dict[str, Any]:
    return {
        "tenant_id": invoice.tenant_id,
        "month": invoice.month,
        "currency": invoice.currency,
        "price_plan_id": invoice.price_plan_id,
        "lines": [
            {
                "meter": line.meter,
                "quantity": str(line.quantity),
                "unit": line.unit,
                "unit_price": str(line.unit_price),
                "amount": str(line.amount),
            }
            for line in invoice.lines
        ],
        "total": str(invoice.total),
        "final": invoice.final,
        "price_plan_effective_from_us": invoice.price_plan_effective_from_us,
    }


def from_json(data: dict[str, Any]) -> Invoice:
    return Invoice(
        tenant_id=data["tenant_id"],
        month=data["month"],
        currency=data["currency"],
        price_plan_id=data["price_plan_id"],
        lines=tuple(
            InvoiceLine(
                meter=line["meter"],
                quantity=Decimal(line["quantity"]),
                unit=line["unit"],
                unit_price=Decimal(line["unit_price"]),
                amount=Decimal(line["amount"]),
            )
            for line in data["lines"]
        ),
        total=Decimal(data["total"]),
        final=bool(data["final"]),
        price_plan_effective_from_us=int(data["price_plan_effective_from_us"]),
    )
