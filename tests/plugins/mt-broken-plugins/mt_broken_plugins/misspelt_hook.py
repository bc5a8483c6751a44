"""A plugin that misspells its hook: ``mt_register_tool`` instead of ``mt_register_tools``."""

from typing import Any

from mt_core import hookimpl


@hookimpl
def mt_register_tool(register: Any) -> None:
    raise AssertionError("never called: no hook has this name")
