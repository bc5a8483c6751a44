"""Checks of user input: names, text fields, URLs, dependencies and tool source (statically).

Every check raises a :class:`~mt_core.errors.ValidationError` subclass that names the field.
"""

from __future__ import annotations

import ast
import builtins
import keyword
import re
import threading
from collections.abc import Callable
from urllib.parse import urlparse

from .errors import LLMConfigError, TenantError, ToolValidationError, ValidationError
from .fields import text_problem
from .netguard import NetworkPolicy, check_literal_url

# CPython 3.11 keeps the AST constructor's recursion depth where two threads parsing at once can
# both change it: one of them then fails with "SystemError: AST constructor recursion depth
# mismatch" (python/cpython#106905). add_tool parses in the caller's thread, so parses take turns.
_PARSE_LOCK = threading.Lock()

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
    problem = text_problem(value, max_length)
    if problem is not None:
        raise error(field, problem)
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


def check_tool_source(code: object, *, max_bytes: int) -> str:
    """Static checks of tool source: text that parses as Python. Nothing is executed; which
    definition is the tool is decided where the code may run (see :mod:`mt_core.tool_loader`)."""
    if isinstance(code, bytes):
        try:
            code = code.decode("utf-8")
        except UnicodeDecodeError:
            raise ToolValidationError("is not valid UTF-8 text") from None
    text = check_text("code", code, max_length=max_bytes, error=tool_error)
    if len(text.encode("utf-8")) > max_bytes:
        raise ToolValidationError(f"is larger than {max_bytes} bytes")
    try:
        with _PARSE_LOCK:
            ast.parse(text, filename="<tool>")
    except SyntaxError as exc:
        raise ToolValidationError(f"is not valid Python: {exc.msg}", line=exc.lineno) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ToolValidationError(f"cannot be parsed: {exc}") from None
    return text


SECRET_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
RESERVED_SECRET_NAMES = frozenset({"PATH", "HOME", "TMPDIR", "LANG", "PWD", "SHELL", "USER"})
MAX_SETTINGS_BYTES = 64 * 1024
MAX_SECRETS = 32


def check_tool_settings(settings: object) -> dict[str, object]:
    """A tool's settings: a JSON object of keyword arguments (identifiers) for its ``__init__``."""
    import json

    if settings is None:
        return {}
    if not isinstance(settings, dict):
        raise ToolValidationError("must be a dict of keyword arguments", field="settings")
    for key in settings:
        if not isinstance(key, str) or not key.isidentifier() or keyword.iskeyword(key):
            raise ToolValidationError(f"{_show(key)} is not a valid keyword argument name", field="settings")
    try:
        text = json.dumps(settings)
    except (TypeError, ValueError) as exc:
        raise ToolValidationError(f"must be JSON (strings, numbers, booleans, lists, dicts): {exc}",
                                  field="settings") from None
    if len(text) > MAX_SETTINGS_BYTES:
        raise ToolValidationError(f"are {len(text)} bytes as JSON; the limit is {MAX_SETTINGS_BYTES}", field="settings")
    return json.loads(text)


def check_tool_secrets(secrets: object) -> dict[str, str]:
    """A tool's secrets: environment variable names to string values."""
    if secrets is None:
        return {}
    if not isinstance(secrets, dict):
        raise ToolValidationError("must be a dict of variable names to strings", field="secrets")
    if len(secrets) > MAX_SECRETS:
        raise ToolValidationError(f"at most {MAX_SECRETS} are allowed", field="secrets")
    clean: dict[str, str] = {}
    for name, value in secrets.items():
        if not isinstance(name, str) or not SECRET_NAME_RE.fullmatch(name):
            raise ToolValidationError(f"{_show(name)} is not an environment variable name", field="secrets")
        if name in RESERVED_SECRET_NAMES or name.startswith(("LD_", "PYTHON", "MT_")):
            raise ToolValidationError(f"{name!r} is reserved for the sandbox itself", field="secrets")
        clean[name] = check_text(f"secrets[{name!r}]", value, max_length=4096, error=tool_error)
    return clean


def _show(value: object, limit: int = 40) -> str:
    """A short, printable rendering of a rejected value for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
