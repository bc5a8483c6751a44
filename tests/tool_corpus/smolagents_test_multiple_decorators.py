from smolagents.tools import Tool, tool


def dummy_decorator(func):
    return func


@tool
@dummy_decorator
def multi_decorator_tool(text: str) -> str:
    """Tool with multiple decorators.

    Args:
        text: Input text
    """
    return text.upper()
