"""The local jail (host side): a bubblewrap sandbox with a fork server inside, and the run
processes it forks.

The jail sees a read-only system (``/usr``, a few files of ``/etc``), the Python installation
and the packages that runs import, and nothing else of the host: no data directory (database,
key file, tool files), no home directories, no other process, no network. When this process
runs as root the jail runs as ``nobody``. Each run or tool validation is a process of its own
(see :mod:`mt_core.sandbox.zygote`) with its own namespaces, limits and, where this process may
create them, a control group; the host kills it (and with it everything it started) through its
PID namespace, so nothing outlives it.
"""

from __future__ import annotations

import array
import atexit
import importlib.util
import json
import logging
import os
import queue
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SandboxCrashed, SandboxError, SandboxUnavailableError, StepTimeout
from .cgroups import RunGroup
from .zygote import BASE_ENV

logger = logging.getLogger(__name__)

START_TIMEOUT = 60.0  # the fork server imports smolagents and the package tools first
SPAWN_TIMEOUT = 10.0
POOL_SIZE = 2  # run processes forked ahead of time, waiting for their limits and environment
MAX_REPLY_BYTES = 4 << 20  # one reply line; a longer one ends the run (the session cuts its own)
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "ssl", "ca-certificates",
             "ca-certificates.conf", "nsswitch.conf", "passwd", "group", "hosts", "mime.types", "alternatives")
INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap), or set MT_ALLOW_IN_PROCESS=1 to run"
    " tenant code in this process (single-tenant installations only: it is not a security boundary)"
)


@dataclass(frozen=True)
class JailLimits:
    """What one run or validation may use.

    Args:
        memory_bytes: memory of the whole run (cgroup) and of each of its processes (address space
            beyond the interpreter's own).
        pids: processes and threads of the run.
        cpu_seconds: CPU time of each process of the run.
        file_bytes: largest file the run may write.
        tmpfs_bytes: size of the run's private ``/tmp``.
        open_files: open file descriptors per process.
    """

    memory_bytes: int = 1 << 30
    pids: int = 64
    cpu_seconds: int = 3600
    file_bytes: int = 64 << 20
    tmpfs_bytes: int = 64 << 20
    open_files: int = 256

    @classmethod
    def from_settings(cls, settings: Any) -> "JailLimits":
        """The operator's limits (``MT_SANDBOX_MEMORY``, ``MT_SANDBOX_PIDS``, ``MT_SANDBOX_TMPFS``)."""
        return cls(memory_bytes=getattr(settings, "sandbox_memory_bytes", cls.memory_bytes),
                   pids=getattr(settings, "sandbox_pids", cls.pids),
                   tmpfs_bytes=getattr(settings, "sandbox_tmpfs_bytes", cls.tmpfs_bytes))

    def as_dict(self) -> dict[str, int]:
        """The limits as sent to the run process."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


_probe_lock = threading.Lock()
_probe_result: tuple[str | None] | None = None


def unavailable_reason() -> str | None:
    """``None`` when the jail can run here, else why not and what to do (probed once)."""
    global _probe_result
    with _probe_lock:
        if _probe_result is None:
            _probe_result = (_probe(),)
        return _probe_result[0]


def _probe() -> str | None:
    if sys.platform != "linux":
        return f"the local jail needs Linux namespaces (this is {sys.platform}); {INSTALL_HINT}"
    bwrap = bwrap_path()
    if bwrap is None:
        return f"bubblewrap (bwrap) is not installed; {INSTALL_HINT}"
    command = [bwrap, *_namespace_flags(), "--ro-bind", "/", "/", "--", "/bin/true"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap cannot start ({exc}); {INSTALL_HINT}"
    if done.returncode != 0:
        return f"bubblewrap cannot create namespaces here ({done.stderr.strip()[:200]}); {INSTALL_HINT}"
    return None


def bwrap_path() -> str | None:
    """The bubblewrap binary: ``MT_BWRAP`` when set (an operator's own build), else ``bwrap`` on PATH."""
    configured = os.environ.get("MT_BWRAP")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    return shutil.which("bwrap")


def _namespace_flags() -> list[str]:
    flags = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
             "--new-session", "--cap-drop", "ALL"]
    if os.geteuid() == 0:  # no user namespace: the fork server becomes nobody itself
        flags += ["--cap-add", "cap_setuid", "--cap-add", "cap_setgid"]
    else:
        flags += ["--unshare-user"]
    return flags


