"""Checks of user input: names, text fields, URLs, dependencies and tool source (statically).

Every check raises a :class:`~mt_core.errors.ValidationError` subclass that names the field.
"""

from __future__ import annotations

import ast
import builtins
import keyword
import re
from collections.abc import Callable
from urllib.parse import urlparse

from .errors import LLMConfigError, TenantError, ToolValidationError, ValidationError
from .netguard import NetworkPolicy, check_literal_url
from .tool_loader import tool_definitions

TENANT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
LLM_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
RESERVED_TOOL_NAMES = frozenset({"final_answer"}) | frozenset(dir(builtins))
MAX_DESCRIPTION = 4096
MAX_DEPENDENCIES = 64


def check_tenant(tenant: object) -> str:
    """A tenant name: 1-64 of ``A-Z a-z 0-9 _ . -``, starting with a letter or digit, no ``..``."""
    if not isinstance(tenant, str):
        raise TenantError(f"must be a string, got {type(tenant).__name__}")
    if not TENANT_RE.fullmatch(tenant) or ".." in tenant:
        raise TenantError(
            f"{_show(tenant)} is not a valid tenant name (1-64 characters of letters, digits, '_', '.', '-',"
            " starting with a letter or digit, no '..')"
        )
    return tenant


def tool_error(field: str, problem: str) -> ToolValidationError:
    """The error for a bad argument of ``add_tool`` (for :func:`check_text`)."""
    return ToolValidationError(problem, field=field)


