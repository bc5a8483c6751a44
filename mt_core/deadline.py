"""The deadline of the LLM attempt under way in this thread (or task), for the HTTP layer.

The gateway sets it around each attempt (:func:`limit`); the SSRF guard's transport
(:mod:`mt_core.netguard`), which every provider's requests to a tenant URL go through, cuts each
request's timeouts to what is left of it (:func:`clamp_timeouts`) and stops reading a response
that goes on past it. So a hanging endpoint cannot keep an attempt beyond its share of the call,
whatever timeout the provider's SDK was built with.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_until: ContextVar[float | None] = ContextVar("mt_core_llm_deadline", default=None)
MIN_TIMEOUT = 0.001  # a timeout of 0 means "none" to some libraries: never hand one out


@contextmanager
def limit(until: float) -> Iterator[None]:
    """Within the block, requests must end by ``until`` (``time.monotonic()`` seconds); an outer
    deadline that is earlier still wins."""
    outer = _until.get()
    token = _until.set(until if outer is None else min(outer, until))
    try:
        yield
    finally:
        _until.reset(token)


def remaining() -> float | None:
    """Seconds left before the current deadline, or None when no deadline is set."""
    until = _until.get()
    return None if until is None else until - time.monotonic()


def clamp_timeouts(extensions: dict[str, Any]) -> None:
    """Cut an httpx request's ``timeout`` extension (connect/read/write/pool seconds) to the
    time left, in place; nothing when no deadline is set."""
    left = remaining()
    if left is None:
        return
    left = max(left, MIN_TIMEOUT)
    current = dict(extensions.get("timeout") or {})
    for phase in ("connect", "read", "write", "pool"):
        value = current.get(phase)
        current[phase] = left if value is None else min(float(value), left)
    extensions["timeout"] = current
