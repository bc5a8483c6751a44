"""Turns tool source into a live ``smolagents.Tool``, the way smolagents itself would load it.

Runs tenant code: call it only in a process that may run that code (a jail, a container, or an
installation that opted in to in-process execution). Stdlib and smolagents only, so the Docker
sandbox image can ship this file as it is.

Which definition of a module is the tool:

1. the only ``Tool`` subclass or ``Tool`` instance (``@tool`` functions are instances) the module
   defines, decided with ``issubclass`` after the module ran, as ``Tool.from_code`` does; a class
   that other tool classes of the module derive from is a base, not a candidate, and an instance
   of a candidate class is that candidate;
2. when there are several, the one whose Python name is the name given to ``add_tool``, else the
   one whose ``name`` attribute is (a Python name is unique in a module, a ``name`` attribute need
   not be: ``visualizer = tool(...)`` beside ``class VisualQATool`` with ``name = "visualizer"``);
3. when there are none, the only public function (it becomes a tool like ``@tool`` would make it),
   or the public function named like the tool;
4. otherwise an error that lists the candidates.

How a chosen class becomes the tool: it is built with the settings and secrets its ``__init__``
accepts as keyword arguments; when none of them applies and the module made one instance of it
(``retriever_tool = RetrieverTool(docs)``), that instance is the tool, as it is the object the
author hands to an agent. A class that cannot be built that way is an error naming the arguments
its ``__init__`` still needs.
"""

from __future__ import annotations

import ast
import inspect
import linecache
import re
from dataclasses import dataclass
from typing import Any


class ToolSourceError(Exception):
    """The source does not hold a usable tool; ``line`` points at the definition when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


@dataclass
class Candidate:
    """A definition that could be the tool."""

    entry: str  # its name in the module
    kind: str  # "class", "instance" or "function"
    obj: Any
    line: int | None
    instance: Any = None  # for a class: the one instance of it the module made, if any

    def describe(self) -> str:
        return f"{self.entry!r} ({self.kind}{f', line {self.line}' if self.line else ''})"


def execute_module(source: str, filename: str, module_name: str) -> dict[str, Any]:
    """Run ``source`` as a fresh module and return its namespace."""
    import sys
    import types

    # inspect.getsource (used by @tool and to serialise tools) reads through linecache.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(module_name)
    module.__file__ = filename
    sys.modules[module_name] = module  # dataclasses and pickling look a module up by name
    code = compile(source, filename, "exec")
    exec(code, module.__dict__)  # noqa: S102 - running tenant code is this function's job
    return module.__dict__


def candidates(namespace: dict[str, Any], source: str, module_name: str) -> list[Candidate]:
    """The definitions of a module that could be its tool (see the module docstring)."""
    from smolagents import Tool

    lines = _definition_lines(source)
    classes: list[Candidate] = []
    instances: list[Candidate] = []
    functions: list[Candidate] = []
    for entry, obj in namespace.items():
        if entry.startswith("__"):
            continue
        if isinstance(obj, type):
            if issubclass(obj, Tool) and obj is not Tool and obj.__module__ == module_name:
                classes.append(Candidate(entry, "class", obj, lines.get(entry)))
        elif isinstance(obj, Tool):
            instances.append(Candidate(entry, "instance", obj, lines.get(entry)))
        elif inspect.isfunction(obj) and obj.__module__ == module_name and not entry.startswith("_"):
            functions.append(Candidate(entry, "function", obj, lines.get(entry)))
    bases = {c.entry for c in classes if any(o.obj is not c.obj and issubclass(o.obj, c.obj) for o in classes)}
    classes = [c for c in classes if c.entry not in bases]
    for candidate in classes:
        made = {id(i.obj): i.obj for i in instances if type(i.obj) is candidate.obj}
        if len(made) == 1:
            candidate.instance = next(iter(made.values()))
    instances = [c for c in instances if not any(type(c.obj) is k.obj for k in classes)]
    tools = classes + instances
    return tools if tools else functions


def choose(found: list[Candidate], wanted: str) -> Candidate:
    """The candidate that is the tool named ``wanted``, or :class:`ToolSourceError`."""
    if len(found) == 1:
        return found[0]
    if not found:
        raise ToolSourceError(
            "defines no tool: expected a function decorated with @tool, a smolagents.Tool subclass, or a public"
            " function with type hints and a docstring"
        )
    named = [c for c in found if c.entry == wanted]
    if not named:
        named = [c for c in found if getattr(c.obj, "name", None) == wanted]
    if len(named) == 1:
        return named[0]
    # private functions are never candidates; private classes and instances are (a module's only tool may be one)
    private = ", or make the others private (a leading '_')" if all(c.kind == "function" for c in found) else ""
    if named:
        listed = ", ".join(c.describe() for c in named)
        raise ToolSourceError(
            f"defines {len(named)} tools named {wanted!r} ({listed}); add the one you mean under its Python name",
            line=named[1].line,
        )
    listed = ", ".join(c.describe() for c in found)
    raise ToolSourceError(
        f"defines {len(found)} possible tools ({listed}) and none is named {wanted!r}; name the tool like one of"
        f" them{private}",
        line=found[1].line,
    )


def instantiate(candidate: Candidate, source: str, init_kwargs: dict[str, Any] | None = None) -> Any:
    """The ``smolagents.Tool`` for a chosen candidate (classes get the ``init_kwargs`` they accept)."""
    import smolagents

    if candidate.kind == "instance":
        return candidate.obj
    if candidate.kind == "class":
        kwargs = accepted_kwargs(candidate.obj.__init__, init_kwargs or {})
        if not kwargs and candidate.instance is not None:
            return candidate.instance
        missing = missing_arguments(candidate.obj, kwargs)
        if missing:
            needed = ", ".join(repr(m) for m in missing)
            raise ToolSourceError(
                f"class {candidate.entry!r} cannot be built: its __init__ needs {needed}; give"
                f" {'them' if len(missing) > 1 else 'it'} in settings, or make the tool in the source"
                f" (e.g. `tool = {candidate.entry}(...)`)",
                line=candidate.line,
            )
        return candidate.obj(**kwargs)
    try:
        return smolagents.tool(candidate.obj)
    except Exception as exc:  # smolagents' own reason, made readable and pointed at the line
        check_function(source, candidate.entry)
        raise ToolSourceError(f"function {candidate.entry!r}: {type(exc).__name__}: {exc}", line=candidate.line) from None


def accepted_kwargs(function: Any, values: dict[str, Any]) -> dict[str, Any]:
    """The items of ``values`` that ``function``'s signature accepts as keyword arguments."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return dict(values)
    names = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {key: value for key, value in values.items() if key in names}


