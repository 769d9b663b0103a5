"""Settings: one TOML file plus ``APPLIANCE_*`` environment overrides -> a frozen dataclass.

Precedence (highest first): environment, the file named by ``--config`` or
``APPLIANCE_CONFIG``, ``/etc/appliance/appliance.toml`` if it exists, defaults.
Paths left empty are derived from ``data_dir`` so one override moves everything.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
import secrets
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from appliance.keep import read_or_create

DEFAULT_CONFIG_FILE = Path("/etc/appliance/appliance.toml")
# Settings that were renamed: old name -> new name. The old name is still
# read (with a warning) unless the new one is set too.
RENAMED = {"ssh_host": "public_host"}

log = logging.getLogger("appliance.config")


@dataclass(frozen=True)
class Config:
    data_dir: str = "/var/lib/appliance"
    # Unix socket of the core daemon; "" -> <data_dir>/core.sock.
    core_socket: str = ""
    # Optional plaintext TCP listener for the core (loopback or a private
    # network only; hosts of a cluster use cluster_listen); "" = none.
    core_tcp: str = ""
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    # Public host name users put in URLs and ssh commands (a container's
    # ssh_command is ``ssh <id>@<public_host> -p <ssh_port>``).
    public_host: str = "127.0.0.1"
    ssh_port: int = 2222
    # Address the SSH gateway listens on (port: ssh_port).
    ssh_listen: str = "0.0.0.0"
    compute_domain: str = "compute.localhost"
    # peewee URL; "" -> sqlite:///<data_dir>/appliance.db. PostgreSQL: postgresql://...
    db_url: str = ""
    # "" -> generated once into <data_dir>/jwt_secret (0600) and kept.
    jwt_secret: str = ""
    jwt_algorithm: str = "HS256"
    session_ttl: int = 86400
    max_containers_per_user: int = 3
    login_max_failures: int = 5
    login_window_seconds: int = 300
    # File bytes: when gateway and core share a host (Unix socket) the gateway
    # reads/writes the blob or temp file the core authorized and named, and the
    # gRPC stream carries only control (docs/storage.md); false = every byte
    # over the gRPC stream.
    storage_local_io: bool = True
    # The gateway's unary calls travel over one multiplexed stream to the core
    # (appliance/http/multiplexed.py); false = one gRPC call per request.
    gateway_multiplex: bool = True
    # Gateway worker processes sharing the HTTP port; 0 = one per CPU, at most 4.
    http_workers: int = 0
    # Guest images are big and rebuilt rarely: kept outside the data dir by default.
    image_dir: str = "/var/cache/appliance/images"
    bridge_name: str = "apbr0"
    guest_subnet: str = "10.217.0.0/24"
    # "lxc" (libvirt LXC guests) or "fake" (in-memory, for quick tests of the layers above).
    guest_driver: str = "lxc"
    # Shared ingress (HAProxy, routed by Host / TLS SNI): listen address and
    # ports. Rules always say 80/443; these move the listeners (tests, hosts
    # where 80/443 are taken).
    ingress_listen: str = "0.0.0.0"
    ingress_http_port: int = 80
    ingress_https_port: int = 443
    # WebSocket keepalive: ping interval (and pong timeout) in seconds.
    ws_ping_seconds: int = 20
    # -- auth: logins, password hashing, API tokens (docs/api.md, "Auth") -----
    # Login throttle counters kept in memory at most (the oldest go first).
    login_throttle_max_entries: int = 20000
    # argon2 (64 MiB, most of a CPU per verification) runs on its own pool:
    # threads, and jobs that may wait for one; beyond both, login is 429 at once.
    password_hash_workers: int = 2
    password_hash_queue: int = 4
    # argon2id cost of the hashes made from now on (a hash keeps its own): RFC 9106's
    # second choice. Only the tests lower it (tests/harness.py), to spare CPU.
    password_hash_memory_kib: int = 65536
    password_hash_time_cost: int = 3
    # API tokens per user; scope entries per token.
    max_tokens_per_user: int = 50
    max_token_scopes: int = 32
    # -- ops: TLS of the HTTP gateway, log files (docs/install.md) ----------
    # PEM certificate (chain) and private key: the gateway (every worker)
    # serves HTTPS and WSS only on http_port, plain HTTP there gets no answer.
    # Both "" = plain HTTP (`make up` on 127.0.0.1); the playbook sets both.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # Log files of `appliance up` (<data_dir>/log/<daemon>.log, 0600): rotated
    # at this size, keeping this many old files, so each daemon's logs take at
    # most (log_file_backups + 1) * log_file_max_bytes however much anyone makes
    # them log. (Under systemd the daemons log to the journal, bounded by journald.)
    log_file_max_bytes: int = 10 * 1024 * 1024
    log_file_backups: int = 4
    # -- openapi (gateway JSON codec) --
    # JSON request bodies nested deeper than this (arrays/objects) are 400:
    # deep nesting costs stack and protobuf refuses Struct values past ~48 levels.
    json_max_depth: int = 32
    # -- ingress and guest network limits (security; docs/access.md, docs/isolation.md) --
    # Ingress rules per container and per user (rules of stopped containers
    # count): one tenant cannot reserve the 8000-8999 range.
    max_ingress_rules_per_container: int = 16
    max_ingress_rules_per_user: int = 32
    # Shared 80/443 listeners (HAProxy): concurrent connections one client
    # address may hold (both ports together), the idle timeout of a
    # connection (seconds), and how long an old process may finish its
    # connections after a configuration reload (hard-stop-after, seconds).
    ingress_max_conns_per_source: int = 100
    ingress_idle_timeout: int = 600
    ingress_hard_stop_after: int = 30
    # A freed guest address (and its MAC) is not handed out again for this
    # long (seconds); never-used addresses go first, then the oldest freed.
    guest_address_quarantine_seconds: int = 600
    # -- guest isolation (drivers/lxc.py, volumes.py; docs/isolation.md) --
    # Kernel TCP buffer memory one guest may hold (cgroup v1
    # memory.kmem.tcp.limit_in_bytes; at most the guest's memory limit). On
    # cgroup v2 the memory limit already covers socket memory.
    guest_tcp_memory_mb: int = 64
    # Open files per guest process (RLIMIT_NOFILE, soft = hard; guest root
    # cannot raise it).
    guest_nofile: int = 4096
    # Shared per-user counters (drivers/ucounts.py; docs/isolation.md): bytes
    # of POSIX message queues and queued signals per guest uid (RLIMIT_MSGQUEUE,
    # RLIMIT_SIGPENDING, soft = hard). They also count against host root's own
    # 800 KiB / pending-signals limits, so they stay well below those.
    guest_msgqueue_bytes: int = 262144
    guest_sigpending: int = 1024
    # Volumes are sparse: a new container's storage_gb must fit in the free
    # space of the volume disk minus what existing volumes may still grow
    # into, minus this margin, or the create is refused (409).
    volume_free_margin_gb: int = 2
    # -- long-lived streams (WebSockets, SSE, terminals; docs/access.md, docs/compute.md) --
    # Largest WebSocket message a client may send (terminal input, status socket);
    # a bigger one closes the socket with 1009.
    ws_max_message_bytes: int = 65536
    # Terminal input the gateway holds for a shell that is not reading; beyond it
    # the gateway stops reading the socket (back-pressure) until the shell catches up.
    terminal_input_buffer_bytes: int = 262144
    # Open terminals per user (429 beyond).
    terminals_per_user: int = 8
    # Open /sse/health streams per user, and /sse/logs streams per user (each
    # counted apart; admins too); 429 beyond, 0 = unlimited.
    event_streams_per_user: int = 8
    # Open streams are re-authenticated this often (token revoked, logout, user
    # deleted, expiry end them); revocations through the API end them at once.
    stream_recheck_seconds: int = 5
    # -- SSH gateway limits (area: ssh; docs/access.md "Limits") --
    # Seconds a connection may take from accept to a successful login.
    ssh_auth_timeout: int = 30
    # Open connections in total, and per client address (any state).
    ssh_max_connections: int = 256
    ssh_max_connections_per_source: int = 20
    # Logged-in connections per user and per container.
    ssh_max_connections_per_user: int = 16
    ssh_max_connections_per_container: int = 8
    # Channels (sessions, forwards) open at once on one connection.
    ssh_max_channels_per_connection: int = 10
    # Seconds between re-checks of every open connection's admission.
    ssh_recheck_seconds: int = 2
    # -- storage limits (docs/storage.md "Limits") ------------------------------
    # Largest file one upload may store (413 beyond); 0 = no limit but the quota.
    max_upload_bytes: int = 4 << 30
    # Bytes of files a user may keep (sum of the files they uploaded; 507 beyond); 0 = unlimited.
    storage_quota_bytes: int = 10 << 30
    # Free space kept on the data disk for the database and the system: an upload that
    # would go below it is 507 (guest volumes keep volume_free_margin_gb free on their own disk).
    disk_free_reserve_bytes: int = 1 << 30
    # Uploads one user may run at once (429 beyond); 0 = unlimited.
    max_uploads_per_user: int = 8
    # A body sending nothing for this long, or under upload_min_bytes_per_second on average over such a period,
    # is cut off (408, upload discarded); the core ends a call quiet for 2 x this + upload_backstop_margin_seconds.
    upload_stall_seconds: int = 30
    upload_min_bytes_per_second: int = 1024
    upload_backstop_margin_seconds: int = 10
    # Namespaces one user may own (409 beyond); 0 = unlimited.
    max_namespaces_per_user: int = 100
    # -- red team fixes: logins, gateway connections (docs/api.md, docs/install.md)
    # Successful logins per client address (IPv6: per /64) in login_window_seconds;
    # one verification at a time per address besides.
    login_max_successes_per_address: int = 60
    # -- audit trail (docs/accounts.md): days events are kept (0 = forever), and
    # events queued for the writer at most (beyond: dropped and counted).
    audit_retention_days: int = 90
    audit_queue_size: int = 10000
    # Service accounts one user may own (409 beyond); their tokens count in max_tokens_per_user.
    max_service_accounts_per_user: int = 20
    # Gateway: connections one client address (IPv6: /64) may hold open at once,
    # per worker process (0 = no cap); seconds a connection may wait for a
    # request's headers (first request incl. TLS handshake, and kept-alive ones).
    http_max_connections_per_address: int = 128
    http_idle_timeout: int = 20
    admin_username: str = "admin"
    admin_password: str = ""
    log_level: str = "INFO"
    # -- observability (docs/observability.md) --------------------------------
    # This host's name in health, metrics and admin lists; "" -> the machine's
    # host name (socket.gethostname()).
    host_name: str = ""
    # The metrics sampler reads the host and its containers this often
    # (seconds); the health stream (/sse/health) sends a fresh snapshot every
    # health_interval_seconds. History: docs/observability-metrics.md.
    metrics_sample_seconds: float = 5.0
    health_interval_seconds: float = 5.0
    # Prometheus: an unauthenticated GET /metrics listener served by the core,
    # "host:port" (e.g. "127.0.0.1:9464"); "" = none (GET /metrics through the
    # gateway needs an admin's session token). docs/observability-prometheus.md
    metrics_listen: str = ""
    # Scrapes (either way out) this close together share one rendering of the
    # exposition (seconds; 0: each scrape renders afresh).
    metrics_cache_seconds: float = 1.0
    # Origins (scheme://host[:port], comma-separated) whose pages may open the
    # WebSockets; others get 403 (a handshake without Origin, not a browser's,
    # is allowed). "" -> public_host and http_host on http_port
    # (appliance/http/cookie.py).
    public_origins: str = ""
    # WebAuthn security keys (docs/accounts.md): the relying-party id, a
    # registrable domain the keys are bound to; "" -> public_host ("localhost"
    # when that is an IP address, which browsers refuse as an RP id). Changing
    # it orphans every registered key.
    webauthn_rp_id: str = ""
    # Origins (comma-separated) whose pages may register and use keys; "" ->
    # <scheme>://<rp id>[:http_port] and https://<rp id>.
    webauthn_origins: str = ""
    # -- many hosts: one cloud over several machines (docs/cluster.md) ---------
    # The core's gRPC listener for the other hosts' cores, "host:port", mutual
    # TLS with the cluster CA below (nothing else is accepted on it); "" = a
    # host alone (SQLite is fine then; a cluster needs a PostgreSQL db_url).
    cluster_listen: str = ""
    # Where the other hosts reach this core ("host:port"); "" -> cluster_listen.
    cluster_advertise: str = ""
    # PEM files: the cluster's CA certificate, this host's certificate (signed
    # by that CA, its subject CN = host_name) and its private key.
    cluster_ca_file: str = ""
    cluster_cert_file: str = ""
    cluster_key_file: str = ""
    # Each core records a heartbeat this often (seconds); a host silent for
    # host_dead_seconds is down: its containers show "unknown".
    heartbeat_seconds: float = 2.0
    host_dead_seconds: float = 6.0
    # Placement: what this host offers guests (0 = what the machine has) and
    # how far the sum of the guests' cpus / memory may exceed it.
    host_cpus: float = 0.0
    host_memory_mb: int = 0
    cpu_overcommit: float = 4.0
    memory_overcommit: float = 1.0
    # -- files on SeaweedFS (docs/storage-seaweedfs.md) ---------------------------
    # Where file content lives: "local" (blobs on this host's disk) or
    # "seaweedfs" (blobs on a SeaweedFS filer, replicated across hosts; names,
    # namespaces, owners, sizes and ETags stay in the database either way).
    storage_backend: str = "local"
    # The filer this core (and its gateway, for direct transfers) uses, e.g.
    # "http://127.0.0.1:8888"; its master(s), comma-separated "host:port".
    seaweedfs_filer: str = ""
    seaweedfs_master: str = ""
    # SeaweedFS replication of every blob ("xyz": copies in other data
    # centres, other racks, other servers of the rack); "" -> "000" for one
    # volume server. A cluster gives each host its own rack and uses "010".
    seaweedfs_replication: str = ""
    seaweedfs_collection: str = "appliance"
    # The filer's JWT signing key (security.toml [jwt.filer_signing]); the core
    # signs a short-lived token for every filer request. "" -> generated once
    # into <data_dir>/seaweedfs_jwt_key (0600) by an embedded SeaweedFS.
    seaweedfs_jwt_key_file: str = ""
    # `appliance up` starts a master, a volume server and a filer of its own
    # (under <data_dir>/seaweedfs, on loopback) when the backend is seaweedfs.
    seaweedfs_embedded: bool = True
    # Blobs on the filer that no row points to and are older than this are
    # removed (an upload cut off between the filer's answer and the commit).
    seaweedfs_sweep_seconds: float = 300.0

    @property
    def node_name(self) -> str:
        """``host_name``, or the machine's host name."""
        return self.host_name or socket.gethostname()

    # -- derived paths -------------------------------------------------------
    @property
    def cluster_address(self) -> str:
        """Where the other hosts reach this core; "" when it is a host alone."""
        return self.cluster_advertise or self.cluster_listen

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def core_address(self) -> str:
        """gRPC target for clients of the core."""
        return f"unix://{self.core_socket_path}"

    @property
    def core_socket_path(self) -> str:
        return self.core_socket or str(self.data_path / "core.sock")

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_path / 'appliance.db'}"

    @property
    def files_dir(self) -> Path:
        return self.data_path / "files"

    @property
    def run_dir(self) -> Path:
        return self.data_path / "run"

    @property
    def log_dir(self) -> Path:
        return self.data_path / "log"

    @property
    def metrics_dir(self) -> Path:
        """Where the daemons' Prometheus instruments meet (appliance/metricsdir.py)."""
        return self.data_path / "metrics"

    def secret(self) -> str:
        """The JWT signing secret: configured, or generated once and kept 0600."""
        if self.jwt_secret:
            return self.jwt_secret
        return read_or_create_secret(self.data_path / "jwt_secret")

    def service_secret(self) -> str:
        """Credential of appliance processes (the SSH gateway) towards the core:
        generated once into <data_dir>/service_secret (0600) and kept."""
        return read_or_create_secret(self.data_path / "service_secret")

    def replace(self, **changes) -> Config:
        return dataclasses.replace(self, **changes)


