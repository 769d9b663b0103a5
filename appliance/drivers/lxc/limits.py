"""Kernel resources a guest could take from the host without being charged:
a seccomp filter (kernel keys), the per-guest TCP buffer limit, and the
open-files cap. docs/isolation.md ("Kernel objects") has the review.

**Seccomp.** Kernel keys are not charged to the guest's memory cgroup, and
each uid mapped into a guest has a key quota of its own (65,536 of them per
guest): ``add_key``, ``keyctl`` and ``request_key`` fail with EPERM in every
guest process (Docker's default profile blocks them for the same reason).
libvirt's LXC driver has no seccomp element, so the filter is put in place by
the appliance where every guest process descends from:

- the guest's init and everything it forks: libvirt runs the domain's
  ``<emulator>`` (its LXC controller, which forks the init). The driver points
  it at a tiny C wrapper that installs the filter and the open-files cap and
  then ``exec``s the real ``libvirt_lxc``: the filter is in place before the
  first guest instruction and is inherited, irrevocably, by every descendant;
- processes the appliance starts inside (``exec``, terminals): the
  ``nsexec`` helper installs the same filter before it joins the guest.

The BPF program is generated once with libseccomp (ctypes over
``libseccomp.so.2``, already a dependency of libvirt), which handles the
architecture checks and the compat ABIs (i386 and x32 on x86_64, arm on
aarch64) a hand-written filter gets wrong easily; anything else is allowed.
Why a compiled wrapper rather than Python: a Python interpreter as the
controller's wrapper costs ~80 ms per start on this machine (the whole start
is ~200 ms); the C one costs ~1 ms and is built once per host (gcc is an
install dependency) into ``<data_dir>/bin``, named by the hash of its source.
Installed by host root (CAP_SYS_ADMIN), the filter needs no ``no_new_privs``:
setuid programs inside the guest keep working.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import os
import platform
import subprocess
import threading
from pathlib import Path

DENIED_SYSCALLS = ("add_key", "keyctl", "request_key")
# socket(domain, type) pairs refused with EPERM (type compared under SOCK_TYPE_MASK;
# None: any type). Packet and raw IP sockets queue clones of packets that no
# memory cgroup is charged for (docs/isolation.md, "Kernel objects"); the
# domain XML also takes CAP_NET_RAW, but a nested user + network namespace
# would give it back, the filter does not.
AF_INET, AF_INET6, AF_PACKET = 2, 10, 17
SOCK_RAW, SOCK_PACKET, SOCK_TYPE_MASK = 3, 10, 0xF
DENIED_SOCKETS = ((AF_PACKET, None), (AF_INET, SOCK_RAW), (AF_INET6, SOCK_RAW), (AF_INET, SOCK_PACKET))
LIBVIRT_LXC = "/usr/lib/libvirt/libvirt_lxc"

_SCMP_ACT_ALLOW = 0x7FFF0000
_SCMP_ACT_ERRNO = 0x00050000
_SCMP_CMP_EQ = 4
_SCMP_CMP_MASKED_EQ = 7
# extra ABIs a process of this architecture can call the kernel with
_COMPAT_ARCHES = {"x86_64": (0x40000003, 0x4000003E),   # SCMP_ARCH_X86, SCMP_ARCH_X32
                  "aarch64": (0x40000028,)}              # SCMP_ARCH_ARM
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
_libc = ctypes.CDLL(None, use_errno=True)
_lock = threading.Lock()
_filter: bytes | None = None


class GuestLimitError(RuntimeError):
    pass


class _ArgCmp(ctypes.Structure):   # struct scmp_arg_cmp
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


def seccomp_filter() -> bytes:
    """The guest filter as raw BPF (``struct sock_filter`` array), built once."""
    global _filter
    with _lock:
        if _filter is None:
            _filter = _build_filter()
        return _filter


def _build_filter() -> bytes:
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as e:
        raise GuestLimitError(f"libseccomp is needed for the guest seccomp filter: {e}") from e
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(_ArgCmp)]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    ctx = lib.seccomp_init(_SCMP_ACT_ALLOW)
    if not ctx:
        raise GuestLimitError("seccomp_init failed")
    try:
        for arch in _COMPAT_ARCHES.get(platform.machine(), ()):
            rc = lib.seccomp_arch_add(ctx, arch)
            if rc not in (0, -errno.EEXIST):
                raise GuestLimitError(f"seccomp_arch_add({arch:#x}): {os.strerror(-rc)}")
        for call in DENIED_SYSCALLS:
            nr = lib.seccomp_syscall_resolve_name(call.encode())
            if nr < 0:
                raise GuestLimitError(f"libseccomp does not know {call}")
            rc = lib.seccomp_rule_add(ctx, _SCMP_ACT_ERRNO | errno.EPERM, nr, 0)
            if rc != 0:
                raise GuestLimitError(f"seccomp_rule_add({call}): {os.strerror(-rc)}")
        nr = lib.seccomp_syscall_resolve_name(b"socket")
        for domain, kind in DENIED_SOCKETS:
            cmps = [_ArgCmp(0, _SCMP_CMP_EQ, domain, 0)]
            if kind is not None:
                cmps.append(_ArgCmp(1, _SCMP_CMP_MASKED_EQ, SOCK_TYPE_MASK, kind))
            arr = (_ArgCmp * len(cmps))(*cmps)
            rc = lib.seccomp_rule_add_array(ctx, _SCMP_ACT_ERRNO | errno.EPERM, nr, len(cmps), arr)
            if rc != 0:
                raise GuestLimitError(f"seccomp_rule_add(socket {domain}/{kind}): {os.strerror(-rc)}")
        r, w = os.pipe()
        try:
            rc = lib.seccomp_export_bpf(ctx, w)
            os.close(w)
            w = -1
            if rc != 0:
                raise GuestLimitError(f"seccomp_export_bpf: {os.strerror(-rc)}")
            chunks = []
            while block := os.read(r, 65536):
                chunks.append(block)
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)
    finally:
        lib.seccomp_release(ctx)
    bpf = b"".join(chunks)
    if not bpf or len(bpf) % 8:
        raise GuestLimitError("libseccomp exported no usable filter")
    return bpf


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class Program:
    """The filter ready for ``prctl``, made in the parent so a forked child only
    makes the call."""

    def __init__(self, bpf: bytes):
        self._buf = ctypes.create_string_buffer(bpf, len(bpf))
        self.fprog = _SockFprog(len(bpf) // 8, ctypes.cast(self._buf, ctypes.c_void_p))
        self.ref = ctypes.byref(self.fprog)

    def install(self) -> None:
        """Filter the calling thread and everything it runs from now on."""
        if _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, self.ref, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"seccomp: {os.strerror(err)}")


# -- the controller wrapper ------------------------------------------------------

_WRAPPER_C = r"""/* Written by the appliance (drivers/guestlimits.py): libvirt runs this as a
   guest's LXC controller. Cap open files, install the guest seccomp filter
   (inherited by the guest's init and all it runs), then become the real
   controller. */
