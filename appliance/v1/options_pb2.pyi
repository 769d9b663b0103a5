from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor

class Access(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCESS_TOKEN: _ClassVar[Access]
    ACCESS_PUBLIC: _ClassVar[Access]
    ACCESS_OPTIONAL: _ClassVar[Access]
    ACCESS_SESSION: _ClassVar[Access]
    ACCESS_ADMIN: _ClassVar[Access]
    ACCESS_SERVICE: _ClassVar[Access]

class Transport(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRANSPORT_JSON: _ClassVar[Transport]
    TRANSPORT_WEBSOCKET: _ClassVar[Transport]
    TRANSPORT_SSE: _ClassVar[Transport]
    TRANSPORT_UPLOAD_MULTIPART: _ClassVar[Transport]
    TRANSPORT_UPLOAD_RAW: _ClassVar[Transport]
    TRANSPORT_DOWNLOAD: _ClassVar[Transport]

class SessionCookie(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SESSION_COOKIE_NONE: _ClassVar[SessionCookie]
    SESSION_COOKIE_SET: _ClassVar[SessionCookie]
    SESSION_COOKIE_CLEAR: _ClassVar[SessionCookie]
ACCESS_TOKEN: Access
ACCESS_PUBLIC: Access
ACCESS_OPTIONAL: Access
ACCESS_SESSION: Access
ACCESS_ADMIN: Access
ACCESS_SERVICE: Access
TRANSPORT_JSON: Transport
TRANSPORT_WEBSOCKET: Transport
TRANSPORT_SSE: Transport
TRANSPORT_UPLOAD_MULTIPART: Transport
TRANSPORT_UPLOAD_RAW: Transport
TRANSPORT_DOWNLOAD: Transport
SESSION_COOKIE_NONE: SessionCookie
SESSION_COOKIE_SET: SessionCookie
SESSION_COOKIE_CLEAR: SessionCookie
ACCESS_FIELD_NUMBER: _ClassVar[int]
access: _descriptor.FieldDescriptor
TRANSPORT_FIELD_NUMBER: _ClassVar[int]
transport: _descriptor.FieldDescriptor
QUERY_TOKEN_FIELD_NUMBER: _ClassVar[int]
query_token: _descriptor.FieldDescriptor
SESSION_COOKIE_FIELD_NUMBER: _ClassVar[int]
session_cookie: _descriptor.FieldDescriptor
HTTP_HEADER_FIELD_NUMBER: _ClassVar[int]
http_header: _descriptor.FieldDescriptor
GATEWAY_ONLY_FIELD_NUMBER: _ClassVar[int]
gateway_only: _descriptor.FieldDescriptor
SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
session_token: _descriptor.FieldDescriptor
OMIT_UNSET_FIELD_NUMBER: _ClassVar[int]
omit_unset: _descriptor.FieldDescriptor
JSON_INLINE_FIELD_NUMBER: _ClassVar[int]
json_inline: _descriptor.FieldDescriptor
