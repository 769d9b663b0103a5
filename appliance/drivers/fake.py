"""An in-memory guest driver honouring the ``GuestDriver`` contract, for quick
tests of the layers above. It runs nothing: ``exec`` answers from a small
table of canned commands, files live in dicts, and the ingress applier
records the routes it would forward (``driver.ingress``).

Knobs for tests: ``disk_bytes`` (host disk for volumes: ``reserve_storage``
refuses what does not fit beside the guests' full sizes), ``fail_next_start`` (the next start raises
``GuestStartError`` and, for a spawn, leaves nothing behind), ``start_delay``
(seconds a start takes), ``memory_used_bytes``, ``cpu_ns`` (a running guest's
CPU time counter, by guest id; set it to simulate load), and ``crash(id)`` (the guest
dies as if its init exited; its volume stays).
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

from appliance.drivers.base import (
    INIT_LOG,
    SHARED_INGRESS_PORTS,
    ExecResult,
    GuestDriver,
    GuestLog,
    GuestNoRoom,
    GuestNotFound,
    GuestNotRunning,
    GuestSpec,
    GuestStartError,
    GuestState,
    GuestUsage,
    IngressApplier,
    IngressRoute,
    PtyProcess,
)
from appliance.host.guestlog import LogCursor


@dataclass
class FakeGuest:
    spec: GuestSpec
    running: bool = False
    starts: int = 0
    volume: dict[str, bytes] = field(default_factory=dict)   # path -> content, under mount paths
    host_keys: list[str] = field(default_factory=list)      # made at the first start, kept with the volume
    layer: dict[str, bytes] = field(default_factory=dict)    # everything else, reset on start

    def in_mounts(self, path: str) -> bool:
        return any(path == m or path.startswith(m.rstrip("/") + "/") for m in self.spec.mount_paths)


class FakePty(PtyProcess):
    """A pipe pair standing in for a terminal: whatever is written to
    ``master_fd`` is echoed back."""

    def __init__(self):
        self._guest_side, master = _socketpair()
        super().__init__(master)
        self._status: int | None = None
        self._thread = threading.Thread(target=self._echo, daemon=True)
        self._thread.start()

    def _echo(self) -> None:
        while True:
            try:
                data = os.read(self._guest_side, 4096)
            except OSError:
                break
            if not data:
                break
            os.write(self._guest_side, data)
        self._status = 0

    def resize(self, cols: int, rows: int) -> None:
        self.size = (cols, rows)

    def poll(self) -> int | None:
        return self._status

    def wait(self, timeout: float | None = None) -> int:
        self._thread.join(timeout)
        if self._status is None:
            raise TimeoutError("fake terminal still open")
        return self._status

    def close(self) -> None:
        if self.master_fd >= 0:
            os.close(self.master_fd)
            self.master_fd = -1
            self._thread.join(1)
            os.close(self._guest_side)
        self._status = 0 if self._status is None else self._status


class FakeGuestLog(GuestLog):
    """The init log held in the guest's layer, read with the real driver's cursor."""

    def __init__(self, guest: FakeGuest):
        self.guest, self.starts = guest, guest.starts
        self.cursor = LogCursor()

    def read(self) -> list[str]:
        if not self.guest.running or self.guest.starts != self.starts:
            raise GuestNotRunning(f"guest {self.guest.spec.id} has stopped")
        data = self.guest.layer.get(INIT_LOG, b"")
        offset, length, lines = self.cursor.plan(self.starts, len(data))
        return lines + self.cursor.take(data[offset:offset + length])


def _socketpair() -> tuple[int, int]:
    import socket
    a, b = socket.socketpair()
    return a.detach(), b.detach()


def _new_host_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    return public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


class FakeIngress(IngressApplier):
    """Forwards nothing; ``routes`` is what the host would forward now
    (exclusive ports in ``reserved`` left out, as the real applier does),
    ``proxy_running`` whether the shared-port proxy would run."""

    def __init__(self):
        self.routes: list[IngressRoute] = []
        self.running_addresses: set[str] = set()
        self.proxy_running = False
        self.passes = 0

    def apply(self, routes: list[IngressRoute], reserved: set[int] | frozenset[int],
              running_addresses: set[str]) -> None:
        self.routes = [r for r in routes if r.port in SHARED_INGRESS_PORTS or r.port not in reserved]
        self.running_addresses = set(running_addresses)
        self.proxy_running = any(r.port in SHARED_INGRESS_PORTS for r in self.routes)
        self.passes += 1

    def stop(self) -> bool:
        was, self.proxy_running = self.proxy_running, False
        return was

    def teardown(self) -> None:
        self.routes, self.proxy_running = [], False


class FakeDriver(GuestDriver):
    def __init__(self, *, storage_used_bytes: int = 0, memory_used_bytes: int = 32 << 20):
        self.guests: dict[str, FakeGuest] = {}
        self.fail_next_start: str | None = None
        self.start_delay = 0.0
        self.memory_used_bytes = memory_used_bytes
        self.cpu_ns: dict[str, int] = {}
        self.storage_used_bytes = storage_used_bytes
        self.disk_bytes: int | None = 1 << 40   # host disk for volumes (None: room for anything)
        self.reserved: dict[str, int] = {}
        self.ingress = FakeIngress()
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config) -> FakeDriver:
        return cls()

    def stored_guests(self) -> set[str]:
        return set(self.guests)

    def guest_host_keys(self, guest_id: str) -> list[str]:
        guest = self.guests.get(guest_id)
        return list(guest.host_keys) if guest is not None and guest.running else []

    def stop_guests(self) -> list[str]:
        stopped = self.running_guests()
        for guest_id in stopped:
            self.stop(guest_id)
        return stopped

    def ingress_applier(self, config) -> FakeIngress:
        return self.ingress

    def reserve_storage(self, guest_id: str, storage_gb: float) -> None:
        if self.disk_bytes is None:
            return
        with self._lock:
            need = int(storage_gb * (1 << 30))
            taken = sum(int(g.spec.storage_gb * (1 << 30)) for g in self.guests.values())
            taken += sum(v for k, v in self.reserved.items() if k not in self.guests)
            if taken + need > self.disk_bytes:
                raise GuestNoRoom(f"not enough disk for a {storage_gb:g} GB volume")
            self.reserved[guest_id] = need

    def release_storage(self, guest_id: str) -> None:
        with self._lock:
            if guest_id not in self.guests:
                self.reserved.pop(guest_id, None)

    def spawn(self, spec: GuestSpec) -> None:
        with self._lock:
            created = spec.id not in self.guests
            if created:
                self.guests[spec.id] = FakeGuest(spec)
        try:
            self.start(spec)
        except BaseException:
            if created:
                self.guests.pop(spec.id, None)
            raise

    def start(self, spec: GuestSpec) -> None:
        guest = self.guests.get(spec.id)
        if guest is None:
            raise GuestNotFound(f"guest {spec.id} does not exist")
        if guest.running:
            return
        if self.start_delay:
            time.sleep(self.start_delay)
        if self.fail_next_start is not None:
            reason, self.fail_next_start = self.fail_next_start, None
            raise GuestStartError(f"guest {spec.id} could not start: {reason}")
        guest.spec = spec
        if not guest.host_keys:
            guest.host_keys = [_new_host_key()]
        guest.layer = {"/root/.ssh/authorized_keys": "".join(k.strip() + "\n" for k in spec.authorized_keys).encode(),
                       INIT_LOG: f"appliance-init: starting {spec.hostname or spec.id}\n"
                                 "appliance-init: sshd started; ready\n".encode()}
        if guest.in_mounts("/root/.ssh/authorized_keys"):
            guest.volume["/root/.ssh/authorized_keys"] = guest.layer.pop("/root/.ssh/authorized_keys")
        guest.running = True
        guest.starts += 1

    def stop(self, guest_id: str) -> None:
        guest = self.guests.get(guest_id)
        if guest is not None:
            guest.running = False

    def destroy(self, guest_id: str) -> None:
        self.guests.pop(guest_id, None)
        self.reserved.pop(guest_id, None)

    def crash(self, guest_id: str) -> None:
        self.guests[guest_id].running = False

    def state(self, guest_id: str) -> GuestState:
        guest = self.guests.get(guest_id)
        if guest is None:
            return GuestState.MISSING
        return GuestState.RUNNING if guest.running else GuestState.STOPPED

    def running_guests(self) -> list[str]:
        return sorted(gid for gid, g in self.guests.items() if g.running)

    def usage(self, guest_id: str) -> GuestUsage:
        guest = self.guests.get(guest_id)
        if guest is None:
            raise GuestNotFound(f"guest {guest_id} does not exist")
        stored = sum(len(v) for v in guest.volume.values()) + self.storage_used_bytes
        return GuestUsage(
            memory_used_bytes=self.memory_used_bytes if guest.running else 0,
            memory_limit_bytes=guest.spec.memory_mb << 20,
            storage_used_bytes=stored,
            storage_size_bytes=int(guest.spec.storage_gb * (1 << 30)),
            cpu_ns=self.cpu_ns.get(guest_id, 0) if guest.running else 0,
        )

    def exec(self, guest_id: str, argv: list[str], *, input: bytes | None = None,
             timeout: float | None = None, env: dict[str, str] | None = None) -> ExecResult:
        """Understands ``cat PATH``, ``write PATH`` (stdin -> file), ``echo ...``,
        ``true``/``false``, ``sh -c 'echo WORDS >> PATH'``; anything else exits 127."""
        guest = self._running(guest_id)
        cmd, args = argv[0], argv[1:]
        if cmd == "echo":
            return ExecResult(0, (" ".join(args) + "\n").encode(), b"")
        if cmd in ("true", "false"):
            return ExecResult(0 if cmd == "true" else 1, b"", b"")
        if cmd == "cat" and len(args) == 1:
            files = guest.volume if guest.in_mounts(args[0]) else guest.layer
            if args[0] in files:
                return ExecResult(0, files[args[0]], b"")
            return ExecResult(1, b"", f"cat: {args[0]}: No such file or directory\n".encode())
        if cmd == "sh" and len(args) == 2 and args[0] == "-c" and args[1].startswith("echo ") and " >> " in args[1]:
            words, path = args[1][5:].rsplit(" >> ", 1)
            files = guest.volume if guest.in_mounts(path) else guest.layer
            files[path] = files.get(path, b"") + words.encode() + b"\n"
            return ExecResult(0, b"", b"")
        if cmd == "write" and len(args) == 1:
            files = guest.volume if guest.in_mounts(args[0]) else guest.layer
            files[args[0]] = input or b""
            return ExecResult(0, b"", b"")
        return ExecResult(127, b"", f"{cmd}: command not found\n".encode())

    def open_log(self, guest_id: str) -> GuestLog:
        if guest_id not in self.guests:
            raise GuestNotFound(f"guest {guest_id} does not exist")
        return FakeGuestLog(self._running(guest_id))

    def open_pty(self, guest_id: str, argv: list[str] | None = None, *, cols: int = 80,
                 rows: int = 24, env: dict[str, str] | None = None) -> PtyProcess:
        self._running(guest_id)
        pty = FakePty()
        pty.resize(cols, rows)
        return pty

    def _running(self, guest_id: str) -> FakeGuest:
        guest = self.guests.get(guest_id)
        if guest is None or not guest.running:
            raise GuestNotRunning(f"guest {guest_id} is not running")
        return guest
