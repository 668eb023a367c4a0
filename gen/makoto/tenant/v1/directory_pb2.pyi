from buf.validate import validate_pb2 as _validate_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from makoto.api.v1 import access_pb2 as _access_pb2
from makoto.api.v1 import rules_pb2 as _rules_pb2
from makoto.tenant.v1 import tenant_pb2 as _tenant_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResolveTenantRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class ResolveTenantResponse(_message.Message):
    __slots__ = ("tenant_id", "state", "bindings", "features", "price_plan_id", "etag")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    BINDINGS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    PRICE_PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    state: _tenant_pb2.TenantState
    bindings: _tenant_pb2.TenantBindings
    features: _containers.RepeatedScalarFieldContainer[str]
    price_plan_id: str
    etag: str
    def __init__(self, tenant_id: _Optional[str] = ..., state: _Optional[_Union[_tenant_pb2.TenantState, str]] = ..., bindings: _Optional[_Union[_tenant_pb2.TenantBindings, _Mapping]] = ..., features: _Optional[_Iterable[str]] = ..., price_plan_id: _Optional[str] = ..., etag: _Optional[str] = ...) -> None: ...

class CheckTenantUserRequest(_message.Message):
    __slots__ = ("tenant_id", "user_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    user_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class CheckTenantUserResponse(_message.Message):
    __slots__ = ("member",)
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    member: bool
    def __init__(self, member: _Optional[bool] = ...) -> None: ...
