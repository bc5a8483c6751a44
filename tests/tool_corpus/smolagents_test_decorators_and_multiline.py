from smolagents.tools import Tool, tool


def dummy_decorator_1(func):
    return func

def dummy_decorator_2(func):
    return func


@tool
@dummy_decorator_1
@dummy_decorator_2
def complex_tool(
    text: str,
    multiplier: int = 2,
    separator: str = " ",
    multiline_parameter_1: int = 1_000,
    multiline_parameter_2: int = 2_000,
) -> str:
    """Complex tool with multiple decorators and multiline signature.

    Args:
        text: Input text
        multiplier: How many times to repeat
        separator: What to use between repetitions
        multiline_parameter_1: Dummy parameter
        multiline_parameter_2: Dummy parameter
    """
    parts = [text] * multiplier
    return separator.join(parts)
