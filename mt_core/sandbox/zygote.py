"""The fork server of the local jail. Runs inside bubblewrap, never in the service process.

Started once per jail by :mod:`mt_core.sandbox.jail` with smolagents (and the installed
package tools) imported, it forks one process per run or tool validation. Each such process
gets its own user, PID, mount, network, IPC and UTS namespaces (so runs cannot see, signal or
reach one another), a private ``/tmp``, an empty ``/proc``, no capabilities, a seccomp filter,
and rlimits; it then serves :mod:`mt_core.sandbox.session` on the socket the host gave it.

Control messages (one per ``sendmsg``, the run's socket attached as ``SCM_RIGHTS``) are JSON:
``{"tmpfs_bytes": n}``. The run process first sends ``{"hello": 1}`` (the kernel attaches its
credentials, which is how the host learns its PID), waits for ``{"go": {...limits, env}}``, and
answers ``{"ok": true}`` once it is confined.
"""

from __future__ import annotations

import array
import ctypes
import json
import os
import signal
import socket
import sys
from typing import Any

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 4096, 16384, 1 << 18
PR_SET_DUMPABLE = 4
JAIL_ID = 65534  # the unprivileged user a jail started by root runs as (nobody)
BASE_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1"}

_libc: Any = None


def libc() -> Any:
    """The C library, for the system calls Python does not wrap."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def drop_privileges() -> None:
    """When started as root (bubblewrap without a user namespace), become ``nobody`` for good."""
    if os.geteuid() != 0:
        return
    os.setgroups([])
    os.setresgid(JAIL_ID, JAIL_ID, JAIL_ID)
    os.setresuid(JAIL_ID, JAIL_ID, JAIL_ID)
    # setuid clears "dumpable", which makes /proc/self root's and blocks the user namespace maps
    _check(libc().prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")


def preload() -> None:
    """Import what every run needs, once, so that a forked run starts warm."""
    import smolagents  # noqa: F401
    import smolagents.default_tools  # noqa: F401
    import smolagents.local_python_executor  # noqa: F401

    from mt_core import plugins, tool_loader  # noqa: F401
    from mt_core.sandbox import seccomp, session  # noqa: F401

    for entry_point in filter(None, os.environ.get("MT_JAIL_PLUGINS", "").split(",")):
        try:  # package tools' modules, imported once for every run
            plugins._loader({"value": entry_point})()
        except Exception:  # noqa: BLE001 - a run reports a missing package tool itself
            pass


def _new_namespaces() -> None:
    uid, gid = os.getuid(), os.getgid()
    _check(libc().unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS),
           "unshare")
    with open("/proc/self/setgroups", "w") as handle:
        handle.write("deny")
    with open("/proc/self/uid_map", "w") as handle:
        handle.write(f"{uid} {uid} 1")
    with open("/proc/self/gid_map", "w") as handle:
        handle.write(f"{gid} {gid} 1")


def _mount(source: bytes, target: bytes, fstype: bytes | None, flags: int, data: bytes | None) -> None:
    _check(libc().mount(source, target, fstype, flags, data), f"mount {target.decode()}")


def _loopback_up() -> None:
    """Bring ``lo`` up in the run's own network namespace (so tools may talk to themselves)."""
    import fcntl
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(sock, 0x8913, request))[1]  # SIOCGIFFLAGS
        fcntl.ioctl(sock, 0x8914, struct.pack("16sH14s", b"lo", flags | 0x1, b""))  # SIOCSIFFLAGS, IFF_UP


