"""A seccomp filter for jailed run processes: the system calls tenant code never needs and that
would let it leave or widen its jail are refused with ``EPERM``.

Refused: ``ptrace`` and cross-process memory access, namespace and mount changes, kernel keyrings,
BPF, perf events, userfaultfd, io_uring, module loading, kexec, reboot, swap, accounting,
``open_by_handle_at``, and ``clone``/``clone3`` creating namespaces (``clone3`` answers ``ENOSYS``
so the C library falls back to ``clone``, whose flags a filter can read). Built by hand as a
classic BPF program (no libseccomp), for x86_64 and aarch64; other architectures get no filter
and :func:`install` says so.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct

# struct seccomp_data: nr (u32), arch (u32), instruction_pointer (u64), args[6] (u64)
_OFFSET_NR, _OFFSET_ARCH, _OFFSET_ARG0_LOW = 0, 4, 16

_BPF_LD_W_ABS, _BPF_JEQ_K, _BPF_JGE_K, _BPF_JSET_K, _BPF_RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_RET_KILL_PROCESS = 0x80000000

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
CLONE_NAMESPACES = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x00000080

_ARCHES = {
    # machine: (AUDIT_ARCH, {name: number})
    "x86_64": (0xC000003E, {
        "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "unshare": 272, "setns": 308,
        "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "keyctl": 250, "add_key": 248,
        "request_key": 249, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323, "io_uring_setup": 425,
        "init_module": 175, "finit_module": 313, "delete_module": 176, "kexec_load": 246, "kexec_file_load": 320,
        "reboot": 169, "swapon": 167, "swapoff": 168, "acct": 163, "open_by_handle_at": 304,
        "fsopen": 430, "fsmount": 432, "move_mount": 429, "open_tree": 428, "mount_setattr": 442,
        "personality": 135, "clone": 56, "clone3": 435,
    }),
    "aarch64": (0xC00000B7, {
        "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "unshare": 97, "setns": 268,
        "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51, "keyctl": 219, "add_key": 217,
        "request_key": 218, "bpf": 280, "perf_event_open": 241, "userfaultfd": 282, "io_uring_setup": 425,
        "init_module": 105, "finit_module": 273, "delete_module": 106, "kexec_load": 104, "kexec_file_load": 294,
        "reboot": 142, "swapon": 224, "swapoff": 225, "acct": 89, "open_by_handle_at": 265,
        "fsopen": 430, "fsmount": 432, "move_mount": 429, "open_tree": 428, "mount_setattr": 442,
        "personality": 92, "clone": 220, "clone3": 435,
    }),
}


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def program(machine: str | None = None) -> bytes | None:
    """The filter as ``struct sock_filter`` bytes for this machine, or ``None`` when unsupported."""
    found = _ARCHES.get(machine or platform.machine())
    if found is None:
        return None
    arch, numbers = found
    denied = [n for name, n in numbers.items() if name not in ("clone", "clone3", "personality")]
    eperm = _RET_ERRNO | errno.EPERM
    code = [
        _insn(_BPF_LD_W_ABS, 0, 0, _OFFSET_ARCH),
        _insn(_BPF_JEQ_K, 1, 0, arch),  # another ABI (x32, i386 on x86_64): kill
        _insn(_BPF_RET_K, 0, 0, _RET_KILL_PROCESS),
        _insn(_BPF_LD_W_ABS, 0, 0, _OFFSET_NR),
    ]
    if arch == 0xC000003E:  # x32 system calls share the arch value and have bit 30 set
        code += [_insn(_BPF_JGE_K, 0, 1, 0x40000000), _insn(_BPF_RET_K, 0, 0, eperm)]
    for number in denied:
        code += [_insn(_BPF_JEQ_K, 0, 1, number), _insn(_BPF_RET_K, 0, 0, eperm)]
    code += [_insn(_BPF_JEQ_K, 0, 1, numbers["clone3"]), _insn(_BPF_RET_K, 0, 0, _RET_ERRNO | errno.ENOSYS)]
    # personality(): only the query (0xffffffff) and PER_LINUX (0) are allowed
    code += [
        _insn(_BPF_JEQ_K, 0, 5, numbers["personality"]),
        _insn(_BPF_LD_W_ABS, 0, 0, _OFFSET_ARG0_LOW),
        _insn(_BPF_JEQ_K, 2, 0, 0xFFFFFFFF),
        _insn(_BPF_JEQ_K, 1, 0, 0),
        _insn(_BPF_RET_K, 0, 0, eperm),
        _insn(_BPF_RET_K, 0, 0, _RET_ALLOW),
    ]
    # clone(): no new namespaces (flags are the first argument on both architectures)
    code += [
        _insn(_BPF_JEQ_K, 0, 3, numbers["clone"]),
        _insn(_BPF_LD_W_ABS, 0, 0, _OFFSET_ARG0_LOW),
        _insn(_BPF_JSET_K, 0, 1, CLONE_NAMESPACES),
        _insn(_BPF_RET_K, 0, 0, eperm),
        _insn(_BPF_RET_K, 0, 0, _RET_ALLOW),
    ]
    return b"".join(code)


def install() -> bool:
    """Set ``no_new_privs`` and load the filter into this process (inherited by its children).

    Returns False when this architecture has no filter; raises ``OSError`` when loading fails.
    """
    code = program()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if code is None:
        return False
    buffer = ctypes.create_string_buffer(code)

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = SockFprog(len(code) // 8, ctypes.addressof(buffer))
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")
    return True
