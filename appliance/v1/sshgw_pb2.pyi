from appliance.v1 import options_pb2 as _options_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Grant(_message.Message):
    __slots__ = ("container_id", "owner_id", "fingerprint")
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    container_id: str
    owner_id: str
    fingerprint: str
    def __init__(self, container_id: _Optional[str] = ..., owner_id: _Optional[str] = ..., fingerprint: _Optional[str] = ...) -> None: ...

class RecheckRequest(_message.Message):
    __slots__ = ("grants",)
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    grants: _containers.RepeatedCompositeFieldContainer[Grant]
    def __init__(self, grants: _Optional[_Iterable[_Union[Grant, _Mapping]]] = ...) -> None: ...

class RecheckResponse(_message.Message):
    __slots__ = ("allowed",)
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    allowed: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, allowed: _Optional[_Iterable[bool]] = ...) -> None: ...

class AuthorizeRequest(_message.Message):
    __slots__ = ("username", "public_key", "client_address")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    username: str
    public_key: str
    client_address: str
    def __init__(self, username: _Optional[str] = ..., public_key: _Optional[str] = ..., client_address: _Optional[str] = ...) -> None: ...

class AuthorizeResponse(_message.Message):
    __slots__ = ("container_id", "guest_user", "guest_ip", "guest_port", "guest_host_keys", "owner_id", "fingerprint")
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    GUEST_USER_FIELD_NUMBER: _ClassVar[int]
    GUEST_IP_FIELD_NUMBER: _ClassVar[int]
    GUEST_PORT_FIELD_NUMBER: _ClassVar[int]
    GUEST_HOST_KEYS_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    container_id: str
    guest_user: str
    guest_ip: str
    guest_port: int
    guest_host_keys: _containers.RepeatedScalarFieldContainer[str]
    owner_id: str
    fingerprint: str
    def __init__(self, container_id: _Optional[str] = ..., guest_user: _Optional[str] = ..., guest_ip: _Optional[str] = ..., guest_port: _Optional[int] = ..., guest_host_keys: _Optional[_Iterable[str]] = ..., owner_id: _Optional[str] = ..., fingerprint: _Optional[str] = ...) -> None: ...