def check_text(
    field: str,
    value: object,
    *,
    max_length: int,
    allow_empty: bool = False,
    error: Callable[[str, str], ValidationError] = ValidationError,
) -> str:
    """A text field: a ``str`` without NUL bytes or lone surrogates, within ``max_length``.

    ``error(field, problem)`` makes the exception raised (a :class:`ValidationError` subclass).
    """
    if not isinstance(value, str):
        raise error(field, f"must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise error(field, "must not be empty")
    if len(value) > max_length:
        raise error(field, f"is {len(value)} characters long; the limit is {max_length}")
    if "\x00" in value:
        raise error(field, "must not contain NUL bytes")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise error(field, "is not valid UTF-8 text") from None
    return value


def check_tool_name(name: object) -> str:
    """A tool name: a Python identifier of at most 64 ASCII characters that shadows no builtin."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or keyword.iskeyword(name):
        raise ToolValidationError(
            f"{_show(name)} is not a valid tool name (a Python identifier of 1-64 ASCII letters, digits"
            " and '_', not a keyword)",
            field="name",
        )
    if name in RESERVED_TOOL_NAMES:
        raise ToolValidationError(f"{name!r} is reserved (a Python builtin or final_answer)", field="name")
    return name


def check_llm_name(name: object) -> str:
    """An LLM configuration name: 1-128 of letters, digits and ``_ . : -``."""
    if not isinstance(name, str) or not LLM_NAME_RE.fullmatch(name):
        raise LLMConfigError(
            "llm_name",
            f"{_show(name)} is not a valid name (1-128 letters, digits, '_', '.', ':', '-', starting with a"
            " letter or digit)",
        )
    return name


def default_llm_name(model_name: str) -> str:
    """A valid LLM configuration name made from a model name (``openai/gpt-4o`` -> ``openai-gpt-4o``)."""
    name = re.sub(r"[^A-Za-z0-9_.:-]+", "-", model_name).strip("-.:_")[:128]
    return name or "llm"


def check_base_url(value: object, network_policy: NetworkPolicy | None = None) -> str:
    """An http(s) URL with a host, as the base URL of an LLM endpoint.

    Its host must not be a literal address (in any spelling) or ``localhost`` that
    ``network_policy`` (default: public addresses only) refuses; names are not looked up here,
    they are checked when a request connects (:mod:`mt_core.netguard`).
    """
    text = check_text("base_url", value, max_length=2048, error=LLMConfigError)
    try:
        parsed = urlparse(text)
    except ValueError as exc:
        raise LLMConfigError("base_url", f"{_show(text)} is not a valid URL ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise LLMConfigError("base_url", f"{_show(text)} is not an http:// or https:// URL with a host")
    if any(ch.isspace() for ch in text):
        raise LLMConfigError("base_url", "must not contain whitespace")
    check_literal_url(text, network_policy if network_policy is not None else NetworkPolicy())
    return text


def check_dependencies(dependencies: object) -> list[str]:
    """PEP 508 requirement strings from an index (no pip options, no direct URLs)."""
    from packaging.requirements import InvalidRequirement, Requirement

    if dependencies is None:
        return []
    if isinstance(dependencies, str) or not isinstance(dependencies, (list, tuple)):
        raise ToolValidationError("must be a list of requirement strings", field="dependencies")
    if len(dependencies) > MAX_DEPENDENCIES:
        raise ToolValidationError(f"at most {MAX_DEPENDENCIES} are allowed", field="dependencies")
    result = []
    for item in dependencies:
        if not isinstance(item, str) or not item.strip():
            raise ToolValidationError(f"{_show(item)} is not a requirement string", field="dependencies")
        text = item.strip()
        if text.startswith("-"):
            raise ToolValidationError(f"{_show(text)} is a pip option, not a requirement", field="dependencies")
        try:
            requirement = Requirement(text)
        except InvalidRequirement as exc:
            raise ToolValidationError(
                f"{_show(text)} is not a PEP 508 requirement ({exc})", field="dependencies"
            ) from None
        if requirement.url:
            raise ToolValidationError(f"{_show(text)}: direct URL references are not allowed", field="dependencies")
        result.append(str(requirement))
    return result


def check_tool_source(code: object, *, max_bytes: int) -> ast.Module:
    """Static checks of tool source; returns its AST. Nothing is executed.

    The source must parse, define exactly one public function or ``smolagents.Tool`` subclass,
    and, for a function, type-hint every parameter and the return value and describe every
    parameter under ``Args:`` in a Google-style docstring.
    """
    if isinstance(code, bytes):
        try:
            code = code.decode("utf-8")
        except UnicodeDecodeError:
            raise ToolValidationError("is not valid UTF-8 text") from None
    text = check_text("code", code, max_length=max_bytes, error=tool_error)
    if len(text.encode("utf-8")) > max_bytes:
        raise ToolValidationError(f"is larger than {max_bytes} bytes")
    try:
        tree = ast.parse(text, filename="<tool>")
    except SyntaxError as exc:
        raise ToolValidationError(f"is not valid Python: {exc.msg}", line=exc.lineno) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ToolValidationError(f"cannot be parsed: {exc}") from None
    for node in tree.body:
        if isinstance(node, ast.AsyncFunctionDef):
            raise ToolValidationError(f"async function {node.name!r} is not supported", line=node.lineno)
    found = tool_definitions(tree)
    if not found:
        raise ToolValidationError(
            "defines no tool: expected one public function with type hints and a docstring,"
            " or one class deriving from smolagents.Tool"
        )
    if len(found) > 1:
        names = ", ".join(f"{n.name!r} (line {n.lineno})" for n in found)
        raise ToolValidationError(
            f"defines {len(found)} tools ({names}); define exactly one (prefix helpers with '_')",
            line=found[1].lineno,
        )
    node = found[0]
    if isinstance(node, ast.FunctionDef):
        _check_function(node)
    return tree


def _check_function(node: ast.FunctionDef) -> None:
    args = node.args
    if args.vararg or args.kwarg:
        raise ToolValidationError(f"function {node.name!r} must not take *args or **kwargs", line=node.lineno)
    params = args.posonlyargs + args.args + args.kwonlyargs
    for param in params:
        if param.annotation is None:
            raise ToolValidationError(
                f"parameter {param.arg!r} of {node.name!r} has no type hint", line=param.lineno
            )
    if node.returns is None:
        raise ToolValidationError(f"function {node.name!r} has no return type hint", line=node.lineno)
    docstring = ast.get_docstring(node)
    if not docstring:
        raise ToolValidationError(
            f"function {node.name!r} has no docstring (describe it, with an 'Args:' section)", line=node.lineno
        )
    if params and not re.search(r"^\s*Args:\s*$", docstring, re.MULTILINE):
        raise ToolValidationError(f"docstring of {node.name!r} has no 'Args:' section", line=node.lineno)
    args_section = docstring.split("Args:", 1)[-1]
    for param in params:
        if not re.search(rf"^\s*{re.escape(param.arg)}\s*(\([^)]*\))?\s*:", args_section, re.MULTILINE):
            raise ToolValidationError(
                f"docstring of {node.name!r} does not describe parameter {param.arg!r} under 'Args:'",
                line=node.lineno,
            )


def _show(value: object, limit: int = 40) -> str:
    """A short, printable rendering of a rejected value for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