def read_or_create_secret(path: Path, nbytes: int = 32) -> str:
    """Return the secret stored at *path*, creating it (0600, atomically) if absent."""
    return read_or_create(path, lambda: (secrets.token_urlsafe(nbytes) + "\n").encode()).decode().strip()


def host_and_port(name: str, address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``) of a listening setting. The host is
    required: a bare port would mean every address, which for an
    unauthenticated listener must be said (``0.0.0.0:9464``), not implied."""
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"setting {name!r} must be host:port with an explicit host, e.g. '127.0.0.1:9464' "
                         f"('0.0.0.0:9464' for every address), got {address!r}")
    return host, int(port)


def _coerce(name: str, kind: type, raw):
    if kind is int:
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ValueError(f"setting {name!r} must be an integer, got {raw!r}") from None
    if kind is float:
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"setting {name!r} must be a number, got {raw!r}") from None
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        return str(raw).lower() in ("1", "true", "yes", "on")
    return str(raw)


def _env_name(name: str) -> str:
    return f"APPLIANCE_{name.upper()}"


def _renamed(values: dict, source: str, spelled=str) -> dict:
    """``values`` of one source with renamed settings under their new names
    (``spelled``: how the source writes a name, for the warning)."""
    for old, new in RENAMED.items():
        if old not in values:
            continue
        value = values.pop(old)
        if new in values:
            log.warning("%s: %s is deprecated and ignored: %s is set", source, spelled(old), spelled(new))
        else:
            log.warning("%s: %s is deprecated: read as %s, rename it", source, spelled(old), spelled(new))
            values[new] = value
    return values


def load(path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    values: dict = {}
    file = path or env.get("APPLIANCE_CONFIG")
    if file is None and DEFAULT_CONFIG_FILE.exists():
        file = DEFAULT_CONFIG_FILE
    if file:
        with open(file, "rb") as f:
            values.update(_renamed(tomllib.load(f), str(file)))
    known = {f.name: f for f in fields(Config)}
    unknown = set(values) - set(known)
    if unknown:
        raise ValueError(f"unknown settings in {file}: {', '.join(sorted(unknown))}")
    from_env = {name: env[_env_name(name)] for name in [*known, *RENAMED] if _env_name(name) in env}
    values.update(_renamed(from_env, "environment", _env_name))
    # Field.type: a string (postponed annotations)
    kinds: dict[object, type] = {"int": int, "float": float, "str": str, "bool": bool}
    config = Config(**{
        name: _coerce(name, kinds.get(known[name].type, str), value)
        for name, value in values.items()
    })
    if config.metrics_listen:
        host_and_port("metrics_listen", config.metrics_listen)   # refused at start, not when binding
    if config.password_hash_time_cost < 1 or config.password_hash_memory_kib < 32:
        raise ValueError("password_hash_time_cost must be >= 1 and password_hash_memory_kib >= 32")
    check_cluster(config)
    check_storage(config)
    return config


def check_storage(config: Config) -> None:
    if config.upload_backstop_margin_seconds < 0:
        raise ValueError(f"upload_backstop_margin_seconds must be >= 0, not {config.upload_backstop_margin_seconds}")
    if config.storage_backend not in ("local", "seaweedfs"):
        raise ValueError(f"storage_backend must be 'local' or 'seaweedfs', not {config.storage_backend!r}")
    rep = config.seaweedfs_replication
    if rep and (len(rep) != 3 or not rep.isdigit()):
        raise ValueError(f"seaweedfs_replication must be three digits such as '010', not {rep!r}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", config.seaweedfs_collection):
        raise ValueError("seaweedfs_collection must be 1-64 letters, digits, '_', '.' or '-' (starting with a letter"
                         f" or digit), not {config.seaweedfs_collection!r}: it names the installation's folder too")
    if config.storage_backend == "seaweedfs" and not config.seaweedfs_embedded and not config.seaweedfs_filer:
        raise ValueError("storage_backend is seaweedfs but seaweedfs_filer is not set (or set seaweedfs_embedded)")


def check_cluster(config: Config) -> None:
    """cluster_listen serves mutual TLS only: refuse it without its three files."""
    missing = [name for name in ("cluster_ca_file", "cluster_cert_file", "cluster_key_file")
               if config.cluster_listen and not getattr(config, name)]
    if missing:
        raise ValueError(f"cluster_listen is set but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                         "not: the cluster port serves mutual TLS only (make the files with `appliance cluster ca` "
                         "and `appliance cluster cert`, docs/cluster-peers.md)")
    if config.cluster_listen:
        host_and_port("cluster_listen", config.cluster_listen)
