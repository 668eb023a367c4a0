from google.api import annotations_pb2 as _annotations_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from makoto.api.v1 import access_pb2 as _access_pb2
from makoto.storage.v1 import items_pb2 as _items_pb2
from makoto.storage.v1 import objects_pb2 as _objects_pb2
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor
