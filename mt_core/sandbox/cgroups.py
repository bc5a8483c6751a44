"""Per-run control groups: a memory and a process limit for everything one jailed run starts.

Used when this process may create cgroups (usually when it runs as root): cgroup v2 when the
unified hierarchy has the ``memory`` and ``pids`` controllers, else the v1 ``memory`` and
``pids`` hierarchies. Elsewhere runs are bounded by rlimits alone (per process memory, per run
process count), which :mod:`mt_core.sandbox.jail` always sets as well.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
GROUP = "mt-core-sandbox"

_lock = threading.Lock()
_layout: tuple[str, list[Path]] | None | bool = False  # False: not probed yet


def _probe() -> tuple[str, list[Path]] | None:
    """("v2", [parent]) or ("v1", [memory parent, pids parent]) when usable, else ``None``."""
    unified = ROOT / "cgroup.controllers"
    try:
        if unified.exists():
            controllers = unified.read_text().split()
            if {"memory", "pids"} <= set(controllers) and os.access(ROOT, os.W_OK):
                parent = ROOT / GROUP
                parent.mkdir(exist_ok=True)
                (ROOT / "cgroup.subtree_control").write_text("+memory +pids")
                (parent / "cgroup.subtree_control").write_text("+memory +pids")
                return "v2", [parent]
            return None
        memory, pids = ROOT / "memory", ROOT / "pids"
        if memory.is_dir() and pids.is_dir() and os.access(memory, os.W_OK) and os.access(pids, os.W_OK):
            parents = [memory / GROUP, pids / GROUP]
            for parent in parents:
                parent.mkdir(exist_ok=True)
            return "v1", parents
    except OSError:
        return None
    return None


def layout() -> tuple[str, list[Path]] | None:
    """The cgroup layout this process can use, probed once."""
    global _layout
    with _lock:
        if _layout is False:
            _layout = _probe()
        return _layout  # type: ignore[return-value]


class RunGroup:
    """The cgroup(s) of one run. :meth:`add` puts a process in; :meth:`remove` deletes them."""

    def __init__(self, version: str, paths: list[Path]) -> None:
        self.version = version
        self.paths = paths

    @classmethod
    def create(cls, memory_bytes: int, pids: int) -> "RunGroup | None":
        """A new run group with these limits, or ``None`` when cgroups cannot be used here."""
        found = layout()
        if found is None:
            return None
        version, parents = found
        name = f"run-{os.getpid()}-{secrets.token_hex(6)}"
        paths = [parent / name for parent in parents]
        group = cls(version, paths)
        try:
            for path in paths:
                path.mkdir()
            group.set_limits(memory_bytes, pids)
        except OSError:
            group.remove()
            return None
        return group

    def set_limits(self, memory_bytes: int, pids: int) -> None:
        """Set the group's memory (swap included) and process limits."""
        if self.version == "v2":
            (self.paths[0] / "memory.max").write_text(str(memory_bytes))
            _try_write(self.paths[0] / "memory.swap.max", "0")
            (self.paths[0] / "pids.max").write_text(str(pids))
        else:
            _try_write(self.paths[0] / "memory.memsw.limit_in_bytes", "-1")  # may not go below the limit
            (self.paths[0] / "memory.limit_in_bytes").write_text(str(memory_bytes))
            _try_write(self.paths[0] / "memory.memsw.limit_in_bytes", str(memory_bytes))
            (self.paths[1] / "pids.max").write_text(str(pids))

    def add(self, pid: int) -> None:
        """Move process ``pid`` (and so everything it starts later) into the group."""
        for path in self.paths:
            (path / "cgroup.procs").write_text(str(pid))

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of this group for using too much memory."""
        name = "memory.events" if self.version == "v2" else "memory.oom_control"
        try:
            for line in (self.paths[0] / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value or 0) > 0:
                    return True
        except (OSError, ValueError):
            pass
        return False

    def remove(self, wait: float = 2.0) -> None:
        """Delete the group once its processes are gone (they are being killed)."""
        deadline = time.monotonic() + wait
        for path in self.paths:
            while True:
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.005)


def _try_write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError:
        pass
