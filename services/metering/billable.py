"""Which api_calls an invoice bills, by the call's final gRPC status (the `status` dimension).

The rule: a call is billed when it reached the service and the service worked on it for the
tenant, or when it ended for a reason on the tenant's side. A call is not billed when the
platform failed it (our bug, our outage, our shutdown, our slowness) or refused it before doing
any work (limits, quotas, budgets, capabilities). Every call is still recorded with its status,
so the rule can change without losing data; the invoice applies it.
"""

from __future__ import annotations

# status -> (billed, why). Keep in step with README's "Billing" section.
STATUS_POLICY: dict[str, tuple[bool, str]] = {
    "OK": (True, "served"),
    "CANCELLED": (True, "the client stopped the call; the service worked until then"),
    "INVALID_ARGUMENT": (True, "the tenant's request was read and validated"),
    "NOT_FOUND": (True, "the service looked it up"),
    "ALREADY_EXISTS": (True, "the service looked it up"),
    "ABORTED": (True, "the tenant's own conflict (etag, transaction)"),
    "OUT_OF_RANGE": (True, "the tenant's request, served up to the range"),
    "FAILED_PRECONDITION": (True, "the tenant's configuration or state (binding, capability asked for)"),
    "PERMISSION_DENIED": (False, "refused before work (e.g. suspended tenant)"),
    "UNAUTHENTICATED": (False, "refused before work"),
    "RESOURCE_EXHAUSTED": (False, "refused by a limit, quota or budget before or instead of work"),
    "UNIMPLEMENTED": (False, "nothing was done"),
    "DEADLINE_EXCEEDED": (False, "the platform or its backend did not answer in time"),
    "UNAVAILABLE": (False, "the platform failed: backend down, usage spool down, or cut by a shutdown"),
    "INTERNAL": (False, "a platform bug"),
    "UNKNOWN": (False, "a platform bug"),
    "DATA_LOSS": (False, "a platform failure"),
}


def billable_status(status: str) -> bool:
    """Is an api_call with this status billed? An event without a status (recorded before
    statuses existed) is billed as it always was; an unknown name is not."""
    if status == "":
        return True
    entry = STATUS_POLICY.get(status)
    return entry is not None and entry[0]
