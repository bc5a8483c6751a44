"""The plugin: mt-core finds this module through the ``mt_core`` entry point and calls its hooks."""

from __future__ import annotations

from collections.abc import Callable

from mt_core import hookimpl

from .tools import UnitConverterTool, calculator, human_size


@hookimpl
def mt_register_tools(register: Callable[..., None]) -> None:
    """Register this package's tools in mt-core's global catalog.

    Args:
        register: mt-core's callback; call it once per tool (``name=`` overrides the tool's name).
    """
    register(calculator)
    register(human_size)
    register(UnitConverterTool(decimals=3))
