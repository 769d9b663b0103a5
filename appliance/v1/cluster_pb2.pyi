from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from appliance.v1 import options_pb2 as _options_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListHostsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListHostsResponse(_message.Message):
    __slots__ = ("hosts",)
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    hosts: _containers.RepeatedCompositeFieldContainer[Host]
    def __init__(self, hosts: _Optional[_Iterable[_Union[Host, _Mapping]]] = ...) -> None: ...

class HostRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class Host(_message.Message):
    __slots__ = ("name", "address", "guest_subnet", "state", "status", "cpus", "memory_mb", "cpus_used", "memory_mb_used", "containers", "last_heartbeat")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    GUEST_SUBNET_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CPUS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    CPUS_USED_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_USED_FIELD_NUMBER: _ClassVar[int]
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    name: str
    address: str
    guest_subnet: str
    state: str
    status: str
    cpus: float
    memory_mb: int
    cpus_used: float
    memory_mb_used: int
    containers: int
    last_heartbeat: int
    def __init__(self, name: _Optional[str] = ..., address: _Optional[str] = ..., guest_subnet: _Optional[str] = ..., state: _Optional[str] = ..., status: _Optional[str] = ..., cpus: _Optional[float] = ..., memory_mb: _Optional[int] = ..., cpus_used: _Optional[float] = ..., memory_mb_used: _Optional[int] = ..., containers: _Optional[int] = ..., last_heartbeat: _Optional[int] = ...) -> None: ...

class WatchHealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthEvent(_message.Message):
    __slots__ = ("type", "payload")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    type: str
    payload: HealthPayload
    def __init__(self, type: _Optional[str] = ..., payload: _Optional[_Union[HealthPayload, _Mapping]] = ...) -> None: ...

class HealthPayload(_message.Message):
    __slots__ = ("cluster", "pods")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    PODS_FIELD_NUMBER: _ClassVar[int]
    cluster: ClusterHealth
    pods: PodsHealth
    def __init__(self, cluster: _Optional[_Union[ClusterHealth, _Mapping]] = ..., pods: _Optional[_Union[PodsHealth, _Mapping]] = ...) -> None: ...

class ClusterHealth(_message.Message):
    __slots__ = ("timestamp", "nodes")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    timestamp: int
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    def __init__(self, timestamp: _Optional[int] = ..., nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("name", "cpu_usage", "cpu_capacity", "memory_usage", "memory_capacity", "cpu_percent", "memory_percent", "disk_percent", "disk_usage", "disk_capacity", "conditions")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CPU_USAGE_FIELD_NUMBER: _ClassVar[int]
    CPU_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USAGE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_PERCENT_FIELD_NUMBER: _ClassVar[int]
    DISK_PERCENT_FIELD_NUMBER: _ClassVar[int]
    DISK_USAGE_FIELD_NUMBER: _ClassVar[int]
    DISK_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    cpu_usage: str
    cpu_capacity: str
    memory_usage: str
    memory_capacity: str
    cpu_percent: float
    memory_percent: float
    disk_percent: float
    disk_usage: int
    disk_capacity: int
    conditions: _containers.RepeatedCompositeFieldContainer[NodeCondition]
    def __init__(self, name: _Optional[str] = ..., cpu_usage: _Optional[str] = ..., cpu_capacity: _Optional[str] = ..., memory_usage: _Optional[str] = ..., memory_capacity: _Optional[str] = ..., cpu_percent: _Optional[float] = ..., memory_percent: _Optional[float] = ..., disk_percent: _Optional[float] = ..., disk_usage: _Optional[int] = ..., disk_capacity: _Optional[int] = ..., conditions: _Optional[_Iterable[_Union[NodeCondition, _Mapping]]] = ...) -> None: ...

class NodeCondition(_message.Message):
    __slots__ = ("type", "status")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    type: str
    status: str
    def __init__(self, type: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class PodsHealth(_message.Message):
    __slots__ = ("timestamp", "pods")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    PODS_FIELD_NUMBER: _ClassVar[int]
    timestamp: int
    pods: _containers.RepeatedCompositeFieldContainer[Pod]
    def __init__(self, timestamp: _Optional[int] = ..., pods: _Optional[_Iterable[_Union[Pod, _Mapping]]] = ...) -> None: ...

class Pod(_message.Message):
    __slots__ = ("name", "namespace", "node", "cpu_usage", "cpu_capacity", "memory_usage", "memory_capacity", "disk_usage", "disk_capacity")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    CPU_USAGE_FIELD_NUMBER: _ClassVar[int]
    CPU_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USAGE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    DISK_USAGE_FIELD_NUMBER: _ClassVar[int]
    DISK_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    name: str
    namespace: str
    node: str
    cpu_usage: int
    cpu_capacity: int
    memory_usage: int
    memory_capacity: int
    disk_usage: int
    disk_capacity: int
    def __init__(self, name: _Optional[str] = ..., namespace: _Optional[str] = ..., node: _Optional[str] = ..., cpu_usage: _Optional[int] = ..., cpu_capacity: _Optional[int] = ..., memory_usage: _Optional[int] = ..., memory_capacity: _Optional[int] = ..., disk_usage: _Optional[int] = ..., disk_capacity: _Optional[int] = ...) -> None: ...

class NodeMetricsRequest(_message.Message):
    __slots__ = ("start", "end", "resolution", "name")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    start: str
    end: str
    resolution: str
    name: str
    def __init__(self, start: _Optional[str] = ..., end: _Optional[str] = ..., resolution: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class NodeMetrics(_message.Message):
    __slots__ = ("start", "end", "resolution", "series")
    class SeriesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: MetricPoints
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[MetricPoints, _Mapping]] = ...) -> None: ...
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    start: str
    end: str
    resolution: str
    series: _containers.MessageMap[str, MetricPoints]
    def __init__(self, start: _Optional[str] = ..., end: _Optional[str] = ..., resolution: _Optional[str] = ..., series: _Optional[_Mapping[str, MetricPoints]] = ...) -> None: ...

class MetricPoints(_message.Message):
    __slots__ = ("points",)
    POINTS_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[MetricPoint]
    def __init__(self, points: _Optional[_Iterable[_Union[MetricPoint, _Mapping]]] = ...) -> None: ...

class MetricPoint(_message.Message):
    __slots__ = ("t", "cpu", "mem", "disk")
    T_FIELD_NUMBER: _ClassVar[int]
    CPU_FIELD_NUMBER: _ClassVar[int]
    MEM_FIELD_NUMBER: _ClassVar[int]
    DISK_FIELD_NUMBER: _ClassVar[int]
    t: str
    cpu: float
    mem: float
    disk: float
    def __init__(self, t: _Optional[str] = ..., cpu: _Optional[float] = ..., mem: _Optional[float] = ..., disk: _Optional[float] = ...) -> None: ...
