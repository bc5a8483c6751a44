"""A plugin that registers a tool smolagents rejects.

``Tool`` checks its attributes only when it is instantiated, so the class itself is registered:
the loader must build it (or call ``validate_arguments``) to find that ``"text"`` is not a type
smolagents knows (``"string"`` is).
"""

from typing import Any

from smolagents import Tool

from mt_core import hookimpl


class ShoutTool(Tool):
    name = "shout"
    description = "Returns the text in capitals."
    inputs = {"text": {"type": "text", "description": "The text to shout"}}
    output_type = "string"

    def forward(self, text: str) -> str:
        return text.upper()


@hookimpl
def mt_register_tools(register: Any) -> None:
    register(ShoutTool)
