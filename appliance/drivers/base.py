"""The guest-driver seam. The docstrings here are the contract every driver
(the libvirt LXC one, the in-memory fake) honours and the layers above rely on.

A guest is known by a short id chosen by the caller (hostname- and
file-name-safe). It has two kinds of state:

- *persistent*: its volume (``storage_gb``), holding one directory per
  mount path. Created by ``spawn``, kept by ``stop``, removed by ``destroy``.
- *runtime*: the running guest, its copy-on-write root, network device,
  cgroup and mounts. Everything outside the mount paths is reset on every
  start.

All methods are safe to call from several threads for *different* guests;
callers serialise operations on the *same* guest. Errors are raised as the
exceptions below, never as a backend's own error types.
"""
from __future__ import annotations

import abc
import enum
import posixpath
import re
from dataclasses import dataclass

GUEST_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
# Where a guest's init writes its output (and sshd's): what ``open_log`` follows.
INIT_LOG = "/var/log/appliance-init.log"


class GuestError(Exception):
    """Base of every driver error."""


class GuestNotFound(GuestError):
    """The guest (or its volume) does not exist."""


class GuestNotRunning(GuestError):
    """The operation needs a running guest."""


class GuestStartError(GuestError):
    """The guest could not be started; the message says why (shown to users)."""


class GuestNoRoom(GuestError):
    """Not enough host disk for the guest's volume; the message says how much."""