def missing_arguments(cls: type, kwargs: dict[str, Any]) -> list[str]:
    """The parameters ``cls(**kwargs)`` would lack (none when its signature cannot be read)."""
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        return []
    return [
        p.name for p in signature.parameters.values()
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.name not in kwargs
    ]


def build_tool(
    name: str,
    description: str | None,
    source: str,
    filename: str,
    *,
    entry: str | None = None,
    init_kwargs: dict[str, Any] | None = None,
) -> tuple[Any, Candidate]:
    """Run ``source`` and return its tool (renamed to ``name``) with the candidate it came from.

    ``entry`` names the definition to use (as recorded when the tool was validated); without
    it the definition is chosen by the rules of this module. ``description`` replaces the
    tool's own when given.
    """
    module_name = f"mt_tool_{name}"
    namespace = execute_module(source, filename, module_name)
    if entry is not None and entry in namespace:
        found = [c for c in candidates(namespace, source, module_name) if c.entry == entry]
        if not found:
            raise ToolSourceError(f"{entry!r} is no longer a tool definition in this source")
        candidate = found[0]
    else:
        candidate = choose(candidates(namespace, source, module_name), name)
    tool = instantiate(candidate, source, init_kwargs)
    tool.name = name
    if description:
        tool.description = description
    tool.validate_arguments()
    return tool, candidate


def describe_tool(tool: Any, candidate: Candidate) -> dict[str, Any]:
    """The metadata mt-core stores for a built tool."""
    return {
        "entry": candidate.entry,
        "kind": candidate.kind,
        "inputs": dict(tool.inputs),
        "output_type": tool.output_type,
        "description": tool.description,
        "output_schema": getattr(tool, "output_schema", None),
    }


def _definition_lines(source: str) -> dict[str, int]:
    """Top-level names of the source and the line each is defined on."""
    lines: dict[str, int] = {}
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return lines
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            lines.setdefault(node.name, node.lineno)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    lines.setdefault(target.id, node.lineno)
    return lines


def check_function(source: str, entry: str) -> None:
    """Readable errors, with the line, for a plain function smolagents refused to turn into a tool
    (called only after it refused, so nothing smolagents accepts is rejected here)."""
    node = next(
        (n for n in ast.parse(source).body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == entry),
        None,
    )
    if node is None:
        return
    if isinstance(node, ast.AsyncFunctionDef):
        raise ToolSourceError(f"async function {node.name!r} is not supported (smolagents calls tools synchronously)",
                              line=node.lineno)
    args = node.args
    params = args.posonlyargs + args.args + args.kwonlyargs
    for param in params:
        if param.annotation is None:
            raise ToolSourceError(f"parameter {param.arg!r} of {node.name!r} has no type hint", line=param.lineno)
    if node.returns is None and params:
        raise ToolSourceError(f"function {node.name!r} has no return type hint", line=node.lineno)
    docstring = ast.get_docstring(node)
    if not docstring:
        raise ToolSourceError(
            f"function {node.name!r} has no docstring (describe it, with an 'Args:' section)", line=node.lineno
        )
    if params and not re.search(r"^\s*Args:\s*$", docstring, re.MULTILINE):
        raise ToolSourceError(f"docstring of {node.name!r} has no 'Args:' section", line=node.lineno)
    args_section = docstring.split("Args:", 1)[-1]
    for param in params:
        if not re.search(rf"^\s*{re.escape(param.arg)}\s*(\([^)]*\))?\s*:", args_section, re.MULTILINE):
            raise ToolSourceError(
                f"docstring of {node.name!r} does not describe parameter {param.arg!r} under 'Args:'",
                line=node.lineno,
            )
