"""A healthy plugin next to the broken ones: it must load whatever its siblings do."""

from typing import Any

from smolagents import tool

from mt_core import hookimpl


@tool
def echo_text(text: str) -> str:
    """Returns the text unchanged.

    Args:
        text: The text to echo.
    """
    return text


@hookimpl
def mt_register_tools(register: Any) -> None:
    register(echo_text)
