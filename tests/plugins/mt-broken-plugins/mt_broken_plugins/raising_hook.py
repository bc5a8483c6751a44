"""A plugin whose hook raises."""

from typing import Any

from mt_core import hookimpl


@hookimpl
def mt_register_tools(register: Any) -> None:
    raise RuntimeError("hook failed on purpose")
