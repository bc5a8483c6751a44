"""The gateway's parts on their own: error classification against the SDKs' real exception types,
Retry-After, breaker transitions, the cache key, the deadline of the guarded transport."""

from __future__ import annotations

import email.utils
import time

import httpx2
import openai
import pytest

from mt_core import deadline
from mt_core.breaker import BreakerPolicy, admit, after_failure, after_success
from mt_core.errors import BlockedAddressError
from mt_core.llm_cache import cache_key, is_deterministic
from mt_core.llm_errors import classify, parse_retry_after
from mt_core.netguard import NetworkPolicy, guarded_http_client
from mt_core.testing import CONTENT_FILTER_ERROR, CONTEXT_LENGTH_ERROR, ScriptedLLMServer

pytestmark = pytest.mark.backends("sqlite")  # the gateway's parts on their own: no database


def _status_error(status, body=None, headers=None):
    request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx2.Response(status, json=body or {"error": {"message": "x"}}, headers=headers, request=request)
    kinds = {400: openai.BadRequestError, 401: openai.AuthenticationError, 403: openai.PermissionDeniedError,
             404: openai.NotFoundError, 429: openai.RateLimitError}
    kind = kinds.get(status, openai.InternalServerError if status >= 500 else openai.APIStatusError)
    return kind("x", response=response, body=(body or {}).get("error"))


@pytest.mark.parametrize(("exc", "kind", "retryable", "falls_back"), [
    (_status_error(429), "rate_limit", True, True),
    (_status_error(500), "server_error", True, True),
    (_status_error(503), "overloaded", True, True),
    (_status_error(529), "overloaded", True, True),
    (_status_error(401), "auth", False, True),
    (_status_error(403), "auth", False, True),
    (_status_error(404), "not_found", False, True),
    (_status_error(400), "bad_request", False, False),
    (_status_error(400, {"error": CONTEXT_LENGTH_ERROR}), "context_window", False, True),
    (_status_error(400, {"error": CONTENT_FILTER_ERROR}), "content_filter", False, False),
    (openai.APITimeoutError(request=httpx2.Request("POST", "http://x")), "timeout", True, True),
    (openai.APIConnectionError(request=httpx2.Request("POST", "http://x")), "connection", True, True),
    (httpx2.ReadTimeout("slow"), "timeout", True, True),
    (httpx2.RemoteProtocolError("cut"), "connection", True, True),
    (ConnectionResetError("reset"), "connection", True, True),
    (ValueError("no usage"), "invalid_response", False, True),
    (BlockedAddressError("h", "127.0.0.1", "loopback", variable="V", suggestion="127.0.0.0/8"), "blocked", False, True),
])
def test_classification_by_type(exc, kind, retryable, falls_back):
    failure = classify(exc)
    assert (failure.kind, failure.retryable, failure.falls_back) == (kind, retryable, falls_back)


def test_a_class_named_like_an_sdk_error_is_not_taken_for_one():
    RateLimitError = type("RateLimitError", (Exception,), {})  # noqa: N806
    assert classify(RateLimitError("429 Too Many Requests")).kind == "other"


def test_huggingface_errors_by_type():
    from huggingface_hub.errors import HfHubHTTPError, InferenceTimeoutError

    response = httpx2.Response(503, headers={"Retry-After": "2"}, request=httpx2.Request("POST", "http://x"))
    failure = classify(HfHubHTTPError("down", response=response))
    assert (failure.kind, failure.status, failure.retry_after) == ("overloaded", 503, 2.0)
    assert classify(InferenceTimeoutError("slow")).kind == "timeout"


def test_retry_after_forms():
    now = time.time()
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    date = email.utils.formatdate(now + 10, usegmt=True)
    assert 8.5 <= parse_retry_after({"retry-after": date}, now=now) <= 10.0
    assert parse_retry_after({"retry-after": email.utils.formatdate(now - 10, usegmt=True)}, now=now) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None and parse_retry_after(None) is None
    assert classify(_status_error(429, headers={"Retry-After": "7"})).retry_after == 7.0


