from smolagents.tools import Tool, tool


@tool
def union_type_return_tool_function(param: int) -> str | bool:
    """
    Tool with output union type.

    Args:
        param: Input parameter.
    """
    return str(param) if param > 0 else False
