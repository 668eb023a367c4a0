"""Data residency: a tenant's region is checked against where its bindings put its data, when
the tenant is created and whenever its region or bindings change.

The tenant's `region` is a cloud region (`ap-northeast-1`, `japaneast`) or a jurisdiction code
(`jp`, `us`, `eu`, ...). Each binding's location must fall in the same jurisdiction:
- object store: `region` (S3), else the region in an AWS endpoint host, else option `location`
  (Azure Blob: the storage account's location);
- item store: `region` (DynamoDB), else the AWS endpoint host, else option `location` (Cosmos DB:
  the account's write region);
- LLM: the region in an AWS endpoint host (Bedrock-style regional endpoints); OpenAI, Anthropic
  and Azure OpenAI endpoints do not say their region in the URL and are not checked yet.
A binding that names no location is accepted (the embedded defaults live with the platform); a
location the table below does not know is refused: residency that cannot be shown is not kept.
A tenant region outside the table (free text before this check existed) only accepts bindings
located in exactly that region.
No tenant region: nothing is checked (the behaviour before this module).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from makoto.tenant.v1 import tenant_pb2

from services.common.errors import InvalidArgument

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


def jurisdiction_of(location: str) -> str | None:
    value = location.strip().lower()
    if value in _CODES:
        return value
    return JURISDICTION.get(value.replace(" ", ""))


def _aws_region(endpoint: str) -> str:
    host = (urlsplit(endpoint).hostname or "") if endpoint else ""
    match = _AWS_HOST.search(host)
    return match.group("region") if match else ""


def locations(bindings: tenant_pb2.TenantBindings, prefix: str) -> list[tuple[str, str]]:
    """(field, location) for every binding that says where it keeps data."""
    out: list[tuple[str, str]] = []
    stores: tuple[tuple[str, tenant_pb2.ObjectStoreBinding | tenant_pb2.ItemStoreBinding], ...] = (
        ("object_store", bindings.object_store),
        ("item_store", bindings.item_store),
    )
    for name, store in stores:
        # The first that says: the region field, an AWS endpoint's region, Azure's location option.
        if store.region:
            out.append((f"{prefix}.{name}.region", store.region))
        elif region := _aws_region(store.endpoint):
            out.append((f"{prefix}.{name}.endpoint", region))
        elif store.options.get("location"):
            out.append((f"{prefix}.{name}.options[location]", store.options["location"]))
    if region := _aws_region(bindings.llm.endpoint):
        out.append((f"{prefix}.llm.endpoint", region))
    return out


def check(region: str, bindings: tenant_pb2.TenantBindings, prefix: str = "tenant.bindings") -> None:
    """INVALID_ARGUMENT (reason RESIDENCY_VIOLATION) naming each binding outside the tenant's region."""
    if not region:
        return
    home = jurisdiction_of(region)
    problems: list[tuple[str, str]] = []
    for field, location in locations(bindings, prefix):
        where = jurisdiction_of(location)
        if home is None:
            # A region outside the table: only that very region can be shown to hold the data.
            if location.strip().lower() != region.strip().lower():
                problems.append((field, f"location {location!r} is not the tenant's region {region!r}"))
        elif where is None:
            problems.append((field, f"location {location!r} is unknown: residency in {home} cannot be shown"))
        elif where != home:
            problems.append(
                (field, f"location {location!r} is in {where}, outside the tenant's region ({home})")
            )
    if problems:
        summary = "; ".join(f"{f}: {d}" for f, d in problems)
        raise InvalidArgument(
            f"bindings outside the tenant's region: {summary}",
            field_violations=problems,
            reason="RESIDENCY_VIOLATION",
        )
