"""The warm pool: fresh, started, hardened containers waiting for a run. Each is handed out once."""

from __future__ import annotations

import atexit
import logging
import threading
from collections import deque
from typing import Any

from . import engine
from .config import SandboxConfig

logger = logging.getLogger(__name__)

_pools: dict[tuple[str, str, str], "WarmPool"] = {}
_pools_lock = threading.Lock()
_atexit_registered = False


class WarmPool:
    """Keeps ``config.pool_size`` containers of one image and configuration ready, refilled in the background."""

    def __init__(self, docker_client: Any, image: str, config: SandboxConfig) -> None:
        self.client = docker_client
        self.image = image
        self.config = config
        self.key = config.container_key(image)
        self._ready: deque[engine.Sandbox] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._failures = 0
        self._thread = threading.Thread(target=self._fill, name=f"mt-docker-pool-{self.key[:8]}", daemon=True)
        self._thread.start()

    def take(self) -> engine.Sandbox | None:
        """A ready sandbox, or ``None`` when none is ready (the caller starts its own)."""
        with self._cond:
            sandbox = self._ready.popleft() if self._ready else None
            self._cond.notify_all()
        return sandbox

    def ready_count(self) -> int:
        """How many containers wait now."""
        with self._cond:
            return len(self._ready)

    def wait_ready(self, count: int | None = None, timeout: float = 60.0) -> bool:
        """Block until ``count`` (default: the pool size) containers are ready; False on timeout."""
        want = self.config.pool_size if count is None else count
        with self._cond:
            return self._cond.wait_for(lambda: len(self._ready) >= want or self._closed, timeout=timeout)

    def close(self) -> None:
        """Stop refilling and remove the waiting containers."""
        with self._cond:
            self._closed = True
            waiting = list(self._ready)
            self._ready.clear()
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=60)  # a container being started is removed by the thread itself
        for sandbox in waiting:
            sandbox.channel.close()
            engine.remove_container(self.client, sandbox.container_id)

    def _fill(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or len(self._ready) < self.config.pool_size)
                if self._closed:
                    return
            try:
                sandbox = engine.start_sandbox(self.client, self.image, self.config, {"pool": self.key})
            except Exception:  # noqa: BLE001 - runs start their own containers meanwhile
                self._failures += 1
                logger.warning("warm pool %s: could not start a container", self.key[:8], exc_info=True)
                with self._cond:
                    self._cond.wait(timeout=min(30.0, 2.0**self._failures))
                continue
            self._failures = 0
            with self._cond:
                if self._closed:
                    closed = True
                else:
                    closed = False
                    self._ready.append(sandbox)
                    self._cond.notify_all()
            if closed:
                sandbox.channel.close()
                engine.remove_container(self.client, sandbox.container_id)
                return


def pool_for(docker_client: Any, image: str, config: SandboxConfig) -> WarmPool | None:
    """The pool for this image and configuration (started on first use), or ``None`` when disabled."""
    global _atexit_registered
    if config.pool_size <= 0:
        return None
    key = (engine.docker_host(), image, config.container_key(image))
    with _pools_lock:
        found = _pools.get(key)
        if found is None or found.config.pool_size != config.pool_size:
            if found is not None:
                found.close()
            found = _pools[key] = WarmPool(docker_client, image, config)
        if not _atexit_registered:
            atexit.register(shutdown)
            _atexit_registered = True
    return found


def acquire(
    docker_client: Any, image: str, config: SandboxConfig, run_labels: dict[str, str]
) -> tuple[engine.Sandbox, bool]:
    """A fresh sandbox for one run: from the warm pool when one is ready, else started now.

    Returns the sandbox and whether it came from the pool.
    """
    pool = pool_for(docker_client, image, config)
    if pool is not None:
        sandbox = pool.take()
        if sandbox is not None:
            return sandbox, True
    return engine.start_sandbox(docker_client, image, config, run_labels), False


def shutdown() -> None:
    """Close every warm pool and remove its waiting containers (also run at interpreter exit)."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()
