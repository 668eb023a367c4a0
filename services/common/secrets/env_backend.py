"""env://VAR: a value from the process environment (containers, CI)."""

from __future__ import annotations

import os
import re

from pydantic import SecretStr

from services.common.errors import FailedPrecondition
from services.common.secrets.ref import SecretRef, not_found

_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")


class EnvSecretBackend:
    async def get(self, ref: SecretRef) -> SecretStr:
        if not _VAR.match(ref.path):
            raise FailedPrecondition(
                f"secret reference {ref}: not a valid variable name", reason="SECRET_REF_INVALID"
            )
        value = os.environ.get(ref.path)
        if value is None:
            raise not_found(ref, "is not set")
        return SecretStr(value)

    def __repr__(self) -> str:
        return "EnvSecretBackend()"
