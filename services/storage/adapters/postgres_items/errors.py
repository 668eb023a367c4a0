"""PostgreSQL (asyncpg) errors -> the service's error language, by SQLSTATE class.

Messages name the binding (host, database, schema), never the password; server messages are
not passed on (they can quote values).
"""

from __future__ import annotations

import asyncpg  # type: ignore[import-untyped]  # ships no type information

from services.common.errors import (
    Aborted,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    MakotoError,
    ResourceExhausted,
    Unavailable,
)
from services.storage.adapters.item_errors import credentials_rejected, not_provisioned

_META = {"binding": "item_store", "backend": "postgres"}


def translate(exc: BaseException, binding: str) -> MakotoError:
    if isinstance(exc, MakotoError):
        return exc
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        if state.startswith("28"):  # invalid authorization: wrong password, unknown or NOLOGIN role
            return credentials_rejected(binding, "postgres", "PostgreSQL", f"SQLSTATE {state}")
        if state == "3D000":
            return FailedPrecondition(
                f"{binding}: the database does not exist", reason="BINDING_INVALID", metadata=_META
            )
        if state in ("42P01", "3F000"):  # undefined table / schema
            return not_provisioned(binding, "postgres", "the item table")
        if state == "42501":
            return FailedPrecondition(
                f"{binding}: the binding's role lacks privileges on the schema",
                reason="BINDING_PERMISSION_DENIED",
                metadata=_META,
            )
        if state in ("40001", "40P01"):  # serialization failure, deadlock
            return Aborted("transaction conflict with a concurrent write", reason="TRANSACTION_CONFLICT")
        if state.startswith("53"):  # insufficient resources (e.g. too many connections)
            return ResourceExhausted(
                f"{binding}: PostgreSQL is out of resources (SQLSTATE {state})",
                retry_after_seconds=1.0,
                reason="BACKEND_EXHAUSTED",
                metadata=_META,
            )
        if state == "57014":
            return DeadlineExceeded("PostgreSQL cancelled the statement (timeout)")
        if state.startswith(("57", "08")):  # shutdown, connection exceptions
            return Unavailable(f"{binding}: PostgreSQL unavailable (SQLSTATE {state})", metadata=_META)
        if state.startswith(("22", "54")):  # data exception, program limit (e.g. key too long)
            return InvalidArgument(f"PostgreSQL refused the value (SQLSTATE {state})")
        return Internal("unexpected PostgreSQL error")
    # refused, reset, timeouts, closed pool; a connection the server killed mid-exchange can also
    # surface as asyncpg's InternalClientError (protocol state confused)
    if isinstance(exc, (OSError, asyncpg.InterfaceError, asyncpg.InternalClientError)):
        return Unavailable(f"{binding}: PostgreSQL unreachable", metadata=_META)
    return Internal("unexpected PostgreSQL error")
