"""The response cache of deterministic LLM calls: when a call may be cached, its key, and how a
reply is stored.

Exact match only. A call is cacheable only when it is deterministic: temperature 0, or a seed
set (an omitted temperature is the provider's default, 1 for OpenAI: never cached). The key is a
SHA-256 of the tenant, the configuration (id, provider, model, base URL), every option sent with
the request (sampling parameters and the rest), the call's own arguments (stop sequences,
response format, extra keyword arguments), the full message list and the tools' schemas. The
tenant is in the key *and* in every lookup, so one tenant's entry is never served to another.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

KEY_VERSION = 1


def is_deterministic(options: dict[str, Any], kwargs: dict[str, Any]) -> bool:
    """Whether a call with these configuration options and call arguments samples deterministically."""
    merged = {**options, **kwargs}
    temperature = merged.get("temperature")
    seeded = merged.get("seed") is not None
    zero = isinstance(temperature, (int, float)) and not isinstance(temperature, bool) and temperature == 0
    return zero or seeded


def _plain(value: Any) -> Any:
    """A JSON-ready form of a message part, a tool call or an argument (dataclasses, enums, models)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    enum_value = getattr(value, "value", None)
    if isinstance(enum_value, str) and type(value).__module__ != "builtins":
        return enum_value
    if hasattr(value, "model_dump"):
        return _plain(value.model_dump())
    if hasattr(value, "__dataclass_fields__"):
        return {name: _plain(getattr(value, name)) for name in value.__dataclass_fields__}
    return repr(value)  # e.g. an image: its repr, which differs per object, so such calls simply miss


def message_for_key(message: Any) -> dict[str, Any]:
    """What of a chat message the key covers: role, content, tool calls."""
    if isinstance(message, dict):
        return {key: _plain(message.get(key)) for key in ("role", "content", "tool_calls", "tool_call_id", "name")}
    return {
        "role": _plain(getattr(message, "role", None)),
        "content": _plain(getattr(message, "content", None)),
        "tool_calls": _plain(getattr(message, "tool_calls", None)),
    }


def cache_key(
    *,
    tenant: str,
    llm_id: str,
    provider: str,
    model: str,
    base_url: str | None,
    options: dict[str, Any],
    messages: Sequence[Any],
    tools: Sequence[dict[str, Any]] | None,
    stop_sequences: Sequence[str] | None,
    response_format: Any,
    kwargs: dict[str, Any],
) -> str:
    """The hex SHA-256 key of one call (see the module docstring for what it covers)."""
    payload = {
        "v": KEY_VERSION, "tenant": tenant, "llm_id": llm_id, "provider": provider, "model": model,
        "base_url": base_url, "options": _plain(options), "kwargs": _plain(kwargs),
        "stop": _plain(list(stop_sequences) if stop_sequences is not None else None),
        "response_format": _plain(response_format), "tools": _plain(list(tools or [])),
        "messages": [message_for_key(message) for message in messages],
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def encode_reply(message: Any) -> dict[str, Any]:
    """A smolagents ``ChatMessage`` as stored: role, content, tool calls and the original usage."""
    usage = getattr(message, "token_usage", None)
    return {
        "role": _plain(message.role),
        "content": _plain(message.content),
        "tool_calls": _plain(message.tool_calls) if message.tool_calls else None,
        "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens} if usage else None,
    }


def decode_reply(data: dict[str, Any]) -> Any:
    """A stored reply as a smolagents ``ChatMessage`` billed zero tokens."""
    from smolagents.models import ChatMessage
    from smolagents.monitoring import TokenUsage

    fields = {"role": data.get("role") or "assistant", "content": data.get("content"),
              "tool_calls": data.get("tool_calls")}
    return ChatMessage.from_dict(fields, raw=None, token_usage=TokenUsage(input_tokens=0, output_tokens=0))
