from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from appliance.v1 import options_pb2 as _options_pb2
from appliance.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Container(_message.Message):
    __slots__ = ("id", "name", "status", "error", "hostname", "ssh_command", "memory_mb", "memory_used_mb", "storage_gb", "storage_used_gb", "instance_type", "created_at", "ssh_enabled", "https_enabled", "external_ip")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    SSH_COMMAND_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_MB_FIELD_NUMBER: _ClassVar[int]
    STORAGE_GB_FIELD_NUMBER: _ClassVar[int]
    STORAGE_USED_GB_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SSH_ENABLED_FIELD_NUMBER: _ClassVar[int]
    HTTPS_ENABLED_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_IP_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    status: str
    error: str
    hostname: str
    ssh_command: str
    memory_mb: int
    memory_used_mb: int
    storage_gb: int
    storage_used_gb: float
    instance_type: str
    created_at: str
    ssh_enabled: bool
    https_enabled: bool
    external_ip: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., status: _Optional[str] = ..., error: _Optional[str] = ..., hostname: _Optional[str] = ..., ssh_command: _Optional[str] = ..., memory_mb: _Optional[int] = ..., memory_used_mb: _Optional[int] = ..., storage_gb: _Optional[int] = ..., storage_used_gb: _Optional[float] = ..., instance_type: _Optional[str] = ..., created_at: _Optional[str] = ..., ssh_enabled: _Optional[bool] = ..., https_enabled: _Optional[bool] = ..., external_ip: _Optional[str] = ...) -> None: ...

class ContainerRef(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListContainersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListContainersResponse(_message.Message):
    __slots__ = ("containers",)
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    containers: _containers.RepeatedCompositeFieldContainer[Container]
    def __init__(self, containers: _Optional[_Iterable[_Union[Container, _Mapping]]] = ...) -> None: ...

class GetQuotaRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ComputeQuota(_message.Message):
    __slots__ = ("containers", "max_containers")
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    containers: int
    max_containers: int
    def __init__(self, containers: _Optional[int] = ..., max_containers: _Optional[int] = ...) -> None: ...

class IngressRuleSpec(_message.Message):
    __slots__ = ("port", "target_port")
    PORT_FIELD_NUMBER: _ClassVar[int]
    TARGET_PORT_FIELD_NUMBER: _ClassVar[int]
    port: int
    target_port: int
    def __init__(self, port: _Optional[int] = ..., target_port: _Optional[int] = ...) -> None: ...

class CreateContainerRequest(_message.Message):
    __slots__ = ("name", "instance_type", "memory_mb", "storage_gb", "ssh_key_ids", "ssh_enabled", "enable_ssh", "mount_paths", "ingress_rules")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    STORAGE_GB_FIELD_NUMBER: _ClassVar[int]
    SSH_KEY_IDS_FIELD_NUMBER: _ClassVar[int]
    SSH_ENABLED_FIELD_NUMBER: _ClassVar[int]
    ENABLE_SSH_FIELD_NUMBER: _ClassVar[int]
    MOUNT_PATHS_FIELD_NUMBER: _ClassVar[int]
    INGRESS_RULES_FIELD_NUMBER: _ClassVar[int]
    name: str
    instance_type: str
    memory_mb: int
    storage_gb: int
    ssh_key_ids: _containers.RepeatedScalarFieldContainer[str]
    ssh_enabled: bool
    enable_ssh: bool
    mount_paths: _containers.RepeatedScalarFieldContainer[str]
    ingress_rules: _containers.RepeatedCompositeFieldContainer[IngressRuleSpec]
    def __init__(self, name: _Optional[str] = ..., instance_type: _Optional[str] = ..., memory_mb: _Optional[int] = ..., storage_gb: _Optional[int] = ..., ssh_key_ids: _Optional[_Iterable[str]] = ..., ssh_enabled: _Optional[bool] = ..., enable_ssh: _Optional[bool] = ..., mount_paths: _Optional[_Iterable[str]] = ..., ingress_rules: _Optional[_Iterable[_Union[IngressRuleSpec, _Mapping]]] = ...) -> None: ...

class SshKey(_message.Message):
    __slots__ = ("id", "name", "public_key", "fingerprint", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    public_key: str
    fingerprint: str
    created_at: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., public_key: _Optional[str] = ..., fingerprint: _Optional[str] = ..., created_at: _Optional[str] = ...) -> None: ...

class ListSshKeysRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSshKeysResponse(_message.Message):
    __slots__ = ("ssh_keys",)
    SSH_KEYS_FIELD_NUMBER: _ClassVar[int]
    ssh_keys: _containers.RepeatedCompositeFieldContainer[SshKey]
    def __init__(self, ssh_keys: _Optional[_Iterable[_Union[SshKey, _Mapping]]] = ...) -> None: ...

class CreateSshKeyRequest(_message.Message):
    __slots__ = ("name", "public_key")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    name: str
    public_key: str
    def __init__(self, name: _Optional[str] = ..., public_key: _Optional[str] = ...) -> None: ...

class DeleteSshKeyRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class SshAccess(_message.Message):
    __slots__ = ("ssh_enabled",)
    SSH_ENABLED_FIELD_NUMBER: _ClassVar[int]
    ssh_enabled: bool
    def __init__(self, ssh_enabled: _Optional[bool] = ...) -> None: ...

class SetSshRequest(_message.Message):
    __slots__ = ("id", "ssh_enabled")
    ID_FIELD_NUMBER: _ClassVar[int]
    SSH_ENABLED_FIELD_NUMBER: _ClassVar[int]
    id: str
    ssh_enabled: bool
    def __init__(self, id: _Optional[str] = ..., ssh_enabled: _Optional[bool] = ...) -> None: ...

class IngressRule(_message.Message):
    __slots__ = ("id", "port", "target_port", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    TARGET_PORT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    port: int
    target_port: int
    created_at: int
    def __init__(self, id: _Optional[str] = ..., port: _Optional[int] = ..., target_port: _Optional[int] = ..., created_at: _Optional[int] = ...) -> None: ...

class ListIngressResponse(_message.Message):
    __slots__ = ("rules",)
    RULES_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[IngressRule]
    def __init__(self, rules: _Optional[_Iterable[_Union[IngressRule, _Mapping]]] = ...) -> None: ...

class AddIngressRequest(_message.Message):
    __slots__ = ("id", "port", "target_port")
    ID_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    TARGET_PORT_FIELD_NUMBER: _ClassVar[int]
    id: str
    port: int
    target_port: int
    def __init__(self, id: _Optional[str] = ..., port: _Optional[int] = ..., target_port: _Optional[int] = ...) -> None: ...

class DeleteIngressRequest(_message.Message):
    __slots__ = ("id", "port")
    ID_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    id: str
    port: int
    def __init__(self, id: _Optional[str] = ..., port: _Optional[int] = ...) -> None: ...

class Mounts(_message.Message):
    __slots__ = ("mount_paths",)
    MOUNT_PATHS_FIELD_NUMBER: _ClassVar[int]
    mount_paths: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, mount_paths: _Optional[_Iterable[str]] = ...) -> None: ...

class SetMountsRequest(_message.Message):
    __slots__ = ("id", "mount_paths")
    ID_FIELD_NUMBER: _ClassVar[int]
    MOUNT_PATHS_FIELD_NUMBER: _ClassVar[int]
    id: str
    mount_paths: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., mount_paths: _Optional[_Iterable[str]] = ...) -> None: ...

