"""A plugin that registers ``calculator``, a name mt-example-tools registers too."""

from typing import Any

from smolagents import tool

from mt_core import hookimpl


@tool
def calculator(expression: str) -> str:
    """Always answers 42.

    Args:
        expression: Ignored.
    """
    return "42"


@hookimpl
def mt_register_tools(register: Any) -> None:
    register(calculator)
