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

class Namespace(_message.Message):
    __slots__ = ("name", "count", "hidden", "visibility", "owner_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_FIELD_NUMBER: _ClassVar[int]
    VISIBILITY_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    count: int
    hidden: bool
    visibility: int
    owner_id: str
    def __init__(self, name: _Optional[str] = ..., count: _Optional[int] = ..., hidden: _Optional[bool] = ..., visibility: _Optional[int] = ..., owner_id: _Optional[str] = ...) -> None: ...

class ListNamespacesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAllNamespacesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AdminNamespace(_message.Message):
    __slots__ = ("name", "owner_id", "owner", "visibility", "count", "bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    VISIBILITY_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    owner_id: str
    owner: str
    visibility: int
    count: int
    bytes: int
    def __init__(self, name: _Optional[str] = ..., owner_id: _Optional[str] = ..., owner: _Optional[str] = ..., visibility: _Optional[int] = ..., count: _Optional[int] = ..., bytes: _Optional[int] = ...) -> None: ...

class ListAllNamespacesResponse(_message.Message):
    __slots__ = ("namespaces",)
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    namespaces: _containers.RepeatedCompositeFieldContainer[AdminNamespace]
    def __init__(self, namespaces: _Optional[_Iterable[_Union[AdminNamespace, _Mapping]]] = ...) -> None: ...

class ListNamespacesResponse(_message.Message):
    __slots__ = ("namespaces",)
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    namespaces: _containers.RepeatedCompositeFieldContainer[Namespace]
    def __init__(self, namespaces: _Optional[_Iterable[_Union[Namespace, _Mapping]]] = ...) -> None: ...

class CreateNamespaceRequest(_message.Message):
    __slots__ = ("name", "visibility", "hidden")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VISIBILITY_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_FIELD_NUMBER: _ClassVar[int]
    name: str
    visibility: int
    hidden: bool
    def __init__(self, name: _Optional[str] = ..., visibility: _Optional[int] = ..., hidden: _Optional[bool] = ...) -> None: ...

class UpdateNamespaceRequest(_message.Message):
    __slots__ = ("name", "visibility", "hidden")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VISIBILITY_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_FIELD_NUMBER: _ClassVar[int]
    name: str
    visibility: int
    hidden: bool
    def __init__(self, name: _Optional[str] = ..., visibility: _Optional[int] = ..., hidden: _Optional[bool] = ...) -> None: ...

class NamespaceRef(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class FileInfo(_message.Message):
    __slots__ = ("name", "path", "namespace", "size", "created_at", "modified_at", "modified")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_AT_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_FIELD_NUMBER: _ClassVar[int]
    name: str
    path: str
    namespace: str
    size: int
    created_at: int
    modified_at: int
    modified: int
    def __init__(self, name: _Optional[str] = ..., path: _Optional[str] = ..., namespace: _Optional[str] = ..., size: _Optional[int] = ..., created_at: _Optional[int] = ..., modified_at: _Optional[int] = ..., modified: _Optional[int] = ...) -> None: ...

class ListFilesRequest(_message.Message):
    __slots__ = ("namespace",)
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    def __init__(self, namespace: _Optional[str] = ...) -> None: ...

class ListFilesResponse(_message.Message):
    __slots__ = ("files",)
    FILES_FIELD_NUMBER: _ClassVar[int]
    files: _containers.RepeatedCompositeFieldContainer[FileInfo]
    def __init__(self, files: _Optional[_Iterable[_Union[FileInfo, _Mapping]]] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("namespace", "name", "overwrite", "size", "transfer_id", "local")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    LOCAL_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    overwrite: bool
    size: int
    transfer_id: str
    local: bool
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., overwrite: _Optional[bool] = ..., size: _Optional[int] = ..., transfer_id: _Optional[str] = ..., local: _Optional[bool] = ...) -> None: ...

class UploadEnd(_message.Message):
    __slots__ = ("size",)
    SIZE_FIELD_NUMBER: _ClassVar[int]
    size: int
    def __init__(self, size: _Optional[int] = ...) -> None: ...

class UploadProgress(_message.Message):
    __slots__ = ("bytes",)
    BYTES_FIELD_NUMBER: _ClassVar[int]
    bytes: int
    def __init__(self, bytes: _Optional[int] = ...) -> None: ...

class UploadChunk(_message.Message):
    __slots__ = ("header", "data", "end", "progress")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    data: bytes
    end: UploadEnd
    progress: UploadProgress
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., data: _Optional[bytes] = ..., end: _Optional[_Union[UploadEnd, _Mapping]] = ..., progress: _Optional[_Union[UploadProgress, _Mapping]] = ...) -> None: ...

class UploadResponse(_message.Message):
    __slots__ = ("status", "name", "namespace", "size", "etag")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    status: str
    name: str
    namespace: str
    size: int
    etag: str
    def __init__(self, status: _Optional[str] = ..., name: _Optional[str] = ..., namespace: _Optional[str] = ..., size: _Optional[int] = ..., etag: _Optional[str] = ...) -> None: ...

class DownloadRequest(_message.Message):
    __slots__ = ("namespace", "name", "range", "if_none_match", "if_modified_since", "head", "id", "if_range", "local")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    IF_NONE_MATCH_FIELD_NUMBER: _ClassVar[int]
    IF_MODIFIED_SINCE_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    IF_RANGE_FIELD_NUMBER: _ClassVar[int]
    LOCAL_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    range: str
    if_none_match: str
    if_modified_since: str
    head: bool
    id: str
    if_range: str
    local: bool
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., range: _Optional[str] = ..., if_none_match: _Optional[str] = ..., if_modified_since: _Optional[str] = ..., head: _Optional[bool] = ..., id: _Optional[str] = ..., if_range: _Optional[str] = ..., local: _Optional[bool] = ...) -> None: ...

class FileMeta(_message.Message):
    __slots__ = ("size", "etag", "modified_at", "content_type", "range_start", "range_end", "partial", "not_modified", "name", "local_path", "inode", "public", "filer_url", "filer_blob", "filer_token", "filer_root")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_AT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    RANGE_START_FIELD_NUMBER: _ClassVar[int]
    RANGE_END_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    NOT_MODIFIED_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LOCAL_PATH_FIELD_NUMBER: _ClassVar[int]
    INODE_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_FIELD_NUMBER: _ClassVar[int]
    FILER_URL_FIELD_NUMBER: _ClassVar[int]
    FILER_BLOB_FIELD_NUMBER: _ClassVar[int]
    FILER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILER_ROOT_FIELD_NUMBER: _ClassVar[int]
    size: int
    etag: str
    modified_at: int
    content_type: str
    range_start: int
    range_end: int
    partial: bool
    not_modified: bool
    name: str
    local_path: str
    inode: int
    public: bool
    filer_url: str
    filer_blob: str
    filer_token: str
    filer_root: str
    def __init__(self, size: _Optional[int] = ..., etag: _Optional[str] = ..., modified_at: _Optional[int] = ..., content_type: _Optional[str] = ..., range_start: _Optional[int] = ..., range_end: _Optional[int] = ..., partial: _Optional[bool] = ..., not_modified: _Optional[bool] = ..., name: _Optional[str] = ..., local_path: _Optional[str] = ..., inode: _Optional[int] = ..., public: _Optional[bool] = ..., filer_url: _Optional[str] = ..., filer_blob: _Optional[str] = ..., filer_token: _Optional[str] = ..., filer_root: _Optional[str] = ...) -> None: ...

class DownloadChunk(_message.Message):
    __slots__ = ("meta", "data")
    META_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    meta: FileMeta
    data: bytes
    def __init__(self, meta: _Optional[_Union[FileMeta, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class FileRef(_message.Message):
    __slots__ = ("namespace", "name")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StorageStatus(_message.Message):
    __slots__ = ("chunkserver_count", "total_servers", "capacity_bytes", "used_bytes", "free_bytes", "stored_bytes", "file_count", "backend", "quota_bytes", "quota_used_bytes", "max_upload_bytes", "writable", "readable", "problem")
    CHUNKSERVER_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SERVERS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    STORED_BYTES_FIELD_NUMBER: _ClassVar[int]
    FILE_COUNT_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    QUOTA_BYTES_FIELD_NUMBER: _ClassVar[int]
    QUOTA_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_UPLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    WRITABLE_FIELD_NUMBER: _ClassVar[int]
    READABLE_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    chunkserver_count: int
    total_servers: int
    capacity_bytes: int
    used_bytes: int
    free_bytes: int
    stored_bytes: int
    file_count: int
    backend: str
    quota_bytes: int
    quota_used_bytes: int
    max_upload_bytes: int
    writable: bool
    readable: bool
    problem: str
    def __init__(self, chunkserver_count: _Optional[int] = ..., total_servers: _Optional[int] = ..., capacity_bytes: _Optional[int] = ..., used_bytes: _Optional[int] = ..., free_bytes: _Optional[int] = ..., stored_bytes: _Optional[int] = ..., file_count: _Optional[int] = ..., backend: _Optional[str] = ..., quota_bytes: _Optional[int] = ..., quota_used_bytes: _Optional[int] = ..., max_upload_bytes: _Optional[int] = ..., writable: _Optional[bool] = ..., readable: _Optional[bool] = ..., problem: _Optional[str] = ...) -> None: ...

class ProgressRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("direction", "bytes", "total", "done")
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    direction: str
    bytes: int
    total: int
    done: bool
    def __init__(self, direction: _Optional[str] = ..., bytes: _Optional[int] = ..., total: _Optional[int] = ..., done: _Optional[bool] = ...) -> None: ...
