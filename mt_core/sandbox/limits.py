"""Limits of the local jail: the operator's settings, lowered (never raised) by a tenant's options."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from .jail import JailLimits

_SIZE = re.compile(r"^(\d+)([bkmg]?)$", re.IGNORECASE)
_SCALE = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
# The options the jail applies (named as the Docker sandbox names them); it leaves every other
# option to the executors that know it.
KNOWN_OPTIONS = ("memory", "pids_limit", "tmpfs_size")


def parse_size(value: object) -> int:
    """Bytes from ``256m``, ``1g``, ``4096`` or an integer; ``ValueError`` otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size such as 256m or 1g")
    if isinstance(value, int):
        return value
    match = _SIZE.match(str(value).strip())
    if not match:
        raise ValueError(f"{value!r} is not a size such as 256m or 1g")
    return int(match.group(1)) * _SCALE[match.group(2).lower()]


def jail_limits(settings: Any, options: dict[str, Any] | None = None) -> JailLimits:
    """The limits of one jailed run: the operator's (``MT_SANDBOX_MEMORY``, ``MT_SANDBOX_PIDS``,
    ``MT_SANDBOX_TMPFS``), each lowered by the tenant's option of the same meaning."""
    base = JailLimits.from_settings(settings)
    values = {"memory_bytes": base.memory_bytes, "pids": base.pids, "tmpfs_bytes": base.tmpfs_bytes}
    for name, value in (options or {}).items():
        if name not in KNOWN_OPTIONS:
            continue
        if name in ("memory", "tmpfs_size"):
            try:
                number = parse_size(value)
            except ValueError as exc:
                raise ValueError(f"option {name!r}: {exc}") from None
            field, low = ("memory_bytes" if name == "memory" else "tmpfs_bytes"), 4 << 20
        else:
            if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit():
                raise ValueError(f"option 'pids_limit': {value!r} is not a whole number")
            field, number, low = "pids", int(value), 8
        if number < low:
            raise ValueError(f"option {name!r}: {value!r} is below the minimum ({low})")
        if number > values[field]:
            raise ValueError(f"option {name!r}: {value!r} is above the operator's limit ({values[field]})")
        values[field] = number
    return dataclasses.replace(base, **values)
