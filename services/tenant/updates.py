"""UpdateTenant's field mask: which paths may change and what they change to.

Paths: display_name, region, features, price_plan_id, cloud_provider, bindings (the whole set)
and bindings.object_store / bindings.item_store / bindings.llm (one binding); "*" means all.
Without a mask the implied mask of AIP-134 applies: the updatable fields the request populates,
so a PATCH of one field never blanks the others. tenant_id is immutable; output-only fields
(state, etag, times) are not paths. A mask naming a binding replaces it as given (an absent one
becomes the embedded default), and the result is validated like a new tenant's bindings.
"""

from __future__ import annotations

from typing import Any

from makoto.tenant.v1 import tenant_pb2

from services.common.errors import InvalidArgument
from services.tenant import bindings as binding_rules
from services.tenant import convert
from services.tenant.model import TenantRecord

FIELDS = ("display_name", "region", "features", "price_plan_id", "cloud_provider", "bindings")
BINDING_PATHS = {
    "bindings.object_store": "object_store",
    "bindings.item_store": "item_store",
    "bindings.llm": "llm",
}


def mask_paths(request: tenant_pb2.UpdateTenantRequest) -> list[str]:
    given = list(request.update_mask.paths)
    if not given:
        return _implied(request.tenant)
    problems: list[tuple[str, str]] = []
    paths: list[str] = []
    for i, path in enumerate(given):
        if path == "*":
            paths.extend(FIELDS)
        elif path in FIELDS or path in BINDING_PATHS:
            paths.append(path)
        elif path == "tenant_id":
            problems.append((f"update_mask.paths[{i}]", "tenant_id is immutable"))
        else:
            problems.append((f"update_mask.paths[{i}]", f"{path!r} is not an updatable field"))
    if problems:
        raise InvalidArgument("invalid update_mask", field_violations=problems)
    return list(dict.fromkeys(paths))


def _implied(tenant: tenant_pb2.Tenant) -> list[str]:
    populated = {
        "display_name": bool(tenant.display_name),
        "region": bool(tenant.region),
        "features": bool(tenant.features),
        "price_plan_id": bool(tenant.price_plan_id),
        "cloud_provider": tenant.cloud_provider != tenant_pb2.CLOUD_PROVIDER_UNSPECIFIED,
        "bindings": tenant.HasField("bindings"),
    }
    return [name for name in FIELDS if populated[name]]


def changes(current: TenantRecord, given: tenant_pb2.Tenant, paths: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in paths:
        if path == "display_name":
            out["display_name"] = given.display_name
        elif path == "region":
            out["region"] = given.region
        elif path == "features":
            out["features"] = convert.features(list(given.features))
        elif path == "price_plan_id":
            out["price_plan_id"] = given.price_plan_id
        elif path == "cloud_provider":
            out["cloud_provider"] = convert.cloud_provider(given.cloud_provider, "tenant.cloud_provider")
    binding_paths = [p for p in paths if p == "bindings" or p in BINDING_PATHS]
    if binding_paths:
        out["bindings"] = _bindings(current.bindings, given.bindings, binding_paths)
    return out


def _bindings(
    current: tenant_pb2.TenantBindings, given: tenant_pb2.TenantBindings, paths: list[str]
) -> tenant_pb2.TenantBindings:
    if "bindings" in paths:
        binding_rules.check_fields(given, "tenant.bindings")
        return binding_rules.with_defaults(given)
    merged = tenant_pb2.TenantBindings()
    merged.CopyFrom(current)
    checked = tenant_pb2.TenantBindings()
    for path in paths:
        name = BINDING_PATHS[path]
        merged.ClearField(name)
        if given.HasField(name):
            getattr(merged, name).CopyFrom(getattr(given, name))
            getattr(checked, name).CopyFrom(getattr(given, name))
    binding_rules.check_fields(checked, "tenant.bindings")
    return binding_rules.with_defaults(merged)