def _module_dirs(modules: list[str]) -> list[Path]:
    """Where the top-level packages or modules of these module names (or ``module:attr``) live."""
    found: list[Path] = []
    for name in modules:
        try:
            spec = importlib.util.find_spec(name.partition(":")[0].strip().partition(".")[0])
        except (ImportError, ValueError):
            continue
        if spec is None:
            continue
        if spec.submodule_search_locations:
            found += [Path(p) for p in spec.submodule_search_locations]
        elif spec.origin and spec.origin not in ("built-in", "frozen"):
            found.append(Path(spec.origin))
    return found


def _schema_dirs() -> list[Path]:
    """Where mt-core's schema and migrations are (``mt_core.database``): outside the ``mt_core``
    folder in an editable install of a checkout (its top-level ``database/``). SQL text only."""
    try:
        spec = importlib.util.find_spec("mt_core.database")
    except (ImportError, ValueError):
        return []
    return [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []


def _site_dirs() -> list[Path]:
    """The folders on ``sys.path`` that hold installed distributions (site-packages, ``pip install
    --target`` folders): what tools and package tools import. Source checkouts are left out (they
    may hold anything); their packages are bound one by one."""
    found = []
    for entry in sys.path:
        path = Path(entry or ".").absolute()
        if not path.is_dir() or path == Path.cwd():
            continue
        if path.name in ("site-packages", "dist-packages") or any(path.glob("*.dist-info")):
            found.append(path)
    return found


def _paths_to_bind(modules: list[str]) -> list[Path]:
    """The host paths the jail sees: the interpreter, its packages and the modules runs import."""
    candidates = [Path(sys.base_prefix), Path(sys.prefix), Path(sys.exec_prefix), Path(sys.executable).parent,
                  *_site_dirs(), *_module_dirs(["mt_core", "smolagents", *modules]), *_schema_dirs()]
    resolved: list[Path] = []
    for path in candidates:
        for variant in {path, path.resolve()}:
            if variant.exists() and not str(variant).startswith(("/usr/", "/proc", "/sys", "/dev")):
                resolved.append(variant)
    resolved.sort(key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in resolved:
        if not any(path == k or k in path.parents for k in kept):
            kept.append(path)
    return kept


def bwrap_command(*, hidden: list[Path], modules: list[str], control_fd: int) -> list[str]:
    """The bubblewrap command line that starts a jail's fork server; ``modules`` are the entry
    points (``module:attr``) of the plugins whose package tools runs may use."""
    args = [bwrap_path() or "bwrap", *_namespace_flags(), "--clearenv"]
    env = {**BASE_ENV, "MT_JAIL_PLUGINS": ",".join(modules)}
    paths = [str(path) for path in _site_dirs()] + [str(path.parent) for path in _module_dirs(modules)]
    if paths:  # distributions and plugins outside the interpreter's own site-packages
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    for name, value in env.items():
        args += ["--setenv", name, value]
    args += ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "lib", "lib64", "lib32", "libx32", "sbin"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for name in ETC_FILES:
        path = Path("/etc") / name
        if path.exists():
            args += ["--ro-bind", str(path), str(path)]
    args += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    binds = _paths_to_bind(modules)
    if os.geteuid() == 0:
        for path in binds:
            if path.is_dir() and not os.stat(path).st_mode & 0o005:
                logger.warning("the local jail runs as nobody and cannot read %s (mode %o): make it world-readable"
                               " (chmod o+rx) or tools cannot import from it", path, os.stat(path).st_mode & 0o777)
    made: set[Path] = {Path("/"), Path("/usr"), Path("/tmp"), Path("/etc"), Path("/dev"), Path("/proc")}
    for path in binds:
        for parent in reversed(path.parents):
            if parent not in made:
                args += ["--perms", "0755", "--dir", str(parent)]
                made.add(parent)
    for path in binds:
        args += ["--ro-bind", str(path), str(path)]
    under_tmp = [str(path) for path in binds if Path("/tmp") in path.parents]
    if under_tmp:  # each run mounts a private /tmp and binds these into it again
        args[args.index("--clearenv") + 1:args.index("--clearenv") + 1] = [
            "--setenv", "MT_JAIL_TMP_BINDS", os.pathsep.join(under_tmp)]
    for path in hidden:  # a data directory inside a bound path is replaced by an empty one
        for variant in {path, path.resolve()}:
            if any(variant == b or b in variant.parents for b in binds):
                args += ["--tmpfs", str(variant)]
    args += ["--chdir", "/tmp", "--", sys.executable, "-s", "-m", "mt_core.sandbox.zygote", "--control-fd",
             str(control_fd)]
    return args


class JailedProcess:
    """One run process in the jail: its socket, its PID (as the host sees it) and its cgroup."""

    def __init__(self, sock: socket.socket, pid: int, group: RunGroup | None) -> None:
        self.sock = sock
        self.pid = pid
        self.group = group
        self._buffer = bytearray()
        self._pidfd: int | None = None
        try:
            self._pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            self._pidfd = None
        self.killed = False

    def send(self, message: dict[str, Any], deadline: float) -> None:
        """Send one request line."""
        data = (json.dumps(message) + "\n").encode()
        self.sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            self.sock.sendall(data)
        except socket.timeout:
            raise TimeoutError from None

    def receive(self, deadline: float, max_bytes: int = MAX_REPLY_BYTES) -> dict[str, Any]:
        """Read one reply line; ``TimeoutError`` at the deadline, ``EOFError`` when the process died,
        ``ValueError`` for a reply longer than ``max_bytes`` or that is not JSON."""
        while b"\n" not in self._buffer:
            if len(self._buffer) > max_bytes:
                raise ValueError(f"the sandbox sent a reply larger than {max_bytes} bytes")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(min(1 << 20, max_bytes + 1 - len(self._buffer)))
            except socket.timeout:
                raise TimeoutError from None
            except OSError as exc:
                raise EOFError(str(exc)) from None
            if not chunk:
                raise EOFError("the sandbox process ended")
            self._buffer += chunk
        line, _, rest = bytes(self._buffer).partition(b"\n")
        if len(line) > max_bytes:
            raise ValueError(f"the sandbox sent a reply larger than {max_bytes} bytes")
        self._buffer = bytearray(rest)
        reply = json.loads(line)
        if not isinstance(reply, dict):
            raise ValueError("the sandbox sent a reply that is not a JSON object")
        return reply

    def guarded(self, action: Any, *args: Any, limit: float) -> Any:
        """``action(*args)`` (a send or a receive), with failures turned into run aborts after the
        process is killed: :class:`StepTimeout` (``limit`` seconds passed) or :class:`SandboxCrashed`."""
        try:
            return action(*args)
        except TimeoutError:
            self.kill()
            raise StepTimeout(f"sandbox step exceeded the {limit:g} s time limit; its processes were killed") from None
        except (EOFError, OSError, ValueError) as exc:
            reason = self.death_reason(exc)
            self.kill()
            raise SandboxCrashed(f"the sandbox process died during the step ({reason})") from None

    def exchange(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send a request and wait for its reply; :class:`StepTimeout` or :class:`SandboxCrashed`
        (the process is killed) when it takes too long, dies or misbehaves."""
        deadline = time.monotonic() + timeout
        self.guarded(self.send, message, deadline, limit=timeout)
        return self.guarded(self.receive, deadline, limit=timeout)

    def death_reason(self, exc: BaseException) -> str:
        """Why the process stopped answering, as well as the host can tell."""
        if self.group is not None and self.group.oom_killed():
            return "out of memory"
        if isinstance(exc, ValueError):
            return str(exc)
        return "it exited or was killed; a process limit or a crash in native code can cause this"

    def kill(self, *, wait: bool = True) -> None:
        """Kill the process and, through its PID namespace, everything it started. Idempotent.

        With ``wait`` it returns once the process is gone (its PID namespace goes with it); a
        background reaper removes the cgroup, and without ``wait`` also waits for the exit, so that
        the end of a run costs no time.
        """
        if self.killed:
            return
        self.killed = True
        try:
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            else:
                os.kill(self.pid, signal.SIGKILL)
        except (ProcessLookupError, OSError):
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        if wait:
            self._wait_exit()
        _reaper.put(self)

    def _wait_exit(self) -> None:
        if self._pidfd is not None:
            try:
                select.select([self._pidfd], [], [], 2.0)  # readable once the process has exited
            except (OSError, ValueError):
                pass
            os.close(self._pidfd)
            self._pidfd = None

    def _reap(self) -> None:
        self._wait_exit()
        if self.group is not None:
            self.group.remove()


class _Reaper:
    """Waits for killed processes in the background and removes their cgroups."""

    def __init__(self) -> None:
        self._queue: "queue.SimpleQueue[JailedProcess]" = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def put(self, process: JailedProcess) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="mt-jail-reaper", daemon=True)
                self._thread.start()
        self._queue.put(process)

    def _run(self) -> None:
        while True:
            self._queue.get()._reap()


_reaper = _Reaper()


class Jail:
    """A bubblewrap sandbox with a fork server inside; :meth:`spawn` gives a confined process.

    Args:
        hidden: host paths that must never be visible inside (data directories).
        modules: entry points (``module:attr``) of the plugins whose package tools runs may use.
        defaults: the operator's limits, which the processes forked ahead of time are made for (a
            run with other limits changes its process's cgroup, or forks its own for another /tmp).
    """

    def __init__(self, hidden: list[Path], modules: list[str], defaults: JailLimits | None = None) -> None:
        self.hidden = hidden
        self.modules = modules
        self.defaults = defaults or JailLimits()
        self._lock = threading.Lock()
        self._control: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: deque[str] = deque(maxlen=20)
        self._ready: deque[tuple[socket.socket, int, RunGroup | None]] = deque()
        self._pool_lock = threading.Lock()
        self._pool_wanted = threading.Event()
        self._pool_thread: threading.Thread | None = None
        self._closed = False

    def _start(self) -> socket.socket:
        reason = unavailable_reason()
        if reason is not None:
            raise SandboxUnavailableError(f"the local jail is unavailable: {reason}")
        host_end, jail_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        command = bwrap_command(hidden=self.hidden, modules=self.modules, control_fd=jail_end.fileno())
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            pass_fds=[jail_end.fileno()], start_new_session=True,
        )
        jail_end.close()
        threading.Thread(target=self._drain, args=(self._process,), daemon=True, name="mt-jail-stderr").start()
        host_end.settimeout(START_TIMEOUT)
        try:
            ready = host_end.recv(1)
        except (socket.timeout, OSError):
            ready = b""
        if ready != b"R":
            self._process.kill()
            self._process.wait()
            detail = " | ".join(self._stderr) or f"exit code {self._process.returncode}"
            host_end.close()
            raise SandboxError(f"the local jail's fork server did not start: {detail[-500:]}")
        host_end.settimeout(None)
        return host_end

    def _drain(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stderr is not None
        for raw in process.stderr:
            self._stderr.append(raw.decode("utf-8", "replace").rstrip()[:300])

    def _fork(self, tmpfs_bytes: int) -> tuple[socket.socket, int, RunGroup | None]:
        """Ask the fork server for a new run process; its socket, PID and cgroup (with the default
        limits, changed at :meth:`spawn`) once it said hello."""
        host, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        host.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        request = json.dumps({"tmpfs_bytes": tmpfs_bytes}).encode()
        try:
            with self._lock:
                for attempt in (1, 2):
                    if self._control is None or (self._process is not None and self._process.poll() is not None):
                        self._control = self._start()
                    try:
                        self._control.sendmsg([request], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                           array.array("i", [child.fileno()]))])
                        break
                    except OSError:
                        self._control = None  # the fork server died: start a new one
                        if attempt == 2:
                            raise
        finally:
            child.close()
        pid = _hello(host)
        group = RunGroup.create(self.defaults.memory_bytes, self.defaults.pids)
        if group is not None:  # moving a process into a cgroup takes milliseconds: done before a run needs it
            try:
                group.add(pid)
            except OSError:
                group.remove()
                group = None
        return host, pid, group

    def _take_ready(self, tmpfs_bytes: int) -> tuple[socket.socket, int, RunGroup | None] | None:
        """A process forked ahead of time (waiting for its limits), if one is ready."""
        if tmpfs_bytes != self.defaults.tmpfs_bytes:
            return None
        with self._pool_lock:
            found = self._ready.popleft() if self._ready else None
            self._pool_wanted.set()
        return found

    def _refill(self) -> None:
        """Keep ``POOL_SIZE`` processes forked ahead of time (they hold nothing of any tenant yet)."""
        while not self._closed:
            self._pool_wanted.wait()
            with self._pool_lock:
                missing = POOL_SIZE - len(self._ready)
                if missing <= 0 or self._closed:
                    self._pool_wanted.clear()
                    continue
            try:
                forked = self._fork(self.defaults.tmpfs_bytes)
            except Exception:  # noqa: BLE001 - runs fork their own meanwhile; try again later
                logger.debug("jail pool: fork failed", exc_info=True)
                time.sleep(1.0)
                continue
            with self._pool_lock:
                if self._closed:
                    JailedProcess(*forked).kill(wait=False)
                else:
                    self._ready.append(forked)

    def _ensure_pool(self) -> None:
        if self._pool_thread is None and not self._closed:
            with self._pool_lock:
                if self._pool_thread is None:
                    self._pool_thread = threading.Thread(target=self._refill, name="mt-jail-pool", daemon=True)
                    self._pool_thread.start()

    def warm(self) -> None:
        """Start the fork server and fill the pool in the background, without waiting: a caller
        that will spawn soon lets the jail boot (about 0.4 s, mostly importing smolagents inside)
        while it does its own work."""
        if not self._closed and (self._control is None or not self._ready):
            self._ensure_pool()
            self._pool_wanted.set()

    def spawn(self, limits: JailLimits, env: dict[str, str] | None = None) -> JailedProcess:
        """A new confined process serving one session, with ``env`` as its environment's extras."""
        ready = self._take_ready(limits.tmpfs_bytes)
        self._ensure_pool()
        host, pid, group = ready if ready is not None else self._fork(limits.tmpfs_bytes)
        process = JailedProcess(host, pid, group)
        try:
            defaults = self.defaults
            if group is not None and (limits.memory_bytes, limits.pids) != (defaults.memory_bytes, defaults.pids):
                group.set_limits(limits.memory_bytes, limits.pids)
            deadline = time.monotonic() + SPAWN_TIMEOUT
            process.send({"go": {"limits": limits.as_dict(), "env": dict(env or {})}}, deadline)
            answer = process.receive(deadline)
            if not answer.get("ok"):
                raise SandboxError(str(answer.get("error") or "the jailed process failed to start"))
        except BaseException:
            process.kill()
            raise
        return process

    def close(self) -> None:
        """Stop the fork server (runs in progress are killed with it)."""
        self._closed = True
        self._pool_wanted.set()
        with self._pool_lock:
            while self._ready:
                JailedProcess(*self._ready.popleft()).kill(wait=False)
        with self._lock:
            if self._control is not None:
                self._control.close()
                self._control = None
            if self._process is not None:
                try:
                    self._process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
                self._process = None


def _hello(sock: socket.socket) -> int:
    """Wait for a new run process's first line; return its PID as this process sees it."""
    sock.settimeout(SPAWN_TIMEOUT)
    try:
        data, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(12))
    except (socket.timeout, OSError) as exc:
        sock.close()
        raise SandboxError(f"a jailed process did not start ({exc or 'timed out'})") from None
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("3i", payload[:12])[0]
            if data.strip() == b'{"hello": 1}' and pid > 0:
                return pid
    sock.close()
    detail = data.decode("utf-8", "replace").strip()[:300]
    raise SandboxError(f"a jailed process did not start: {detail or 'no greeting'}")


_jails: dict[tuple[Any, ...], Jail] = {}
_keys: dict[tuple[Any, ...], tuple[str, ...]] = {}
_jails_lock = threading.Lock()
_atexit_registered = False


def hidden_paths(settings: Any) -> list[Path]:
    """What a jail must never show: the data directory (and the database's, when elsewhere)."""
    paths = [Path(settings.home).absolute()]
    database = getattr(settings, "database_path", None)
    if database is not None:
        paths.append(Path(database).absolute().parent)
    return paths


def jail_for_settings(settings: Any, modules: list[str] | tuple[str, ...]) -> Jail:
    """The jail of an installation's ``settings`` whose runs may import the plugin ``modules``."""
    return jail_for(hidden_paths(settings), list(modules), JailLimits.from_settings(settings))


def jail_for(hidden: list[Path], modules: list[str], defaults: JailLimits | None = None) -> Jail:
    """The jail (one per distinct configuration in this process), started on first spawn."""
    global _atexit_registered
    defaults = defaults or JailLimits()
    lookup = (tuple(str(p) for p in hidden), tuple(sorted(modules)), tuple(sys.path), os.geteuid())
    command = _keys.get(lookup)
    if command is None:  # what the jail sees and runs: a new sys.path entry may change it
        command = _keys[lookup] = tuple(bwrap_command(hidden=hidden, modules=sorted(modules), control_fd=-1))
    key = (command, defaults)
    with _jails_lock:
        found = _jails.get(key)
        if found is None:
            found = _jails[key] = Jail(hidden, modules, defaults)
        if not _atexit_registered:
            atexit.register(shutdown)
            _atexit_registered = True
    return found


def shutdown() -> None:
    """Stop every jail of this process."""
    with _jails_lock:
        jails = list(_jails.values())
        _jails.clear()
    for jail in jails:
        jail.close()
