"""Secret references and the port every secret backend implements."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from pydantic import SecretStr

from services.common.errors import FailedPrecondition

_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]{0,31})://(.+)$")
# AWS Secrets Manager ARNs are accepted as references as they are.
AWS_SM_ARN_PREFIX = "arn:aws:secretsmanager:"


@dataclass(frozen=True)
class SecretRef:
    scheme: str
    path: str

    def __str__(self) -> str:
        return self.path if self.path.startswith(AWS_SM_ARN_PREFIX) else f"{self.scheme}://{self.path}"


class SecretBackend(Protocol):
    """One secret store. Raises FailedPrecondition naming the reference when it cannot answer."""

    async def get(self, ref: SecretRef) -> SecretStr: ...


def parse_ref(ref: str) -> SecretRef:
    if ref.startswith(AWS_SM_ARN_PREFIX):
        return SecretRef("aws-sm", ref)
    match = _SCHEME.match(ref)
    if match is None:
        # Not echoed: a malformed "reference" is sometimes the secret itself, pasted by mistake.
        raise FailedPrecondition(
            "secret reference is not of the form scheme://name", reason="SECRET_REF_INVALID"
        )
    return SecretRef(match.group(1), match.group(2))


def not_found(ref: SecretRef, what: str = "not found") -> FailedPrecondition:
    return FailedPrecondition(
        f"secret {ref} {what}", reason="SECRET_NOT_FOUND", metadata={"secret_ref": str(ref)}
    )