#include <stdio.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

static const unsigned char bpf[] __attribute__((aligned(8))) = {@BPF@};

int main(int argc, char **argv) {
    (void)argc;
    struct rlimit nofile = {@NOFILE@, @NOFILE@};
    if (setrlimit(RLIMIT_NOFILE, &nofile) != 0) {
        perror("appliance guest wrapper: setrlimit");
        return 126;
    }
    /* The guest's user namespace takes these as the ceiling of what all its
       uids together may count against host root (drivers/ucounts.py): none,
       so one tenant never refuses another's; the guest's processes get
       small per-uid limits from the host. Raising a hard limit needs
       CAP_SYS_RESOURCE: without it, the soft limit goes up to the hard one. */
    int res[2] = {RLIMIT_MSGQUEUE, RLIMIT_SIGPENDING};
    for (int i = 0; i < 2; i++) {
        struct rlimit lim = {RLIM_INFINITY, RLIM_INFINITY};
        if (setrlimit(res[i], &lim) != 0 && getrlimit(res[i], &lim) == 0) {
            lim.rlim_cur = lim.rlim_max;
            setrlimit(res[i], &lim);
        }
    }
    struct sock_fprog prog = {sizeof bpf / sizeof(struct sock_filter), (struct sock_filter *)bpf};
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0) {
        perror("appliance guest wrapper: seccomp");
        return 126;
    }
    execv("@TARGET@", argv);
    perror("appliance guest wrapper: @TARGET@");
    return 127;
}
"""


def wrapper_source(nofile: int, target: str = LIBVIRT_LXC) -> str:
    bpf = ",".join(str(b) for b in seccomp_filter())
    return (_WRAPPER_C.replace("@BPF@", bpf).replace("@NOFILE@", str(int(nofile)))
            .replace("@TARGET@", target))


def ensure_wrapper(bin_dir: str | os.PathLike, nofile: int, target: str = LIBVIRT_LXC) -> Path:
    """The compiled controller wrapper (built once; its name is its source's hash)."""
    source = wrapper_source(nofile, target)
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    out = Path(bin_dir) / f"libvirt-lxc-guest-{digest}"
    if out.exists():
        return out
    with _lock:
        if out.exists():
            return out
        Path(bin_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        src = out.with_name(f".{out.name}.{os.getpid()}.c")
        tmp = out.with_name(f".{out.name}.{os.getpid()}")
        try:
            src.write_text(source)
            try:
                proc = subprocess.run(["gcc", "-O2", "-o", str(tmp), str(src)], capture_output=True, text=True)
            except FileNotFoundError:
                raise GuestLimitError("gcc is needed once to build the guest seccomp wrapper") from None
            if proc.returncode != 0:
                raise GuestLimitError(f"building the guest seccomp wrapper failed: {proc.stderr.strip()[-500:]}")
            os.chmod(tmp, 0o700)
            os.rename(tmp, out)
        finally:
            src.unlink(missing_ok=True)
            tmp.unlink(missing_ok=True)
    return out


# -- TCP buffer memory -------------------------------------------------------------

def limit_tcp_memory(memory_cgroup: str | os.PathLike | None, limit_bytes: int) -> bool:
    """cgroup v1: switch on TCP accounting for the guest's memory cgroup with
    this limit (sockets created afterwards are charged; at the limit the
    guest's sockets are under memory pressure and their queues stop growing).
    False when there is no such file (cgroup v2: memory.max covers socket
    memory)."""
    if memory_cgroup is None or limit_bytes <= 0:
        return False
    f = Path(memory_cgroup, "memory.kmem.tcp.limit_in_bytes")
    if not f.exists():
        return False
    f.write_text(f"{int(limit_bytes)}\n")
    return True
