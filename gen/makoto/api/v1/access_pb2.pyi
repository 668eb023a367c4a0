from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_PLATFORM_ADMIN: _ClassVar[Role]
    ROLE_TENANT_ADMIN: _ClassVar[Role]
    ROLE_MEMBER: _ClassVar[Role]
    ROLE_SERVICE: _ClassVar[Role]

class RateClass(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RATE_CLASS_UNSPECIFIED: _ClassVar[RateClass]
    RATE_CLASS_READS: _ClassVar[RateClass]
    RATE_CLASS_WRITES: _ClassVar[RateClass]
    RATE_CLASS_LLM: _ClassVar[RateClass]
ROLE_UNSPECIFIED: Role
ROLE_PLATFORM_ADMIN: Role
ROLE_TENANT_ADMIN: Role
ROLE_MEMBER: Role
ROLE_SERVICE: Role
RATE_CLASS_UNSPECIFIED: RateClass
RATE_CLASS_READS: RateClass
RATE_CLASS_WRITES: RateClass
RATE_CLASS_LLM: RateClass
ACCESS_FIELD_NUMBER: _ClassVar[int]
access: _descriptor.FieldDescriptor

class AccessRule(_message.Message):
    __slots__ = ("roles", "any_tenant", "tenant_field", "internal", "rate_class", "public", "feature")
    ROLES_FIELD_NUMBER: _ClassVar[int]
    ANY_TENANT_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_FIELD_NUMBER: _ClassVar[int]
    INTERNAL_FIELD_NUMBER: _ClassVar[int]
    RATE_CLASS_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    roles: _containers.RepeatedScalarFieldContainer[Role]
    any_tenant: _containers.RepeatedScalarFieldContainer[Role]
    tenant_field: str
    internal: bool
    rate_class: RateClass
    public: bool
    feature: str
    def __init__(self, roles: _Optional[_Iterable[_Union[Role, str]]] = ..., any_tenant: _Optional[_Iterable[_Union[Role, str]]] = ..., tenant_field: _Optional[str] = ..., internal: _Optional[bool] = ..., rate_class: _Optional[_Union[RateClass, str]] = ..., public: _Optional[bool] = ..., feature: _Optional[str] = ...) -> None: ...
