"""What a failed LLM request means for the gateway: retry it, fall back, or stop.

Errors are classified with ``isinstance`` against the exception types of the SDKs that raise
them (openai, and LiteLLM's subclasses of them; httpx/httpx2; huggingface_hub), looked up in
``sys.modules``: an SDK that was never imported cannot have raised, and nothing is imported here.
Third-party SDKs are read through a ``status_code`` attribute when they have one.
"""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from .errors import BlockedAddressError

# kind -> (retried on the same configuration, falls back to the next one, counts for the breaker)
POLICY: dict[str, tuple[bool, bool, bool]] = {
    "rate_limit": (True, True, True),        # 429
    "overloaded": (True, True, True),        # 503, 529
    "server_error": (True, True, True),      # 500, 502, 504 and other 5xx
    "timeout": (True, True, True),           # no answer in time (also HTTP 408)
    "connection": (True, True, True),        # refused, reset, closed mid-response
    "context_window": (False, True, False),  # the conversation is too long for this model: another may take it
    "auth": (False, True, False),            # 401, 403: this configuration's key or access
    "not_found": (False, True, False),       # 404: this configuration's model or URL
    "blocked": (False, True, False),         # the SSRF guard refused this configuration's URL
    "invalid_response": (False, True, False),  # an answer that is not a chat completion
    "other": (False, True, False),           # anything else this configuration raised
    "content_filter": (False, False, False),  # the provider's safety system refused the request
    "bad_request": (False, False, False),    # 400, 422...: the request itself is wrong everywhere
}
_CONTEXT_WINDOW = re.compile(
    r"maximum context length|context[ _]length[ _]exceeded|context window|prompt is too long|too many tokens", re.I
)
_CONTENT_FILTER_CODES = frozenset({"content_filter", "content_policy_violation", "ResponsibleAIPolicyViolation"})
MAX_MESSAGE = 300


@dataclass(frozen=True)
class Failure:
    """One failed attempt, classified.

    Args:
        kind: one of :data:`POLICY`'s keys.
        error_type: the exception's class name, for the record.
        status: the HTTP status, when the failure was an HTTP answer.
        message: a short account (not yet redacted).
        retry_after: seconds the provider asked to wait (``Retry-After``), if it did.
    """

    kind: str
    error_type: str
    status: int | None = None
    message: str = ""
    retry_after: float | None = None

    @property
    def retryable(self) -> bool:
        """Whether the same configuration may be tried again."""
        return POLICY[self.kind][0]

    @property
    def falls_back(self) -> bool:
        """Whether the call moves on to the next configuration of its chain."""
        return POLICY[self.kind][1]

    @property
    def counts(self) -> bool:
        """Whether it counts towards the configuration's circuit breaker (an outage, not a caller error)."""
        return POLICY[self.kind][2]

    def label(self) -> str:
        """``503 InternalServerError`` or ``APITimeoutError``."""
        return f"{self.status} {self.error_type}" if self.status else self.error_type


def _module(name: str) -> Any:
    return sys.modules.get(name)


def _http_libraries() -> list[Any]:
    return [module for module in (_module("httpx2"), _module("httpx")) if module is not None]


def _response_of(exc: BaseException) -> tuple[int | None, Any]:
    """The HTTP status and response behind an SDK's error, if it has them."""
    openai = _module("openai")
    if openai is not None and isinstance(exc, openai.APIStatusError):
        return int(exc.status_code), exc.response
    hub_errors = _module("huggingface_hub.errors")
    if hub_errors is not None and isinstance(exc, hub_errors.HfHubHTTPError) and exc.response is not None:
        return int(exc.response.status_code), exc.response
    for http in _http_libraries():
        if isinstance(exc, http.HTTPStatusError):
            return int(exc.response.status_code), exc.response
    status = getattr(exc, "status_code", None)  # other SDKs (e.g. a plugin's) that follow the convention
    if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599:
        return status, getattr(exc, "response", None)
    return None, None


def _is_timeout(exc: BaseException) -> bool:
    openai = _module("openai")
    if openai is not None and isinstance(exc, openai.APITimeoutError):
        return True
    hub_errors = _module("huggingface_hub.errors")
    if hub_errors is not None and isinstance(exc, hub_errors.InferenceTimeoutError):
        return True
    if any(isinstance(exc, http.TimeoutException) for http in _http_libraries()):
        return True
    return isinstance(exc, TimeoutError)


def _is_connection(exc: BaseException) -> bool:
    openai = _module("openai")
    if openai is not None and isinstance(exc, openai.APIConnectionError):
        return True
    if any(isinstance(exc, http.TransportError) for http in _http_libraries()):
        return True
    return isinstance(exc, ConnectionError)


def _error_body(exc: BaseException, response: Any) -> dict[str, Any]:
    """The ``error`` object of an OpenAI-style error body, or ``{}``."""
    body = getattr(exc, "body", None)
    if body is None and response is not None:
        try:
            body = json.loads(response.content or b"null")
        except (ValueError, AttributeError, TypeError, RuntimeError):
            body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"]
    return body if isinstance(body, dict) else {}


def parse_retry_after(headers: Any, now: float | None = None) -> float | None:
    """Seconds a response asks to wait: ``retry-after-ms``, or ``Retry-After`` as seconds or an
    HTTP date; None when it asks nothing (or nonsense)."""
    if headers is None:
        return None
    try:
        millis = headers.get("retry-after-ms")
        if millis is not None:
            return max(float(millis) / 1000.0, 0.0)
    except (TypeError, ValueError):
        pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except (TypeError, ValueError):
        pass
    try:
        moment = parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None:
        return None
    return max(moment.timestamp() - (time.time() if now is None else now), 0.0)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def classify(exc: BaseException) -> Failure:
    """What one failed attempt's exception means (see :data:`POLICY`)."""
    error_type = type(exc).__name__
    message = _short(str(exc) or error_type)
    if isinstance(exc, BlockedAddressError):
        return Failure("blocked", error_type, None, message)
    status, response = _response_of(exc)
    if status is not None:
        headers = getattr(response, "headers", None)
        retry_after = parse_retry_after(headers)
        if status == 429:
            return Failure("rate_limit", error_type, status, message, retry_after)
        if status in (503, 529):
            return Failure("overloaded", error_type, status, message, retry_after)
        if status >= 500:
            return Failure("server_error", error_type, status, message, retry_after)
        if status == 408:
            return Failure("timeout", error_type, status, message, retry_after)
        if status in (401, 403):
            return Failure("auth", error_type, status, message)
        if status == 404:
            return Failure("not_found", error_type, status, message)
        error = _error_body(exc, response)
        code = str(error.get("code") or "")
        inner = error.get("innererror") if isinstance(error.get("innererror"), dict) else {}
        text = f"{error.get('message') or ''} {message}"
        if code in _CONTENT_FILTER_CODES or str(inner.get("code") or "") in _CONTENT_FILTER_CODES:
            return Failure("content_filter", error_type, status, message)
        if code == "context_length_exceeded" or (status in (400, 413) and _CONTEXT_WINDOW.search(text)):
            return Failure("context_window", error_type, status, message)
        return Failure("bad_request", error_type, status, message)
    if _is_timeout(exc):
        return Failure("timeout", error_type, None, message)
    if _is_connection(exc):
        return Failure("connection", error_type, None, message)
    if isinstance(exc, ValueError):  # a body that is not JSON, or not a chat completion
        return Failure("invalid_response", error_type, None, message)
    return Failure("other", error_type, None, message)
