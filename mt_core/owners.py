"""Who runs a run: this process's identity (host, boot id, pid, start time), and whether the
owner recorded on a run that is still ``running`` is gone or past the run's deadline.

A process can only judge owners on its own host (by hostname): it asks the kernel whether the pid
still runs and started when recorded (pids are reused). Another host's owner is judged by the
run's deadline alone. Hostnames must therefore be unique among the machines sharing a database.
"""

from __future__ import annotations

import functools
import os
import socket
from datetime import datetime, timedelta
from typing import Any, NamedTuple

# A run recorded before owners were (schema version 6) is given its start plus this much.
UNRECORDED_DEADLINE = timedelta(hours=1)


class Owner(NamedTuple):
    """The process running a run."""

    host: str
    boot_id: str
    pid: int
    start_time: str

    def label(self) -> str:
        """The owner as one string (``host:boot_id:pid:start_time``), e.g. for a container label."""
        return f"{self.host}:{self.boot_id}:{self.pid}:{self.start_time}"

    @classmethod
    def from_label(cls, text: str) -> "Owner | None":
        """The owner a :meth:`label` names, or None when ``text`` is not one."""
        try:
            host, boot_id, pid, start_time = text.rsplit(":", 3)
            return cls(host, boot_id, int(pid), start_time)
        except ValueError:
            return None


@functools.lru_cache(maxsize=1)
def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def _start_time(pid: int) -> str:
    """The kernel's start time of ``pid`` in clock ticks since boot ('' when unknown)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def current(pid: int | None = None) -> Owner:
    """This process (or process ``pid`` of this host), as recorded on the runs it starts."""
    pid = os.getpid() if pid is None else pid
    return Owner(socket.gethostname(), _boot_id(), pid, _start_time(pid))


def gone(owner: Owner) -> bool:
    """Whether ``owner`` is known to be gone: on this host, and rebooted since, or its pid no longer
    runs, or runs another process. Owners on other hosts, or unknown, are never judged gone."""
    if not owner.host or owner.host != socket.gethostname() or not owner.pid:
        return False
    if owner.boot_id and _boot_id() and owner.boot_id != _boot_id():
        return True
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, under another user
    return bool(owner.start_time) and _start_time(owner.pid) not in ("", owner.start_time)


def stale_reason(run: dict[str, Any], now: datetime) -> str | None:
    """Why a ``running`` run can no longer be running (its owner is gone or its deadline passed),
    or ``None`` while it may be. ``run`` holds the run's ``owner_*``, ``deadline`` and ``started_at``."""
    owner = Owner(run.get("owner_host") or "", run.get("owner_boot_id") or "", int(run.get("owner_pid") or 0),
                  run.get("owner_start_time") or "")
    if gone(owner):
        return (f"the process running it (pid {owner.pid} on {owner.host}) ended without recording an outcome"
                " (killed or crashed); marked failed by a later process")
    deadline = run.get("deadline")
    if deadline is None:
        limit = datetime.fromisoformat(run["started_at"]) + UNRECORDED_DEADLINE
    else:
        limit = datetime.fromisoformat(deadline)
    if now > limit:
        return (f"still 'running' after its deadline ({limit.isoformat(timespec='seconds')}), by which it must have"
                " finished; its process was lost. Marked failed by a later process")
    return None