def test_breaker_transitions():
    policy = BreakerPolicy(failures=2, window=10.0, cooldown=5.0)
    row = after_failure(None, 100.0, policy, "503 X")
    assert (row["state"], row["failures"]) == ("closed", 1)
    assert admit(row, 101.0, 3.0)[0].allowed
    assert after_failure(row, 111.0, policy, "503 X")["failures"] == 1  # outside the window: counted afresh
    row = after_failure(row, 102.0, policy, "503 X")
    assert (row["state"], row["open_until"]) == ("open", 107.0)
    admission, change = admit(row, 103.0, 3.0)
    assert not admission.allowed and change is None and admission.until == 107.0
    assert "circuit breaker open after 2 failures (last: 503 X)" in admission.reason
    admission, trial = admit(row, 107.5, 3.0)  # cooldown over: one trial
    assert admission.allowed and admission.trial and trial["state"] == "half_open" and trial["trial_until"] == 110.5
    assert not admit(trial, 108.0, 3.0)[0].allowed  # another caller waits for the trial
    assert admit(trial, 111.0, 3.0)[0].trial  # the trial's lease ran out (it crashed): a new trial
    assert after_failure(trial, 108.0, policy, "503 X")["state"] == "open"
    closed = after_success(trial, 108.0)
    assert closed["state"] == "closed" and closed["failures"] == 0
    assert after_success(closed, 109.0) is None  # nothing to write


def test_the_cache_key_covers_the_caller_and_every_parameter():
    base = dict(tenant="acme", llm_id="llm_1", provider="openai", model="m", base_url="http://h/v1",
                options={"temperature": 0}, messages=[{"role": "user", "content": "hi"}], tools=None,
                stop_sequences=["Observation:"], response_format=None, kwargs={})
    key = cache_key(**base)
    assert key == cache_key(**base)
    for change in ({"tenant": "globex"}, {"llm_id": "llm_2"}, {"model": "m2"}, {"base_url": "http://g/v1"},
                   {"options": {"temperature": 0, "max_tokens": 5}}, {"options": {"temperature": 0, "top_p": 0.5}},
                   {"messages": [{"role": "user", "content": "hi!"}]}, {"stop_sequences": ["<end>"]},
                   {"tools": [{"type": "function", "function": {"name": "f"}}]}, {"kwargs": {"seed": 1}},
                   {"response_format": {"type": "json_object"}}):
        assert cache_key(**{**base, **change}) != key, change


def test_only_deterministic_calls_are_cacheable():
    assert is_deterministic({"temperature": 0}, {})
    assert is_deterministic({"temperature": 0.0}, {})
    assert is_deterministic({"temperature": 0.9, "seed": 3}, {})
    assert not is_deterministic({}, {})  # the provider's default temperature (1 for OpenAI)
    assert not is_deterministic({"temperature": 0.2}, {})
    assert not is_deterministic({"temperature": 0}, {"temperature": 0.5})  # the call's own wins
    assert not is_deterministic({"temperature": False}, {})


def test_the_guarded_transport_ends_a_request_at_the_deadline():
    with ScriptedLLMServer(script=[{"hang": True}]) as server:
        client = guarded_http_client(NetworkPolicy.from_strings(["127.0.0.0/8"]), timeout=30.0, library="httpx2")
        started = time.monotonic()
        with deadline.limit(time.monotonic() + 0.5), pytest.raises(httpx2.ReadTimeout):
            client.post(server.base_url + "/chat/completions", json={"messages": []})
        assert time.monotonic() - started < 1.5
        client.close()


def test_deadlines_nest_and_the_earlier_one_wins():
    assert deadline.remaining() is None
    with deadline.limit(time.monotonic() + 10):
        with deadline.limit(time.monotonic() + 100):
            assert deadline.remaining() < 10.5
        extensions = {"timeout": {"connect": 60.0, "read": 3.0, "write": None, "pool": 60.0}}
        deadline.clamp_timeouts(extensions)
        assert extensions["timeout"]["read"] == 3.0 and 9 < extensions["timeout"]["connect"] <= 10
        assert 9 < extensions["timeout"]["write"] <= 10
    assert deadline.remaining() is None
