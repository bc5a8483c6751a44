"""Turns stored tool source into a live ``smolagents.Tool``. Runs tenant code: call it only in a
process that is allowed to run that code (the validation child, an executor)."""

from __future__ import annotations

import ast
import linecache
from typing import Any


def find_tool_definition(tree: ast.Module) -> ast.FunctionDef | ast.ClassDef | None:
    """The single public function or ``Tool`` subclass of a module, if there is exactly one."""
    found = tool_definitions(tree)
    return found[0] if len(found) == 1 else None


def tool_definitions(tree: ast.Module) -> list[ast.FunctionDef | ast.ClassDef]:
    """Top-level public functions and ``Tool`` subclasses: the candidates for being the tool."""
    found: list[ast.FunctionDef | ast.ClassDef] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            found.append(node)
        elif isinstance(node, ast.ClassDef) and any(_is_tool_base(base) for base in node.bases):
            found.append(node)
    return found


def _is_tool_base(base: ast.expr) -> bool:
    return (isinstance(base, ast.Name) and base.id == "Tool") or (
        isinstance(base, ast.Attribute) and base.attr == "Tool"
    )


def build_tool(name: str, description: str | None, source: str, filename: str) -> Any:
    """Execute ``source`` in a fresh module namespace and return its tool as a ``smolagents.Tool``.

    The tool is renamed to ``name`` (and given ``description`` when one is passed), because the
    name and description registered with mt-core are what the agent sees.
    """
    import smolagents

    tree = ast.parse(source, filename=filename)
    node = find_tool_definition(tree)
    if node is None:
        raise ValueError("source must define exactly one public function or smolagents.Tool subclass")
    # inspect.getsource (used by smolagents to serialise tools) reads through linecache.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {"__name__": f"mt_tool_{name}", "__file__": filename}
    exec(compile(tree, filename, "exec"), namespace)  # noqa: S102 - running tenant code is this function's job
    obj = namespace[node.name]
    if isinstance(node, ast.ClassDef):
        instance = obj()
    else:
        instance = smolagents.tool(obj)
    instance.name = name
    if description:
        instance.description = description
    instance.validate_arguments()
    return instance


def describe_tool(instance: Any) -> dict[str, Any]:
    """The metadata mt-core stores for a built tool."""
    return {
        "inputs": dict(instance.inputs),
        "output_type": instance.output_type,
        "description": instance.description,
    }
