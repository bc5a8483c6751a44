from smolagents.tools import Tool, tool


@tool
def multiline_signature_tool(
    text: str,
    count: int = 1,
    uppercase: bool = False,
    multiline_parameter_1: int = 1_000,
    multiline_parameter_2: int = 2_000,
) -> str:
    """Tool with multiline signature.

    Args:
        text: Input text
        count: Number of repetitions
        uppercase: Whether to convert to uppercase
        multiline_parameter_1: Dummy parameter
        multiline_parameter_2: Dummy parameter
    """
    result = text * count
    return result.upper() if uppercase else result