class SetMountsResponse(_message.Message):
    __slots__ = ("mount_paths", "restarted")
    MOUNT_PATHS_FIELD_NUMBER: _ClassVar[int]
    RESTARTED_FIELD_NUMBER: _ClassVar[int]
    mount_paths: _containers.RepeatedScalarFieldContainer[str]
    restarted: bool
    def __init__(self, mount_paths: _Optional[_Iterable[str]] = ..., restarted: _Optional[bool] = ...) -> None: ...

class WatchContainersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ContainerStatus(_message.Message):
    __slots__ = ("container_id", "status", "external_ip")
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_IP_FIELD_NUMBER: _ClassVar[int]
    container_id: str
    status: str
    external_ip: str
    def __init__(self, container_id: _Optional[str] = ..., status: _Optional[str] = ..., external_ip: _Optional[str] = ...) -> None: ...

class ContainerEvent(_message.Message):
    __slots__ = ("type", "containers", "container_status")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_STATUS_FIELD_NUMBER: _ClassVar[int]
    type: str
    containers: ListContainersResponse
    container_status: ContainerStatus
    def __init__(self, type: _Optional[str] = ..., containers: _Optional[_Union[ListContainersResponse, _Mapping]] = ..., container_status: _Optional[_Union[ContainerStatus, _Mapping]] = ...) -> None: ...

class TerminalInput(_message.Message):
    __slots__ = ("id", "data", "cols", "rows")
    ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    id: str
    data: bytes
    cols: int
    rows: int
    def __init__(self, id: _Optional[str] = ..., data: _Optional[bytes] = ..., cols: _Optional[int] = ..., rows: _Optional[int] = ...) -> None: ...

class TerminalOutput(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class ContainerLogLine(_message.Message):
    __slots__ = ("source", "line", "backlog")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    BACKLOG_FIELD_NUMBER: _ClassVar[int]
    source: str
    line: str
    backlog: bool
    def __init__(self, source: _Optional[str] = ..., line: _Optional[str] = ..., backlog: _Optional[bool] = ...) -> None: ...

class ListAllContainersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AdminContainer(_message.Message):
    __slots__ = ("id", "name", "status", "error", "hostname", "ssh_command", "memory_mb", "memory_used_mb", "storage_gb", "storage_used_gb", "instance_type", "created_at", "ssh_enabled", "https_enabled", "external_ip", "owner", "user_id", "host")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    SSH_COMMAND_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_MB_FIELD_NUMBER: _ClassVar[int]
    STORAGE_GB_FIELD_NUMBER: _ClassVar[int]
    STORAGE_USED_GB_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SSH_ENABLED_FIELD_NUMBER: _ClassVar[int]
    HTTPS_ENABLED_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_IP_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    status: str
    error: str
    hostname: str
    ssh_command: str
    memory_mb: int
    memory_used_mb: int
    storage_gb: int
    storage_used_gb: float
    instance_type: str
    created_at: str
    ssh_enabled: bool
    https_enabled: bool
    external_ip: str
    owner: str
    user_id: str
    host: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., status: _Optional[str] = ..., error: _Optional[str] = ..., hostname: _Optional[str] = ..., ssh_command: _Optional[str] = ..., memory_mb: _Optional[int] = ..., memory_used_mb: _Optional[int] = ..., storage_gb: _Optional[int] = ..., storage_used_gb: _Optional[float] = ..., instance_type: _Optional[str] = ..., created_at: _Optional[str] = ..., ssh_enabled: _Optional[bool] = ..., https_enabled: _Optional[bool] = ..., external_ip: _Optional[str] = ..., owner: _Optional[str] = ..., user_id: _Optional[str] = ..., host: _Optional[str] = ...) -> None: ...

class ListAllContainersResponse(_message.Message):
    __slots__ = ("containers",)
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    containers: _containers.RepeatedCompositeFieldContainer[AdminContainer]
    def __init__(self, containers: _Optional[_Iterable[_Union[AdminContainer, _Mapping]]] = ...) -> None: ...