def _drop_capabilities() -> None:
    """Clear every capability this process holds in its own user namespace."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    header = Header(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (Data * 2)()
    _check(libc().capset(ctypes.byref(header), data), "capset")


def _vm_size() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _apply_limits(limits: dict[str, int], vm_size: int) -> None:
    import resource

    memory = int(limits["memory_bytes"])
    address_space = vm_size + memory  # the forked interpreter's own mappings are not the run's
    for name, value in (
        ("RLIMIT_AS", address_space), ("RLIMIT_NPROC", int(limits["pids"])),
        ("RLIMIT_CPU", int(limits["cpu_seconds"])), ("RLIMIT_FSIZE", int(limits["file_bytes"])),
        ("RLIMIT_NOFILE", int(limits["open_files"])), ("RLIMIT_CORE", 0), ("RLIMIT_MEMLOCK", 0),
    ):
        resource.setrlimit(getattr(resource, name), (value, value))


def _read_line(sock: socket.socket) -> dict[str, Any]:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("the host closed the run's socket")
        data += chunk
    return json.loads(data)


def _private_tmp(tmpfs_bytes: int) -> None:
    """A fresh ``/tmp`` for this run, with the jail's read-only paths under ``/tmp`` (a checkout or
    a ``--target`` folder there) bound into it again."""
    keep = [path for path in os.environ.get("MT_JAIL_TMP_BINDS", "").split(os.pathsep) if path]
    old = os.open("/tmp", os.O_PATH | os.O_DIRECTORY)
    try:
        _mount(b"tmpfs", b"/tmp", b"tmpfs", MS_NOSUID | MS_NODEV, f"size={tmpfs_bytes},mode=1777".encode())
        for path in keep:
            source = f"/proc/self/fd/{old}/{os.path.relpath(path, '/tmp')}"
            if os.path.isdir(source):
                os.makedirs(path, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                open(path, "a").close()
            _mount(source.encode(), path.encode(), None, MS_BIND | MS_REC, None)
    finally:
        os.close(old)


def run_process(fd: int, tmpfs_bytes: int) -> None:
    """Pid 1 of a new run: confine this process, then serve the run's session. Never returns."""
    code = 1
    try:
        vm_size = _vm_size()
        _mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None)
        _private_tmp(tmpfs_bytes)
        _mount(b"tmpfs", b"/proc", b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, b"size=4k,mode=555")
        libc().sethostname(b"sandbox", 7)
        try:
            _loopback_up()
        except OSError:
            pass
        _drop_capabilities()
        sock = socket.socket(fileno=fd)
        sock.sendall(b'{"hello": 1}\n')
        go = _read_line(sock)["go"]
        _apply_limits(go["limits"], vm_size)
        os.environ.clear()
        os.environ.update({**BASE_ENV, **{str(k): str(v) for k, v in (go.get("env") or {}).items()}})
        os.chdir("/tmp")
        devnull = os.open(os.devnull, os.O_RDWR)
        for target in (0, 1, 2):
            os.dup2(devnull, target)
        os.closerange(3, fd)
        os.closerange(fd + 1, 65536)
        sys.stdout = sys.stderr = open(os.devnull, "w")
        _check(libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")
        from mt_core.sandbox import seccomp, session

        filtered = seccomp.install()
        reader = sock.makefile("r", encoding="utf-8", newline="\n")
        writer = sock.makefile("w", encoding="utf-8", newline="\n")
        writer.write(json.dumps({"ok": True, "seccomp": filtered}) + "\n")
        writer.flush()
        session.serve(reader, writer)
        code = 0
    except BaseException as exc:  # noqa: BLE001 - report what failed, if the host still listens
        try:
            os.write(fd, (json.dumps({"ok": False, "error": f"jail setup failed: {exc}"}) + "\n").encode())
        except OSError:
            pass
    finally:
        os._exit(code)


def spawn(control: socket.socket, fd: int, request: dict[str, Any]) -> None:
    """Fork the run process for the socket ``fd`` (in new namespaces, as pid 1)."""
    if os.fork() == 0:  # the intermediate process: makes the namespaces, forks pid 1, leaves
        try:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the run's own children are its to wait for
            control.close()
            os.setsid()
            _new_namespaces()
            if os.fork() == 0:
                run_process(fd, int(request.get("tmpfs_bytes", 64 << 20)))
        finally:
            os._exit(0)
    os.close(fd)


def main() -> None:
    """Serve fork requests on the control socket until the host closes it."""
    fd = int(sys.argv[sys.argv.index("--control-fd") + 1])
    drop_privileges()
    control = socket.socket(fileno=fd)
    preload()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # intermediate processes are reaped by the kernel
    control.sendall(b"R")
    while True:
        message, ancillary, _, _ = control.recvmsg(65536, socket.CMSG_SPACE(4))
        if not message:
            os._exit(0)
        fds = array.array("i")
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
        for extra in fds[1:]:
            os.close(extra)
        if fds:
            spawn(control, fds[0], json.loads(message))


if __name__ == "__main__":
    main()
