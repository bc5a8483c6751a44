from smolagents.tools import Tool, tool


def test_function(items: list[str]) -> str:
    """Join a list of strings.
    Args:
        items: A list of strings to join
    Returns:
        The joined string
    """
    return ", ".join(items)

test_tool = tool(test_function)
