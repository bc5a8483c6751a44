from smolagents.tools import Tool, tool


@tool
def optional_input_tool(required_text: str, optional_text: str | None = None) -> str:
    """
    A tool with an optional input parameter.

    Args:
        required_text: Required input text
        optional_text: Optional input text
    """
    if optional_text:
        return f"{required_text} + {optional_text}"
    return required_text
