"""Which secret references a tenant's binding may name: only the tenant's own.

- `local://tenants/<tenant>/<name>` (the dev store),
- `aws-sm://[<prefix>/]makoto/<tenant>/<name>` or a Secrets Manager ARN whose secret name is
  `[<prefix>/]makoto/<tenant>/<name>`,
- `azure-kv://<vault>/<tenant>-<name>[/<version>]`.

`env://` names variables of the service process: platform configuration only, never a tenant
binding. A refused reference answers FAILED_PRECONDITION (reason SECRET_REF_OUT_OF_SCOPE) that
names the field and the accepted forms but never the reference itself, to anyone: the admin
who sent it knows it, and nobody else learns which secrets exist.
"""

from __future__ import annotations

from services.common.errors import FailedPrecondition
from services.common.secrets.ref import AWS_SM_ARN_PREFIX

REASON = "SECRET_REF_OUT_OF_SCOPE"


def accepted_forms(tenant_id: str) -> str:
    return (
        f"local://tenants/{tenant_id}/<name>, aws-sm://[<prefix>/]makoto/{tenant_id}/<name> "
        f"or azure-kv://<vault>/{tenant_id}-<name>"
    )


def in_scope(ref: str, tenant_id: str) -> bool:
    """True when `ref` names a secret of `tenant_id` in one of the tenant-scoped forms."""
    body = ref.split("#", 1)[0]  # `name#json_key` selects one field of a JSON secret
    if body.startswith("local://"):
        return _scoped_path(body.removeprefix("local://"), ("tenants", tenant_id))
    if body.startswith(AWS_SM_ARN_PREFIX):
        # arn:aws:secretsmanager:<region>:<account>:secret:<name>
        _, sep, name = body.partition(":secret:")
        return bool(sep) and _aws_name(name, tenant_id)
    if body.startswith("aws-sm://"):
        return _aws_name(body.removeprefix("aws-sm://"), tenant_id)
    if body.startswith("azure-kv://"):
        parts = body.removeprefix("azure-kv://").split("/")
        return (
            len(parts) in (2, 3)
            and all(parts)
            and parts[1].startswith(f"{tenant_id}-")
            and len(parts[1]) > len(tenant_id) + 1
        )
    return False  # env:// and every other scheme


def _scoped_path(path: str, head: tuple[str, ...]) -> bool:
    segments = path.split("/")
    if any(s in ("", ".", "..") for s in segments):
        return False
    return len(segments) > len(head) and tuple(segments[: len(head)]) == head


def _aws_name(name: str, tenant_id: str) -> bool:
    segments = name.split("/")
    if any(s in ("", ".", "..") for s in segments):
        return False
    for i in range(len(segments) - 2):
        if segments[i] == "makoto" and segments[i + 1] == tenant_id:
            return True
    return False


def check(ref: str, tenant_id: str, field: str, *, platform_refs: frozenset[str] = frozenset()) -> None:
    """FAILED_PRECONDITION unless `ref` is empty, the tenant's own, or one of `platform_refs`
    (the platform's defaults a binding may keep, e.g. the simulator's key)."""
    if not ref or ref in platform_refs or in_scope(ref, tenant_id):
        return
    why = (
        "env:// references are platform configuration, not tenant bindings"
        if ref.startswith("env://")
        else f"the secret reference is not in tenant {tenant_id}'s scope"
    )
    raise FailedPrecondition(
        f"{field}: {why}; use {accepted_forms(tenant_id)}",
        reason=REASON,
        metadata={"field": field},
    )
