from buf.validate import validate_pb2 as _validate_pb2
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor
TENANT_ID_FIELD_NUMBER: _ClassVar[int]
tenant_id: _descriptor.FieldDescriptor
METER_NAME_FIELD_NUMBER: _ClassVar[int]
meter_name: _descriptor.FieldDescriptor
