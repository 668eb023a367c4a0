import datetime

from buf.validate import validate_pb2 as _validate_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from google.longrunning import operations_pb2 as _operations_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from makoto.api.v1 import access_pb2 as _access_pb2
from makoto.api.v1 import rules_pb2 as _rules_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TenantState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TENANT_STATE_UNSPECIFIED: _ClassVar[TenantState]
    TENANT_STATE_PROVISIONING: _ClassVar[TenantState]
    TENANT_STATE_ACTIVE: _ClassVar[TenantState]
    TENANT_STATE_SUSPENDED: _ClassVar[TenantState]
    TENANT_STATE_FAILED: _ClassVar[TenantState]
    TENANT_STATE_DELETING: _ClassVar[TenantState]
    TENANT_STATE_DELETED: _ClassVar[TenantState]
    TENANT_STATE_OFFBOARDING: _ClassVar[TenantState]

class CloudProvider(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CLOUD_PROVIDER_UNSPECIFIED: _ClassVar[CloudProvider]
    CLOUD_PROVIDER_LOCAL: _ClassVar[CloudProvider]
    CLOUD_PROVIDER_AWS: _ClassVar[CloudProvider]
    CLOUD_PROVIDER_AZURE: _ClassVar[CloudProvider]
    CLOUD_PROVIDER_CUSTOM: _ClassVar[CloudProvider]

class ObjectBackend(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OBJECT_BACKEND_UNSPECIFIED: _ClassVar[ObjectBackend]
    OBJECT_BACKEND_LOCAL: _ClassVar[ObjectBackend]
    OBJECT_BACKEND_S3: _ClassVar[ObjectBackend]
    OBJECT_BACKEND_AZURE_BLOB: _ClassVar[ObjectBackend]

class ItemBackend(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ITEM_BACKEND_UNSPECIFIED: _ClassVar[ItemBackend]
    ITEM_BACKEND_SQLITE: _ClassVar[ItemBackend]
    ITEM_BACKEND_POSTGRES: _ClassVar[ItemBackend]
    ITEM_BACKEND_DYNAMODB: _ClassVar[ItemBackend]
    ITEM_BACKEND_COSMOS: _ClassVar[ItemBackend]

class LlmProvider(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LLM_PROVIDER_UNSPECIFIED: _ClassVar[LlmProvider]
    LLM_PROVIDER_OPENAI: _ClassVar[LlmProvider]
    LLM_PROVIDER_AZURE_OPENAI: _ClassVar[LlmProvider]
    LLM_PROVIDER_ANTHROPIC: _ClassVar[LlmProvider]

class UserRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USER_ROLE_UNSPECIFIED: _ClassVar[UserRole]
    USER_ROLE_TENANT_ADMIN: _ClassVar[UserRole]
    USER_ROLE_MEMBER: _ClassVar[UserRole]

class StepState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STEP_STATE_UNSPECIFIED: _ClassVar[StepState]
    STEP_STATE_STARTED: _ClassVar[StepState]
    STEP_STATE_DONE: _ClassVar[StepState]
    STEP_STATE_FAILED: _ClassVar[StepState]
    STEP_STATE_REMOVED: _ClassVar[StepState]
TENANT_STATE_UNSPECIFIED: TenantState
TENANT_STATE_PROVISIONING: TenantState
TENANT_STATE_ACTIVE: TenantState
TENANT_STATE_SUSPENDED: TenantState
TENANT_STATE_FAILED: TenantState
TENANT_STATE_DELETING: TenantState
TENANT_STATE_DELETED: TenantState
TENANT_STATE_OFFBOARDING: TenantState
CLOUD_PROVIDER_UNSPECIFIED: CloudProvider
CLOUD_PROVIDER_LOCAL: CloudProvider
CLOUD_PROVIDER_AWS: CloudProvider
CLOUD_PROVIDER_AZURE: CloudProvider
CLOUD_PROVIDER_CUSTOM: CloudProvider
OBJECT_BACKEND_UNSPECIFIED: ObjectBackend
OBJECT_BACKEND_LOCAL: ObjectBackend
OBJECT_BACKEND_S3: ObjectBackend
OBJECT_BACKEND_AZURE_BLOB: ObjectBackend
ITEM_BACKEND_UNSPECIFIED: ItemBackend
ITEM_BACKEND_SQLITE: ItemBackend
ITEM_BACKEND_POSTGRES: ItemBackend
ITEM_BACKEND_DYNAMODB: ItemBackend
ITEM_BACKEND_COSMOS: ItemBackend
LLM_PROVIDER_UNSPECIFIED: LlmProvider
LLM_PROVIDER_OPENAI: LlmProvider
LLM_PROVIDER_AZURE_OPENAI: LlmProvider
LLM_PROVIDER_ANTHROPIC: LlmProvider
USER_ROLE_UNSPECIFIED: UserRole
USER_ROLE_TENANT_ADMIN: UserRole
USER_ROLE_MEMBER: UserRole
STEP_STATE_UNSPECIFIED: StepState
STEP_STATE_STARTED: StepState
STEP_STATE_DONE: StepState
STEP_STATE_FAILED: StepState
STEP_STATE_REMOVED: StepState

class Tenant(_message.Message):
    __slots__ = ("tenant_id", "display_name", "state", "cloud_provider", "region", "features", "bindings", "price_plan_id", "create_time", "update_time", "etag", "state_reason")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CLOUD_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    BINDINGS_FIELD_NUMBER: _ClassVar[int]
    PRICE_PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    STATE_REASON_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    display_name: str
    state: TenantState
    cloud_provider: CloudProvider
    region: str
    features: _containers.RepeatedScalarFieldContainer[str]
    bindings: TenantBindings
    price_plan_id: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    etag: str
    state_reason: str
    def __init__(self, tenant_id: _Optional[str] = ..., display_name: _Optional[str] = ..., state: _Optional[_Union[TenantState, str]] = ..., cloud_provider: _Optional[_Union[CloudProvider, str]] = ..., region: _Optional[str] = ..., features: _Optional[_Iterable[str]] = ..., bindings: _Optional[_Union[TenantBindings, _Mapping]] = ..., price_plan_id: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ..., state_reason: _Optional[str] = ...) -> None: ...

class TenantBindings(_message.Message):
    __slots__ = ("object_store", "item_store", "llm")
    OBJECT_STORE_FIELD_NUMBER: _ClassVar[int]
    ITEM_STORE_FIELD_NUMBER: _ClassVar[int]
    LLM_FIELD_NUMBER: _ClassVar[int]
    object_store: ObjectStoreBinding
    item_store: ItemStoreBinding
    llm: LlmBinding
    def __init__(self, object_store: _Optional[_Union[ObjectStoreBinding, _Mapping]] = ..., item_store: _Optional[_Union[ItemStoreBinding, _Mapping]] = ..., llm: _Optional[_Union[LlmBinding, _Mapping]] = ...) -> None: ...

class ObjectStoreBinding(_message.Message):
    __slots__ = ("backend", "endpoint", "region", "bucket", "path_style", "credentials_secret_ref", "options")
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    PATH_STYLE_FIELD_NUMBER: _ClassVar[int]
    CREDENTIALS_SECRET_REF_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    backend: ObjectBackend
    endpoint: str
    region: str
    bucket: str
    path_style: bool
    credentials_secret_ref: str
    options: _containers.ScalarMap[str, str]
    def __init__(self, backend: _Optional[_Union[ObjectBackend, str]] = ..., endpoint: _Optional[str] = ..., region: _Optional[str] = ..., bucket: _Optional[str] = ..., path_style: _Optional[bool] = ..., credentials_secret_ref: _Optional[str] = ..., options: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ItemStoreBinding(_message.Message):
    __slots__ = ("backend", "endpoint", "region", "database", "credentials_secret_ref", "options")
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    DATABASE_FIELD_NUMBER: _ClassVar[int]
    CREDENTIALS_SECRET_REF_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    backend: ItemBackend
    endpoint: str
    region: str
    database: str
    credentials_secret_ref: str
    options: _containers.ScalarMap[str, str]
    def __init__(self, backend: _Optional[_Union[ItemBackend, str]] = ..., endpoint: _Optional[str] = ..., region: _Optional[str] = ..., database: _Optional[str] = ..., credentials_secret_ref: _Optional[str] = ..., options: _Optional[_Mapping[str, str]] = ...) -> None: ...

class LlmBinding(_message.Message):
    __slots__ = ("provider", "endpoint", "api_version", "chat_model", "embedding_model", "image_model", "api_key_secret_ref", "rpm_limit", "tpm_limit", "region")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHAT_MODEL_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_MODEL_FIELD_NUMBER: _ClassVar[int]
    API_KEY_SECRET_REF_FIELD_NUMBER: _ClassVar[int]
    RPM_LIMIT_FIELD_NUMBER: _ClassVar[int]
    TPM_LIMIT_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    provider: LlmProvider
    endpoint: str
    api_version: str
    chat_model: str
    embedding_model: str
    image_model: str
    api_key_secret_ref: str
    rpm_limit: int
    tpm_limit: int
    region: str
    def __init__(self, provider: _Optional[_Union[LlmProvider, str]] = ..., endpoint: _Optional[str] = ..., api_version: _Optional[str] = ..., chat_model: _Optional[str] = ..., embedding_model: _Optional[str] = ..., image_model: _Optional[str] = ..., api_key_secret_ref: _Optional[str] = ..., rpm_limit: _Optional[int] = ..., tpm_limit: _Optional[int] = ..., region: _Optional[str] = ...) -> None: ...

class CreateTenantRequest(_message.Message):
    __slots__ = ("tenant", "request_id")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    tenant: Tenant
    request_id: str
    def __init__(self, tenant: _Optional[_Union[Tenant, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetTenantRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class ListTenantsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "show_deleted")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SHOW_DELETED_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    show_deleted: bool
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., show_deleted: _Optional[bool] = ...) -> None: ...

class ListTenantsResponse(_message.Message):
    __slots__ = ("tenants", "next_page_token")
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenants: _containers.RepeatedCompositeFieldContainer[Tenant]
    next_page_token: str
    def __init__(self, tenants: _Optional[_Iterable[_Union[Tenant, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateTenantRequest(_message.Message):
    __slots__ = ("tenant", "update_mask")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    tenant: Tenant
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, tenant: _Optional[_Union[Tenant, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteTenantRequest(_message.Message):
    __slots__ = ("tenant_id", "etag")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    etag: str
    def __init__(self, tenant_id: _Optional[str] = ..., etag: _Optional[str] = ...) -> None: ...

class OffboardTenantRequest(_message.Message):
    __slots__ = ("tenant_id", "etag")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    etag: str
    def __init__(self, tenant_id: _Optional[str] = ..., etag: _Optional[str] = ...) -> None: ...

class DownloadExportRequest(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: str
    def __init__(self, token: _Optional[str] = ...) -> None: ...

class SuspendTenantRequest(_message.Message):
    __slots__ = ("tenant_id", "reason")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    reason: str
    def __init__(self, tenant_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ResumeTenantRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class TenantUser(_message.Message):
    __slots__ = ("user_id", "tenant_id", "email", "role", "create_time")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    tenant_id: str
    email: str
    role: UserRole
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, user_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., email: _Optional[str] = ..., role: _Optional[_Union[UserRole, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class InviteUserRequest(_message.Message):
    __slots__ = ("tenant_id", "user")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    user: TenantUser
    def __init__(self, tenant_id: _Optional[str] = ..., user: _Optional[_Union[TenantUser, _Mapping]] = ...) -> None: ...

class ListUsersRequest(_message.Message):
    __slots__ = ("tenant_id", "page_size", "page_token")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    page_size: int
    page_token: str
    def __init__(self, tenant_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListUsersResponse(_message.Message):
    __slots__ = ("users", "next_page_token")
    USERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    users: _containers.RepeatedCompositeFieldContainer[TenantUser]
    next_page_token: str
    def __init__(self, users: _Optional[_Iterable[_Union[TenantUser, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RemoveUserRequest(_message.Message):
    __slots__ = ("tenant_id", "user_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    user_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class GetOperationRequest(_message.Message):
    __slots__ = ("tenant_id", "operation_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATION_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    operation_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., operation_id: _Optional[str] = ...) -> None: ...

class ListOperationsRequest(_message.Message):
    __slots__ = ("tenant_id", "page_size", "page_token")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    page_size: int
    page_token: str
    def __init__(self, tenant_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ProvisioningStep(_message.Message):
    __slots__ = ("name", "state", "reason", "preexisting", "update_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PREEXISTING_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: StepState
    reason: str
    preexisting: bool
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., state: _Optional[_Union[StepState, str]] = ..., reason: _Optional[str] = ..., preexisting: _Optional[bool] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ProvisioningMetadata(_message.Message):
    __slots__ = ("tenant_id", "kind", "steps", "failed_step", "create_time", "update_time", "export")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    FAILED_STEP_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPORT_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    kind: str
    steps: _containers.RepeatedCompositeFieldContainer[ProvisioningStep]
    failed_step: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    export: ExportInfo
    def __init__(self, tenant_id: _Optional[str] = ..., kind: _Optional[str] = ..., steps: _Optional[_Iterable[_Union[ProvisioningStep, _Mapping]]] = ..., failed_step: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., export: _Optional[_Union[ExportInfo, _Mapping]] = ...) -> None: ...

class ExportInfo(_message.Message):
    __slots__ = ("export_id", "size_bytes", "sha256", "object_count", "item_count", "download_uri", "download_expire_time")
    EXPORT_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    OBJECT_COUNT_FIELD_NUMBER: _ClassVar[int]
    ITEM_COUNT_FIELD_NUMBER: _ClassVar[int]
    DOWNLOAD_URI_FIELD_NUMBER: _ClassVar[int]
    DOWNLOAD_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    export_id: str
    size_bytes: int
    sha256: str
    object_count: int
    item_count: int
    download_uri: str
    download_expire_time: _timestamp_pb2.Timestamp
    def __init__(self, export_id: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., object_count: _Optional[int] = ..., item_count: _Optional[int] = ..., download_uri: _Optional[str] = ..., download_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ApiKey(_message.Message):
    __slots__ = ("key_id", "tenant_id", "display_name", "role", "methods", "expire_time", "create_time", "revoke_time", "created_by")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    METHODS_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    REVOKE_TIME_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    tenant_id: str
    display_name: str
    role: UserRole
    methods: _containers.RepeatedScalarFieldContainer[str]
    expire_time: _timestamp_pb2.Timestamp
    create_time: _timestamp_pb2.Timestamp
    revoke_time: _timestamp_pb2.Timestamp
    created_by: str
    def __init__(self, key_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., display_name: _Optional[str] = ..., role: _Optional[_Union[UserRole, str]] = ..., methods: _Optional[_Iterable[str]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoke_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_by: _Optional[str] = ...) -> None: ...

class CreateApiKeyRequest(_message.Message):
    __slots__ = ("tenant_id", "api_key")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    api_key: ApiKey
    def __init__(self, tenant_id: _Optional[str] = ..., api_key: _Optional[_Union[ApiKey, _Mapping]] = ...) -> None: ...

class CreateApiKeyResponse(_message.Message):
    __slots__ = ("api_key", "secret")
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    api_key: ApiKey
    secret: str
    def __init__(self, api_key: _Optional[_Union[ApiKey, _Mapping]] = ..., secret: _Optional[str] = ...) -> None: ...

class ListApiKeysRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class ListApiKeysResponse(_message.Message):
    __slots__ = ("api_keys",)
    API_KEYS_FIELD_NUMBER: _ClassVar[int]
    api_keys: _containers.RepeatedCompositeFieldContainer[ApiKey]
    def __init__(self, api_keys: _Optional[_Iterable[_Union[ApiKey, _Mapping]]] = ...) -> None: ...

class RevokeApiKeyRequest(_message.Message):
    __slots__ = ("tenant_id", "key_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    key_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., key_id: _Optional[str] = ...) -> None: ...

class RevokeTokenRequest(_message.Message):
    __slots__ = ("tenant_id", "token_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    token_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., token_id: _Optional[str] = ...) -> None: ...

class RevokeTokenResponse(_message.Message):
    __slots__ = ("tenant_id", "token_id", "revoked_until")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    REVOKED_UNTIL_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    token_id: str
    revoked_until: _timestamp_pb2.Timestamp
    def __init__(self, tenant_id: _Optional[str] = ..., token_id: _Optional[str] = ..., revoked_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ExchangeApiKeyRequest(_message.Message):
    __slots__ = ("api_key",)
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    api_key: str
    def __init__(self, api_key: _Optional[str] = ...) -> None: ...

class ExchangeApiKeyResponse(_message.Message):
    __slots__ = ("access_token", "token_type", "expires_in")
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_FIELD_NUMBER: _ClassVar[int]
    access_token: str
    token_type: str
    expires_in: int
    def __init__(self, access_token: _Optional[str] = ..., token_type: _Optional[str] = ..., expires_in: _Optional[int] = ...) -> None: ...
