"""Data residency: a tenant's region is checked against where its bindings put its data, when
the tenant is created and whenever its region or bindings change (bind time).

The tenant's `region` is a cloud region (`ap-northeast-1`, `japaneast`) or a jurisdiction code
(`jp`, `us`, `eu`, ...): its residency zone. Every binding must show a location in that zone:

- LOCAL objects, SQLite items, LLM endpoint "": the platform's own, MAKOTO_PLATFORM_REGION;
- S3: `region`, else the region in an AWS endpoint host, else option `location` (S3-compatible);
- Azure Blob: option `location` (the storage account's region);
- DynamoDB: `region`, else the region in an AWS endpoint host;
- Cosmos DB: option `location` (the account's write region);
- PostgreSQL: option `location` (where the server runs);
- LLM on an AWS host (Bedrock): the region in the host;
- Azure OpenAI: the region of a regional host (`<region>.api.cognitive.microsoft.com`), else
  the binding's `region`;
- OpenAI, Anthropic: the binding's `region` only. Their API hosts name no region, so the binding
  must state the region its contract keeps data in (e.g. an EU data-residency project).

A binding that shows no location, or one the table below does not know, is refused: residency
that cannot be shown is not kept. The platform's own stores without MAKOTO_PLATFORM_REGION are
accepted in the development profile only (`make up` has no region to show). A tenant region
outside the table (free text before this check existed) only accepts locations equal to it.
No tenant region: nothing is checked.

Refusal: FAILED_PRECONDITION (the binding may be well formed; the tenant's region is the
precondition it fails), reason RESIDENCY_VIOLATION, a PreconditionFailure violation per binding
(type RESIDENCY_OUTSIDE_REGION or RESIDENCY_LOCATION_UNKNOWN, subject the field).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from google.protobuf import any_pb2
from google.rpc import error_details_pb2
from makoto.tenant.v1 import tenant_pb2

from services.common.errors import FailedPrecondition

B = tenant_pb2

# Cloud region -> jurisdiction. AWS and Azure names for the regions the platform serves.
JURISDICTION: dict[str, str] = {
    # Japan
    "ap-northeast-1": "jp",
    "ap-northeast-3": "jp",
    "japaneast": "jp",
    "japanwest": "jp",
    # United States
    "us-east-1": "us",
    "us-east-2": "us",
    "us-west-1": "us",
    "us-west-2": "us",
    "eastus": "us",
    "eastus2": "us",
    "westus": "us",
    "westus2": "us",
    "westus3": "us",
    "centralus": "us",
    # European Union
    "eu-west-1": "eu",
    "eu-west-3": "eu",
    "eu-central-1": "eu",
    "eu-north-1": "eu",
    "westeurope": "eu",
    "northeurope": "eu",
    "francecentral": "eu",
    "germanywestcentral": "eu",
    "swedencentral": "eu",
    # United Kingdom
    "eu-west-2": "uk",
    "uksouth": "uk",
    "ukwest": "uk",
    # Australia
    "ap-southeast-2": "au",
    "australiaeast": "au",
    "australiasoutheast": "au",
}
_CODES = frozenset(JURISDICTION.values())
_AWS_HOST = re.compile(r"(?:^|\.)(?P<region>[a-z]{2}(?:-gov)?-[a-z]+-\d)\.amazonaws\.com$")
_AZURE_REGIONAL_HOST = re.compile(r"^(?P<region>[a-z0-9]+)\.api\.cognitive\.microsoft\.com$")

OUTSIDE = "RESIDENCY_OUTSIDE_REGION"
UNKNOWN = "RESIDENCY_LOCATION_UNKNOWN"


@dataclass(frozen=True)
class ResidencyPolicy:
    """Where the platform's own stores and LLM endpoint are (MAKOTO_PLATFORM_REGION), and
    whether they pass unlocated (the development profile)."""

    platform_region: str = ""
    development: bool = True


def jurisdiction_of(location: str) -> str | None:
    value = location.strip().lower()
    if value in _CODES:
        return value
    return JURISDICTION.get(value.replace(" ", ""))


def _host(endpoint: str) -> str:
    try:
        return (urlsplit(endpoint).hostname or "") if endpoint else ""
    except ValueError:
        return ""


def _aws_region(endpoint: str) -> str:
    match = _AWS_HOST.search(_host(endpoint))
    return match.group("region") if match else ""


# (field, location); location "" = the binding shows none; None = the platform's own store.
Located = tuple[str, str | None]


def _object_location(store: tenant_pb2.ObjectStoreBinding, at: str) -> Located:
    if store.backend == B.OBJECT_BACKEND_LOCAL:
        return f"{at}.backend", None
    if store.backend == B.OBJECT_BACKEND_S3:
        if store.region:
            return f"{at}.region", store.region
        if region := _aws_region(store.endpoint):
            return f"{at}.endpoint", region
    return f"{at}.options[location]", store.options.get("location", "")


def _item_location(store: tenant_pb2.ItemStoreBinding, at: str) -> Located:
    if store.backend == B.ITEM_BACKEND_SQLITE:
        return f"{at}.backend", None
    if store.backend == B.ITEM_BACKEND_DYNAMODB:
        if store.region:
            return f"{at}.region", store.region
        if region := _aws_region(store.endpoint):
            return f"{at}.endpoint", region
        return f"{at}.region", ""
    return f"{at}.options[location]", store.options.get("location", "")


def _llm_location(llm: tenant_pb2.LlmBinding, at: str) -> Located:
    if not llm.endpoint:
        return f"{at}.endpoint", None  # the platform's own LLM endpoint
    if region := _aws_region(llm.endpoint):
        return f"{at}.endpoint", region
    if llm.provider == B.LLM_PROVIDER_AZURE_OPENAI:
        match = _AZURE_REGIONAL_HOST.match(_host(llm.endpoint))
        if match:
            return f"{at}.endpoint", match.group("region")
    return f"{at}.region", llm.region


def locations(bindings: tenant_pb2.TenantBindings, prefix: str) -> list[Located]:
    """(field, location) for every binding: absent bindings are the embedded defaults."""
    out: list[Located] = [
        _object_location(bindings.object_store, f"{prefix}.object_store")
        if bindings.HasField("object_store")
        else (f"{prefix}.object_store", None),
        _item_location(bindings.item_store, f"{prefix}.item_store")
        if bindings.HasField("item_store")
        else (f"{prefix}.item_store", None),
        _llm_location(bindings.llm, f"{prefix}.llm") if bindings.HasField("llm") else (f"{prefix}.llm", None),
    ]
    return out


class ResidencyViolation(FailedPrecondition):
    def __init__(self, region: str, problems: list[tuple[str, str, str]]) -> None:
        summary = "; ".join(f"{f}: {d}" for _, f, d in problems)
        super().__init__(
            f"bindings outside the tenant's region {region!r}: {summary}",
            reason="RESIDENCY_VIOLATION",
            metadata={"region": region, "bindings": ",".join(f for _, f, _ in problems)},
        )
        self.problems = problems

    def details(self) -> list[any_pb2.Any]:
        out = super().details()
        failure = error_details_pb2.PreconditionFailure(
            violations=[
                error_details_pb2.PreconditionFailure.Violation(type=kind, subject=field, description=text)
                for kind, field, text in self.problems
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(failure)
        out.append(packed)
        return out


def check(
    region: str,
    bindings: tenant_pb2.TenantBindings,
    prefix: str = "tenant.bindings",
    policy: ResidencyPolicy | None = None,
) -> None:
    """FAILED_PRECONDITION (reason RESIDENCY_VIOLATION) naming each binding whose location is
    outside the tenant's region or cannot be shown."""
    if not region:
        return
    policy = policy or ResidencyPolicy()
    home = jurisdiction_of(region)
    problems: list[tuple[str, str, str]] = []
    for field, found in locations(bindings, prefix):
        location = found
        if location is None:  # the platform's own store
            if not policy.platform_region:
                if policy.development:
                    continue
                problems.append(
                    (UNKNOWN, field, "the platform's own store has no region (set MAKOTO_PLATFORM_REGION)")
                )
                continue
            location = policy.platform_region
        if not location:
            problems.append((UNKNOWN, field, "names no location: residency cannot be shown"))
        elif home is None:
            # A region outside the table: only that very region can be shown to hold the data.
            if location.strip().lower() != region.strip().lower():
                problems.append(
                    (OUTSIDE, field, f"location {location!r} is not the tenant's region {region!r}")
                )
        elif (where := jurisdiction_of(location)) is None:
            problems.append(
                (UNKNOWN, field, f"location {location!r} is unknown: residency in {home} cannot be shown")
            )
        elif where != home:
            problems.append(
                (OUTSIDE, field, f"location {location!r} is in {where}, outside the tenant's region ({home})")
            )
    if problems:
        raise ResidencyViolation(region, problems)
