from smolagents.tools import Tool, tool


@tool
def boolean_default_tool(text: str, flag: bool = False) -> str:
    """
    A tool with a boolean default parameter.

    Args:
        text: Input text
        flag: Boolean flag with default value
    """
    return f"Text: {text}, Flag: {flag}"
