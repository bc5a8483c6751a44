"""The example tools, called the way an agent calls them, and the plugin that registers them."""

from __future__ import annotations

import pytest
from smolagents import Tool
from smolagents.tool_validation import validate_tool_attributes

from mt_example_tools import UnitConverterTool, calculator, human_size, plugin


def registered_tools() -> list[Tool]:
    tools: list[Tool] = []
    plugin.mt_register_tools(lambda tool, name=None: tools.append(tool))
    return tools


@pytest.mark.parametrize(
    ("expression", "result"),
    [
        ("25 * 16", "400"),
        ("2 + 3 * 4", "14"),
        ("(2 + 3) * 4", "20"),
        ("10 / 4", "2.5"),
        ("7 // 2", "3"),
        ("7 % 4", "3"),
        ("2 ** 10", "1024"),
        ("-3 + +5", "2"),
        ("1.5 * 2", "3.0"),
        ("  8 - 3 - 2  ", "3"),
    ],
)
def test_calculator_evaluates_arithmetic(expression: str, result: str) -> None:
    assert calculator(expression=expression) == result


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os').system('id')", "unsupported expression"),
        ("x + 1", "unsupported expression"),
        ("abs(-1)", "unsupported expression"),
        ("'a' * 3", "unsupported expression"),
        ("True + 1", "unsupported expression"),
        ("2 +", "not a valid arithmetic expression"),
        ("", "not a valid arithmetic expression"),
        ("1 / 0", "division by zero"),
        ("9 ** 9 ** 9", "too large"),
        ("10.0 ** 400", "too large"),
    ],
)
def test_calculator_rejects_anything_else_with_a_clear_error(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        calculator(expression=expression)


def test_human_size_formats_bytes() -> None:
    assert human_size(num_bytes=3_000_000) == "3.0 MB"
    assert human_size(num_bytes=1024, binary=True) == "1.0 KiB"


def test_unit_converter_converts_and_rounds() -> None:
    converter = UnitConverterTool(decimals=3)
    assert converter(value=5, from_unit="km", to_unit="mi") == "3.107 mi"
    assert converter(value=1, from_unit="LB", to_unit="g") == "453.592 g"
    assert UnitConverterTool()(value=1, from_unit="in", to_unit="cm") == "2.54 cm"


def test_unit_converter_refuses_mixed_or_unknown_units() -> None:
    with pytest.raises(ValueError, match="cannot convert 'kg' to 'm'"):
        UnitConverterTool()(value=1, from_unit="kg", to_unit="m")
    with pytest.raises(ValueError, match="cannot convert"):
        UnitConverterTool()(value=1, from_unit="parsec", to_unit="m")


def test_hook_registers_three_valid_tools() -> None:
    tools = registered_tools()
    assert [tool.name for tool in tools] == ["calculator", "human_size", "unit_converter"]
    for tool in tools:
        assert isinstance(tool, Tool)
        tool.validate_arguments()
        tool.to_dict()  # what smolagents does to ship a tool to a sandbox: checks it is self-contained
    validate_tool_attributes(UnitConverterTool)


def test_hook_registers_the_converter_with_its_configured_precision() -> None:
    converter = registered_tools()[2]
    assert converter(value=1, from_unit="mi", to_unit="km") == "1.609 km"
