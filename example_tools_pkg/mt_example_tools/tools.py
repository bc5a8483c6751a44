"""The tools. Each is self-contained, because smolagents ships a tool to a sandbox as source code:
imports go inside the function body and a tool never refers to a module-level name."""

from __future__ import annotations

from smolagents import Tool, tool


@tool
def calculator(expression: str) -> str:
    """Evaluates an arithmetic expression and returns the result.

    Supports numbers, + - * / // % ** (powers), unary minus and parentheses; no names or calls.

    Args:
        expression: The expression to evaluate, e.g. "25 * 16" or "(2 + 3) ** 2 / 5".
    """
    import ast
    import operator

    binary = {
        ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
    }
    unary = {ast.UAdd: operator.pos, ast.USub: operator.neg}
    max_bits = 10_000  # about 3000 digits: refuses 9 ** 9 ** 9, which would run for minutes

    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise ValueError(f"{expression!r} is not a valid arithmetic expression") from None
    # Evaluate the syntax tree in post-order with an explicit stack: only the node types above
    # are accepted, so names, calls, attributes and strings never run.
    pending = [(tree.body, False)]
    values = []
    while pending:
        node, operands_done = pending.pop()
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            values.append(node.value)
        elif isinstance(node, ast.UnaryOp) and type(node.op) in unary:
            if operands_done:
                values.append(unary[type(node.op)](values.pop()))
            else:
                pending.extend([(node, True), (node.operand, False)])
        elif isinstance(node, ast.BinOp) and type(node.op) in binary:
            if not operands_done:
                pending.extend([(node, True), (node.right, False), (node.left, False)])
                continue
            right = values.pop()
            left = values.pop()
            if (
                isinstance(node.op, ast.Pow) and isinstance(left, int) and isinstance(right, int)
                and right > 0 and right * (abs(left).bit_length() - 1) > max_bits
            ):
                raise ValueError(f"the result of {expression!r} is too large")
            try:
                values.append(binary[type(node.op)](left, right))
            except ZeroDivisionError:
                raise ValueError(f"division by zero in {expression!r}") from None
            except OverflowError:
                raise ValueError(f"the result of {expression!r} is too large") from None
        else:
            raise ValueError(
                f"unsupported expression {expression!r}: only numbers, + - * / // % ** and parentheses are allowed"
            )
    result = values.pop()
    if isinstance(result, int) and result.bit_length() > max_bits:
        raise ValueError(f"the result of {expression!r} is too large")
    return str(result)


@tool
def human_size(num_bytes: int, binary: bool = False) -> str:
    """Formats a number of bytes as a human-readable file size, e.g. 3000000 -> "3.0 MB".

    Args:
        num_bytes: The size in bytes.
        binary: Use powers of 1024 (KiB, MiB, ...) instead of powers of 1000 (kB, MB, ...).
    """
    import humanize

    return humanize.naturalsize(num_bytes, binary=binary)


class UnitConverterTool(Tool):
    """Converts a value between units of length or of mass, rounded to a fixed number of decimals.

    Args:
        decimals: Decimal places of the result. smolagents requires every ``__init__`` argument
            to have a literal default; a value passed here is not kept when smolagents serialises
            the tool, so it is only for tools that run in the agent's process.
    """

    name = "unit_converter"
    description = (
        "Converts a value from one unit to another. Length units: mm, cm, m, km, in, ft, yd, mi. "
        "Mass units: mg, g, kg, t, oz, lb. Returns the converted value followed by the unit."
    )
    inputs = {
        "value": {"type": "number", "description": "The value to convert, e.g. 5.5"},
        "from_unit": {"type": "string", "description": "The unit of the value, e.g. 'km'"},
        "to_unit": {"type": "string", "description": "The unit to convert to, e.g. 'mi'"},
    }
    output_type = "string"
    # Size of each unit in metres (length) or kilograms (mass).
    lengths = {"mm": 0.001, "cm": 0.01, "m": 1.0, "km": 1000.0, "in": 0.0254, "ft": 0.3048, "yd": 0.9144, "mi": 1609.344}
    masses = {"mg": 1e-6, "g": 0.001, "kg": 1.0, "t": 1000.0, "oz": 0.028349523125, "lb": 0.45359237}

    def __init__(self, decimals: int = 6) -> None:
        super().__init__()
        self.decimals = decimals

    def forward(self, value: float, from_unit: str, to_unit: str) -> str:
        source, target = from_unit.strip().lower(), to_unit.strip().lower()
        for table in (self.lengths, self.masses):
            if source in table and target in table:
                converted = round(value * table[source] / table[target], self.decimals)
                return f"{converted:g} {target}"
        known = ", ".join([*self.lengths, *self.masses])
        raise ValueError(f"cannot convert {from_unit!r} to {to_unit!r}: both must be length or mass units ({known})")
