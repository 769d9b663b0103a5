"""Prometheus instruments of every daemon (prometheus_client).

The gateway runs several forked workers and the appliance three daemons, so
the instruments use prometheus_client's multiprocess mode: each process
writes its values to mmapped files in ``PROMETHEUS_MULTIPROC_DIR``
(``<data_dir>/metrics``) and the core's exposition (core/exposition.py)
sums them, so one scrape sees every process of this host. The directory is
set by the ``appliance`` command (appliance/metricsdir.py) before anything
imports prometheus_client, which picks its value store at import. Without it (tests
in one process) the instruments are plain in-memory ones.

Labels are bounded: routes are proto path templates, gRPC methods come from
the contract, codes and statuses are small sets. Nothing a request carries
becomes a label. (The sampler's per-container gauges, read from its latest
sample in the core, carry each existing container's id, name and owner.)
"""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, values

# -- HTTP gateway (http/app.py log_request: every request passes there) -------
HTTP_REQUESTS = Counter(
    "appliance_http_requests_total", "HTTP requests answered by the gateway.",
    ["route", "method", "status"])
HTTP_LATENCY = Histogram(
    "appliance_http_request_duration_seconds", "Time from a request's arrival to its last byte.",
    ["route", "method", "status"])
HTTP_UPLOAD_BYTES = Counter(
    "appliance_http_upload_bytes_total", "File bytes received by uploads (multipart and raw).")
HTTP_DOWNLOAD_BYTES = Counter(
    "appliance_http_download_bytes_total", "File bytes sent by downloads.")

# -- gRPC (core/guard.py wraps every handler) ----------------------------------
GRPC_HANDLED = Counter(
    "appliance_grpc_server_handled_total", "gRPC calls the core finished, by status code.",
    ["grpc_service", "grpc_method", "grpc_type", "grpc_code"])
GRPC_LATENCY = Histogram(
    "appliance_grpc_server_handling_seconds", "Time the core took for a call (streams: their lifetime).",
    ["grpc_service", "grpc_method", "grpc_type"])

# -- compute --------------------------------------------------------------------
_GUEST_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0)
CONTAINER_CREATE = Histogram(
    "appliance_container_create_duration_seconds",
    "A new container's first start: from initializing to running (volume, root, boot).",
    buckets=_GUEST_BUCKETS)
CONTAINER_START = Histogram(
    "appliance_container_start_duration_seconds",
    "A start of an existing container: from initializing to running.", buckets=_GUEST_BUCKETS)
CONTAINER_START_FAILURES = Counter(
    "appliance_container_start_failures_total", "Creates and starts that ended in the error status.",
    ["kind"])

# -- storage ---------------------------------------------------------------------
STORAGE_OPERATIONS = Counter(
    "appliance_storage_operations_total",
    "Storage operations the core completed: upload, download, delete_file, create_namespace, delete_namespace.",
    ["operation"])

# -- auth --------------------------------------------------------------------------
LOGINS = Counter(
    "appliance_login_attempts_total",
    "Login attempts by result: ok, failed (wrong password or unknown user), throttled (429).",
    ["result"])

AUDIT_EVENTS = Counter(
    "appliance_audit_events_total",
    "Audit trail events by result: written, dropped (the queue was full or the write failed).",
    ["result"])

# -- SSH gateway ---------------------------------------------------------------------
SSH_CONNECTIONS = Gauge(
    "appliance_ssh_connections", "Open connections to the SSH gateway (any state).",
    multiprocess_mode="livesum")
SSH_SESSIONS = Gauge(
    "appliance_ssh_sessions", "Logged-in SSH gateway connections (counted against the per-user caps).",
    multiprocess_mode="livesum")
SSH_REFUSED = Counter(
    "appliance_ssh_refused_total", "SSH connections refused by a connection cap.")


# -- status events across hosts (core/fleet/notify.py; PostgreSQL only) -----------------
FLEET_EVENTS_SENT = Counter(
    "appliance_fleet_events_sent_total", "Events and notices this core sent to the other hosts (NOTIFY).")
FLEET_EVENTS_RECEIVED = Counter(
    "appliance_fleet_events_received_total", "Events and notices of other hosts this core received (LISTEN).")
FLEET_EVENTS_RECONNECTS = Counter(
    "appliance_fleet_events_reconnects_total",
    "Times the LISTEN connection was made again after a loss (each ends the local status streams).")

_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
_http_children: dict[tuple[str, str, int], tuple] = {}


def observe_http(route: str, method: str, status: int, seconds: float) -> None:
    """One answered request. ``route``: a proto path template or a fixed name,
    never the raw path. The label children are kept: labels() costs more than
    the increments."""
    key = (route, method if method in _HTTP_METHODS else "other", status)
    children = _http_children.get(key)
    if children is None:
        labels = (key[0], key[1], str(status))
        children = _http_children[key] = (HTTP_REQUESTS.labels(*labels), HTTP_LATENCY.labels(*labels))
    children[0].inc()
    children[1].observe(seconds)


class GrpcMethod:
    """The gRPC instruments of one method (core/guard.py keeps one per method)."""

    def __init__(self, service: str, method: str, client_streaming: bool, server_streaming: bool):
        kind = {(False, False): "unary", (True, False): "client_stream",
                (False, True): "server_stream", (True, True): "bidi_stream"}[client_streaming, server_streaming]
        self.labels = (service, method, kind)
        self.handled: dict[str, Counter] = {}
        self.latency: Histogram | None = None

    def done(self, code: str, seconds: float | None) -> None:
        """A call ended with ``code`` (a grpc.StatusCode name) after ``seconds``
        (None: refused before it ran, e.g. no credentials)."""
        child = self.handled.get(code)
        if child is None:
            child = self.handled[code] = GRPC_HANDLED.labels(*self.labels, code)
        child.inc()
        if seconds is not None:
            if self.latency is None:
                self.latency = GRPC_LATENCY.labels(*self.labels)
            self.latency.observe(seconds)


def multiprocess() -> bool:
    """True when the instruments write to the shared directory (appliance/metricsdir.py)."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))