class GuestState(enum.StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"   # volume exists, guest not running
    MISSING = "missing"   # nothing exists for this id


@dataclass(frozen=True)
class GuestSpec:
    """Everything needed to start a guest. Passed again on every start, so
    changed mount paths or keys apply at the next start."""
    id: str
    ip: str
    memory_mb: int
    cpus: float
    storage_gb: float
    mount_paths: tuple[str, ...] = ("/root",)
    authorized_keys: tuple[str, ...] = ()
    hostname: str = ""
    # Most processes (threads included) the guest may have at once; 0 = the
    # driver's default.
    pids_max: int = 0

    def __post_init__(self):
        if not GUEST_ID_RE.match(self.id):
            raise ValueError(f"bad guest id {self.id!r}")
        for path in self.mount_paths:
            if not is_safe_mount_path(path):
                raise ValueError(f"bad mount path {path!r}")
        if self.pids_max < 0:
            raise ValueError("pids_max must be >= 0")


RESERVED_PATHS = ("/proc", "/sys", "/dev", "/run")


def is_safe_mount_path(path: str) -> bool:
    """Absolute, normalised, not / and not under a path the guest's system owns.
    (The API applies the same rules with user-facing messages; this is the
    driver's own guard, since the path becomes a bind mount.)"""
    return (path.startswith("/") and path != "/" and posixpath.normpath(path) == path
            and ".." not in path.split("/")
            and not any(path == r or path.startswith(r + "/") for r in RESERVED_PATHS))


@dataclass(frozen=True)
class GuestUsage:
    memory_used_bytes: int
    memory_limit_bytes: int
    storage_used_bytes: int
    storage_size_bytes: int
    # CPU time the guest has used since it started (its cgroup), nanoseconds;
    # 0 when stopped. Rates come from two readings.
    cpu_ns: int = 0


@dataclass(frozen=True)
class ExecResult:
    exit_code: int          # negative: killed by that signal
    stdout: bytes
    stderr: bytes


class PtyProcess(abc.ABC):
    """A process on a pseudo-terminal inside a guest.

    ``master_fd`` is the caller's: read output from it, write input to it.
    ``resize()`` changes the window size, ``poll()``/``wait()`` give the exit
    code, ``close()`` hangs up the terminal (the shell gets SIGHUP), kills
    the process if it lingers, and reaps it.
    """

    def __init__(self, master_fd: int):
        self.master_fd = master_fd

    def resize(self, cols: int, rows: int) -> None:
        import fcntl
        import struct
        import termios
        fcntl.ioctl(self.master_fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    @abc.abstractmethod
    def poll(self) -> int | None:
        """Exit code, or None while running."""

    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> int:
        """Block until exit (``TimeoutError`` after ``timeout``)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Hang up and reap. Idempotent."""


class GuestLog(abc.ABC):
    """A guest's log being followed (``GuestDriver.open_log``). Reads are
    quick and never block on the guest; nothing of the guest stays open
    between them."""

    @abc.abstractmethod
    def read(self) -> list[str]:
        """The first call: the backlog (the last lines, at most ~64 KiB); then
        the lines written since the previous call. Lines are at most 4096
        bytes (longer ones are cut), without their newline. A symlink or a
        non-regular file in the log's place is never followed or opened (one
        line says so). ``GuestNotRunning`` once the guest has stopped."""

    def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Stop following. Idempotent."""


# Ingress ports shared by name (HTTP Host, TLS SNI); every other port belongs to one guest.
SHARED_INGRESS_PORTS = (80, 443)


@dataclass(frozen=True)
class IngressRoute:
    """One forwarding: external ``port`` of the host to ``ip:target_port`` of a guest."""
    container_id: str
    ip: str
    port: int
    target_port: int


class IngressApplier(abc.ABC):
    """Makes the host forward the appliance's external ports to guests. The
    core decides which routes are live (rules of running containers, minus
    ports a host service holds); the applier only makes the host match.
    Calls come one at a time, from a worker thread."""

    @abc.abstractmethod
    def apply(self, routes: list[IngressRoute], reserved: set[int] | frozenset[int],
              running_addresses: set[str]) -> None:
        """Forward exactly ``routes`` (``SHARED_INGRESS_PORTS`` by name),
        never an exclusive port in
        ``reserved`` (the appliance's own). Then forget the connections of
        forwards and guest addresses that went away (``running_addresses``:
        the guests running now), so no old binding outlives its rule. Raises
        on a host failure; the next call starts over from the full set."""

    @abc.abstractmethod
    def stop(self) -> bool:
        """Stop the forwarding processes (the shared-port proxy), keeping
        the kernel rules; True if one was running (``appliance down``)."""

    @abc.abstractmethod
    def teardown(self) -> None:
        """Remove every forwarding this appliance made (tests, uninstall)."""


class GuestDriver(abc.ABC):
    @classmethod
    @abc.abstractmethod
    def from_config(cls, config) -> GuestDriver:
        """The driver for an ``appliance.config.Config`` (``drivers/factory.py``)."""

    @abc.abstractmethod
    def spawn(self, spec: GuestSpec) -> None:
        """Create a new guest (its volume) and start it.

        Returns once the guest's init is running (sshd may need a few more
        milliseconds). On any failure everything this call created is
        removed again (volume included) and ``GuestStartError`` is raised.
        If a guest with this id already exists, this behaves like ``start``.
        """

    @abc.abstractmethod
    def start(self, spec: GuestSpec) -> None:
        """Start an existing stopped guest with ``spec`` (mounts, keys, limits).

        A running guest is left alone (call ``restart`` to apply a changed
        spec). The root filesystem outside the mount paths starts fresh from
        the image; mount path directories are created in the volume on first
        use. SSH host keys are generated per guest; ``authorized_keys`` of
        root is written from ``spec.authorized_keys``. On failure nothing of
        the attempt is left running or mounted, the volume is kept, and
        ``GuestStartError`` is raised. ``GuestNotFound`` if no volume exists.
        """

    def reserve_storage(self, guest_id: str, storage_gb: float) -> None:  # noqa: B027 - optional, a no-op by default
        """Hold host disk for the volume of a guest about to be spawned, or
        raise ``GuestNoRoom``. Quick (no guest is touched); the hold lapses
        when the volume is made or after a few minutes."""

    def release_storage(self, guest_id: str) -> None:  # noqa: B027 - optional, a no-op by default
        """Drop the hold of ``reserve_storage`` (the create was refused after
        it); nothing if there is none."""

    def guest_image(self):
        """The root directory of the image guests start from (a ``Path``), for
        checking mount paths against it; None when the driver has no image."""
        return None

    def prepare_host(self, *, build_image: bool = True) -> None:  # noqa: B027 - a no-op unless overridden
        """Make the host ready to start guests (services, network, and the
        image when ``build_image``); raises with the reason when it cannot.
        Idempotent; the core retries it. Nothing to do by default."""

    def set_peer_networks(self, peers: list[tuple[str, str]]) -> None:  # noqa: B027 - a no-op unless overridden
        """The other hosts of the cluster, (address, guest subnet) pairs: route
        to their guests and keep this host's guests away from them and theirs."""

    @abc.abstractmethod
    def stored_guests(self) -> set[str]:
        """Ids of every guest with persistent state (a volume) on this host,
        running or not (the core's orphan sweep)."""

    @abc.abstractmethod
    def guest_host_keys(self, guest_id: str) -> list[str]:
        """The public SSH host keys of the guest's sshd (``"<type> <base64>"``),
        for the SSH gateway to verify; empty when the guest has none yet or
        is not running."""

    @abc.abstractmethod
    def stop_guests(self) -> list[str]:
        """Stop every running guest of this driver's data directory (not
        other appliances' guests on the same backend); the ids stopped.
        For ``appliance down``: volumes stay."""

    @abc.abstractmethod
    def ingress_applier(self, config) -> IngressApplier:
        """What forwards external ports to this driver's guests (``config``:
        an ``appliance.config.Config``, for ports, names and paths)."""

    def close(self) -> None:  # noqa: B027 - a no-op unless overridden
        """Release what the driver holds open (connections). Guests keep running."""

    def restart(self, spec: GuestSpec) -> None:
        """Stop then start with ``spec``; the volume's data is kept."""
        self.stop(spec.id)
        self.start(spec)

    @abc.abstractmethod
    def stop(self, guest_id: str) -> None:
        """Stop the guest; keep its volume. Idempotent: stopping a stopped or
        missing guest succeeds. Afterwards no process, mount, loop device,
        veth or cgroup of the guest is left on the host."""

    @abc.abstractmethod
    def destroy(self, guest_id: str) -> None:
        """Stop the guest and delete everything it had, volume included.
        Destroying a missing guest succeeds."""

    @abc.abstractmethod
    def state(self, guest_id: str) -> GuestState:
        """RUNNING, STOPPED (volume only) or MISSING."""

    @abc.abstractmethod
    def running_guests(self) -> list[str]:
        """Ids of guests this driver runs now (for reconciliation at start-up)."""

    @abc.abstractmethod
    def usage(self, guest_id: str) -> GuestUsage:
        """Live readings: memory and CPU time from the guest's cgroup (0 when
        stopped), storage from its volume. ``GuestNotFound`` if missing.
        Cheap enough to call for every guest every few seconds."""

    @abc.abstractmethod
    def exec(self, guest_id: str, argv: list[str], *, input: bytes | None = None,
             timeout: float | None = None, env: dict[str, str] | None = None) -> ExecResult:
        """Run ``argv`` inside the guest (its namespaces and cgroup) as root
        with cwd ``/`` and return its exit code and output. On timeout the
        process is killed and ``TimeoutError`` raised. ``GuestNotRunning``
        unless running."""

    @abc.abstractmethod
    def open_log(self, guest_id: str) -> GuestLog:
        """Follow the guest's init log (``INIT_LOG`` inside the guest: the
        output of its init and sshd, which is this guest's console output).
        ``GuestNotRunning`` unless running, ``GuestNotFound`` if missing."""

    @abc.abstractmethod
    def open_pty(self, guest_id: str, argv: list[str] | None = None, *, cols: int = 80,
                 rows: int = 24, env: dict[str, str] | None = None) -> PtyProcess:
        """Start ``argv`` (default: a login shell) on a new pseudo-terminal
        *inside* the guest and hand back the master side."""
