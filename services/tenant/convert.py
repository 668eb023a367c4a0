"""Between the contract (makoto.tenant.v1 messages) and the domain records."""

from __future__ import annotations

from makoto.tenant.v1 import tenant_pb2

from services.common.errors import InvalidArgument
from services.tenant.api_keys import ApiKeyRecord
from services.tenant.model import CloudProvider, State, TenantRecord, TenantSpec, UserRecord, UserRole

# Enum values by name: message constructors take the names, and the names need no casts.
_STATE_TO_PROTO = {s: f"TENANT_STATE_{s}" for s in State}
_PROVIDER_TO_PROTO = {p: f"CLOUD_PROVIDER_{p}" for p in CloudProvider}
_PROVIDER_FROM_PROTO = {tenant_pb2.CloudProvider.Value(v): k for k, v in _PROVIDER_TO_PROTO.items()}
_ROLE_TO_PROTO = {r: f"USER_ROLE_{r}" for r in UserRole}
_ROLE_FROM_PROTO = {tenant_pb2.UserRole.Value(v): k for k, v in _ROLE_TO_PROTO.items()}


def cloud_provider(value: int, field: str) -> CloudProvider:
    """UNSPECIFIED means LOCAL (the embedded defaults)."""
    if value == tenant_pb2.CLOUD_PROVIDER_UNSPECIFIED:
        return CloudProvider.LOCAL
    try:
        return _PROVIDER_FROM_PROTO[value]
    except KeyError:
        raise InvalidArgument(
            "unknown cloud_provider", field_violations=[(field, "not a known cloud provider")]
        ) from None


def user_role(value: int) -> UserRole:
    # protovalidate already refused UNSPECIFIED and undefined values.
    return _ROLE_FROM_PROTO[value]


def features(values: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Order kept, duplicates dropped."""
    return tuple(dict.fromkeys(values))


def spec_from_proto(tenant: tenant_pb2.Tenant) -> TenantSpec:
    bindings = tenant_pb2.TenantBindings()
    bindings.CopyFrom(tenant.bindings)
    return TenantSpec(
        tenant_id=tenant.tenant_id,
        display_name=tenant.display_name,
        cloud_provider=cloud_provider(tenant.cloud_provider, "tenant.cloud_provider"),
        region=tenant.region,
        features=features(list(tenant.features)),
        bindings=bindings,
        price_plan_id=tenant.price_plan_id,
    )


def tenant_to_proto(tenant: TenantRecord) -> tenant_pb2.Tenant:
    out = tenant_pb2.Tenant(
        tenant_id=tenant.tenant_id,
        display_name=tenant.display_name,
        state=_STATE_TO_PROTO[tenant.state],
        cloud_provider=_PROVIDER_TO_PROTO[tenant.cloud_provider],
        region=tenant.region,
        features=list(tenant.features),
        bindings=tenant.bindings,
        price_plan_id=tenant.price_plan_id,
        etag=tenant.etag,
        state_reason=tenant.state_reason,
    )
    if tenant.create_time is not None:
        out.create_time.FromDatetime(tenant.create_time)
    if tenant.update_time is not None:
        out.update_time.FromDatetime(tenant.update_time)
    return out


def state_to_proto(state: State) -> str:
    return _STATE_TO_PROTO[state]


def user_to_proto(user: UserRecord) -> tenant_pb2.TenantUser:
    out = tenant_pb2.TenantUser(
        user_id=user.user_id, tenant_id=user.tenant_id, email=user.email, role=_ROLE_TO_PROTO[user.role]
    )
    out.create_time.FromDatetime(user.create_time)
    return out


def api_key_to_proto(key: ApiKeyRecord) -> tenant_pb2.ApiKey:
    out = tenant_pb2.ApiKey(
        key_id=key.key_id,
        tenant_id=key.tenant_id,
        display_name=key.display_name,
        role=_ROLE_TO_PROTO[key.role],
        methods=list(key.methods),
        created_by=key.created_by,
    )
    out.create_time.FromDatetime(key.create_time)
    out.expire_time.FromDatetime(key.expire_time)
    if key.revoke_time is not None:
        out.revoke_time.FromDatetime(key.revoke_time)
    return out
