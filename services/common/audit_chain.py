"""The audit log's hash chain, shared by MeteringService (which appends) and `makoto audit
verify` (which checks what the API returns, independently of the server).

Each record's hash is SHA-256 over a canonical JSON of its fields plus the previous record's
hash (64 zeros for the first), so changing any field of a stored record, removing one from the
middle or reordering them breaks every hash after it. Removing records from the END cannot be
seen from the chain alone: keep the head hash `verify` prints somewhere else (a ticket, a
second store) and compare later.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64
# The fields a hash covers, in this order (names as in the AuditRecord message).
FIELDS = (
    "tenant_id",
    "seq",
    "event_id",
    "time_us",
    "source",
    "principal",
    "role",
    "method",
    "resource",
    "outcome",
    "api_key_id",
    "prev_hash",
)


def record_hash(fields: Mapping[str, Any]) -> str:
    canonical = json.dumps(
        [str(fields.get(name, "")) for name in FIELDS], separators=(",", ":"), ensure_ascii=True
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Verdict:
    ok: bool
    records: int
    head_hash: str
    # First record that does not fit (its seq), and why.
    bad_seq: int | None = None
    reason: str = ""


def verify(tenant_id: str, records: Iterable[Mapping[str, Any]]) -> Verdict:
    """Check a tenant's whole chain, oldest first, as the API returns it."""
    prev, count = GENESIS, 0
    for record in records:
        seq = int(record["seq"])
        count += 1
        if seq != count:
            return Verdict(
                False, count - 1, prev, seq, f"expected record {count}, found {seq}: records missing"
            )
        if record["prev_hash"] != prev:
            return Verdict(
                False, count - 1, prev, seq, "prev_hash does not match: a record before it changed or is gone"
            )
        if record_hash({**record, "tenant_id": tenant_id}) != record["hash"]:
            return Verdict(
                False, count - 1, prev, seq, "hash does not match its fields: the record was changed"
            )
        prev = str(record["hash"])
    return Verdict(True, count, prev)
