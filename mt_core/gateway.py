"""The LLM gateway: one smolagents ``Model`` in front of a run's fallback chain.

Each call (``generate``) walks the chain once, in order. For each configuration: a cached reply
if it has ``cache_ttl`` and the call is deterministic; else its circuit breaker (skipped while
open); else attempts, retried by error type with exponential backoff and jitter (honouring
``Retry-After`` up to ``MT_LLM_RETRY_AFTER_MAX``), until it answers, fails in a way retrying
cannot fix, or uses up its share of the call's deadline; then the next configuration.

One deadline per call (``MT_LLM_TIMEOUT``) covers the whole chain. The time left is shared out
as the call goes: a configuration may use ``left / n`` seconds, where ``n`` counts it and the
configurations after it whose breakers are not open, and whatever it does not use passes on.
So a fallback is always left at least an even share of the call, and a configuration that fails
fast leaves all of its share to the next one. Each attempt's HTTP timeout is the smaller of the
configuration's ``timeout`` and what is left of its share, enforced at the transport
(:mod:`mt_core.deadline`). A timeout is retried only when no other configuration can take over:
a hanging endpoint is not waited for twice while a fallback is idle.

Every attempt is recorded as it ends (:meth:`Storage.add_llm_attempt`), with its outcome
(``ok``, ``retried``, ``fell_back``, ``failed``, ``cache_hit``, ``skipped``), error type, status
code, latency, tokens and cost (:mod:`mt_core.prices`). When the tenant has budgets, each request
is reserved before it is sent (:meth:`Storage.reserve_llm_call`) and settled by its record; a
request that finds no room in a budget is not sent, and the call raises
:class:`~mt_core.errors.BudgetExceededError` (:mod:`mt_core.budgets`).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from smolagents.models import ChatMessage, ChatMessageStreamDelta, ChatMessageToolCallStreamDelta, Model

from . import deadline, prices
from .breaker import Admission, BreakerPolicy, Breakers
from .budgets import estimate_tokens, iso, reservation_expiry
from .errors import BudgetExceededError, LLMCallError, QuotaExceededError
from .ids import new_id
from .llm_cache import cache_key, decode_reply, encode_reply, is_deterministic
from .llm_errors import Failure, classify
from .llms import ChainLink, LLMChain, LLMConfig
from .secrets import redact
from .storage import BudgetLimits, LLMAttemptRow, Storage, utcnow

logger = logging.getLogger(__name__)

MIN_ATTEMPT_SECONDS = 0.25  # an attempt is not started with less time than this
MAX_BACKOFF_SECONDS = 8.0


@dataclass
class GatewayClock:
    """The gateway's view of time (replaceable in tests): a monotonic clock for deadlines, unix
    time for what other processes read (breakers, cache), and sleep."""

    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    random: random.Random = field(default_factory=random.Random)


class GatewayModel(Model):
    """A smolagents ``Model`` that sends each call through a fallback chain with retries, circuit
    breakers, a response cache and one deadline, recording every attempt.

    Args:
        chain: the configurations to try, with their providers (``LLMs.resolve``).
        storage: the database (attempt records, breakers, cache).
        tenant: the run's tenant; every record, breaker and cache entry is the tenant's.
        run_id: the run the attempts belong to.
        settings: the operator's settings (deadline, backoff, breaker and cache bounds).
        clock: time sources (tests).
        budgets: the tenant's budgets (:mod:`mt_core.budgets`); each request is reserved against
            them before it is sent. ``None`` or empty: no budget, no reservation.
        on_attempt: called with each attempt's record once it is stored (for traces).
    """

    def __init__(self, chain: LLMChain, *, storage: Storage, tenant: str, run_id: str, settings: Any,
                 clock: GatewayClock | None = None, budgets: BudgetLimits | None = None,
                 on_attempt: Callable[[dict[str, Any]], None] | None = None) -> None:
        super().__init__(model_id=chain.primary.model_name)
        self.chain = chain
        self.storage = storage
        self.tenant = tenant
        self.run_id = run_id
        self.settings = settings
        self.clock = clock or GatewayClock()
        self.breakers = Breakers(storage, tenant, BreakerPolicy.from_settings(settings), self.clock.wall)
        self.budgets = budgets or None
        self.on_attempt = on_attempt
        self.budget_stop: BudgetExceededError | None = None  # set once a budget refused a request
        self._models: dict[str, Any] = {}
        self._last_model: Any = None
        self._calls = 0
        self._attempts = 0

    # -- smolagents' Model interface ------------------------------------------------------------

    def generate(self, messages: list[ChatMessage | dict], stop_sequences: list[str] | None = None,
                 response_format: dict[str, str] | None = None, tools_to_call_from: list[Any] | None = None,
                 **kwargs: Any) -> ChatMessage:
        """One LLM call through the chain; :class:`~mt_core.errors.LLMCallError` when no
        configuration answered."""
        self._calls += 1
        call = _Call(self, self._calls, messages, stop_sequences, response_format, tools_to_call_from, kwargs)
        return call.run()

    def generate_stream(self, messages: list[ChatMessage | dict], stop_sequences: list[str] | None = None,
                        response_format: dict[str, str] | None = None, tools_to_call_from: list[Any] | None = None,
                        **kwargs: Any) -> Generator[ChatMessageStreamDelta, None, None]:
        """The reply of :meth:`generate` as one delta: buffered, because a retry or a fallback
        must be free to start over before anything reaches the agent."""
        message = self.generate(messages, stop_sequences, response_format, tools_to_call_from, **kwargs)
        calls = None
        if message.tool_calls:
            calls = [ChatMessageToolCallStreamDelta(index=i, id=c.id, type=c.type, function=c.function)
                     for i, c in enumerate(message.tool_calls)]
        yield ChatMessageStreamDelta(content=message.content if isinstance(message.content, str) else None,
                                     tool_calls=calls, token_usage=message.token_usage)

    def parse_tool_calls(self, message: ChatMessage) -> ChatMessage:
        """Parsed by the model that produced the reply, as it would have without the gateway."""
        inner = self._last_model
        if inner is not None and type(inner).parse_tool_calls is not Model.parse_tool_calls:
            return inner.parse_tool_calls(message)
        return super().parse_tool_calls(message)

    def to_dict(self) -> dict[str, Any]:
        """The chain as ids, models and URLs (never keys)."""
        return {"model_id": self.model_id, "chain": [
            {"llm_id": c.id, "provider": c.provider, "model": c.model_name, "base_url": c.base_url}
            for c in self.chain.configs]}

    def close(self) -> None:
        """Close the HTTP clients of the models built for this run."""
        for model in self._models.values():
            closer = getattr(getattr(model, "client", None), "close", None)
            if closer is not None:
                try:
                    closer()
                except Exception:  # noqa: BLE001 - cleanup never masks the run's result
                    logger.debug("closing a model's client failed", exc_info=True)

    # -- parts used by each call ----------------------------------------------------------------

    def model_for(self, link: ChainLink) -> Any:
        """The provider's model for one configuration, built on first use."""
        model = self._models.get(link.config.id)
        if model is None:
            model = link.provider.factory(link.config)
            self._models[link.config.id] = model
        return model

    def record(self, row: LLMAttemptRow, reservation: str | None = None) -> dict[str, Any]:
        """Store one attempt of this run (numbered in order), settling its reservation."""
        self._attempts += 1
        full: LLMAttemptRow = {**row, "run_id": self.run_id, "seq": self._attempts}  # type: ignore[typeddict-item]
        self.storage.add_llm_attempt(self.tenant, full, reservation=reservation)
        if self.on_attempt is not None:
            self.on_attempt(dict(full))
        return dict(full)

    def release(self, reservation: str | None) -> None:
        """Drop a reservation no attempt record will settle (the call was interrupted); a failure
        to do so is logged (the reservation then lapses at its expiry)."""
        if reservation is None:
            return
        try:
            self.storage.release_reservation(self.tenant, reservation)
        except Exception:  # noqa: BLE001 - never masks the interruption being handled
            logger.warning("could not release budget reservation %s of run %s", reservation, self.run_id,
                           exc_info=True)

    def reserve(self, config: LLMConfig, messages: list[Any], seconds: float) -> str | None:
        """Reserve what a request to ``config`` with these messages may cost, for at most
        ``seconds``; its id, or ``None`` when the tenant has no budget. Raises
        :class:`BudgetExceededError` (and remembers it in :attr:`budget_stop`) when a budget has
        no room left: the request must not be sent."""
        if not self.budgets:
            return None
        now = datetime.now(timezone.utc)
        tokens_in, tokens_out = estimate_tokens(messages, config.options.get("max_tokens"))
        cost = prices.attempt_cost(provider=config.provider, model=config.model_name, base_url=config.base_url,
                                   prices=config.prices, input_tokens=tokens_in, output_tokens=tokens_out,
                                   cached_tokens=0, at=now)
        reservation = new_id("rsv")
        try:
            self.storage.reserve_llm_call(self.tenant, {
                "id": reservation, "run_id": self.run_id, "tokens": tokens_in + tokens_out,
                "cost_usd": cost.usd or 0.0, "created_at": iso(now),
                "expires_at": iso(reservation_expiry(now, seconds)),
            }, self.budgets)
        except QuotaExceededError as exc:
            self.budget_stop = BudgetExceededError(f"{exc}; the run stopped before its next LLM call")
            raise self.budget_stop from None
        return reservation

    def redact(self, text: str) -> str:
        """``text`` without any key of the chain."""
        return redact(text, self.chain.secrets())


class _Call:
    """One ``generate`` call walking the chain."""

    def __init__(self, gateway: GatewayModel, index: int, messages: list[Any], stop_sequences: list[str] | None,
                 response_format: Any, tools: list[Any] | None, kwargs: dict[str, Any]) -> None:
        self.gateway = gateway
        self.index = index
        self.messages = messages
        self.stop_sequences = stop_sequences
        self.response_format = response_format
        self.tools = tools
        self.kwargs = kwargs
        self.clock = gateway.clock
        self.settings = gateway.settings
        self.started = self.clock.monotonic()
        self.deadline = self.started + float(self.settings.llm_timeout)
        self.notes: list[tuple[LLMConfig, list[str]]] = []
        self.attempts: list[dict[str, Any]] = []
        self.last: tuple[LLMConfig, Failure, BaseException] | None = None
        self.timed_out = False  # whether the last thing that happened was running out of time
        self.deadline_passed = False
        self.stopped = False

    def left(self) -> float:
        return self.deadline - self.clock.monotonic()

    def run(self) -> ChatMessage:
        links = list(self.gateway.chain)
        open_ids = self.gateway.breakers.open_now([link.config.id for link in links]) if len(links) > 1 else set()
        for position, link in enumerate(links):
            config = link.config
            notes: list[str] = []
            self.notes.append((config, notes))
            key = self._cache_key(config)
            if key is not None:
                hit = self.gateway.storage.get_cached_response(self.gateway.tenant, key, self.clock.wall())
                if hit is not None:
                    notes.append("cache hit")
                    self._record(config, "cache_hit", self.clock.monotonic(), utcnow())
                    return decode_reply(hit["response"])
            if self.left() < MIN_ATTEMPT_SECONDS:
                notes.append("not tried: the call's deadline had passed")
                self.timed_out = self.deadline_passed = True
                break
            admission = self.gateway.breakers.admit(config.id, self.left())
            if not admission.allowed:
                notes.append(f"skipped: {admission.reason}")
                self._record(config, "skipped", self.clock.monotonic(), utcnow(), error_type="CircuitOpen",
                             error=admission.reason)
                continue
            later = sum(1 for other in links[position + 1:] if other.config.id not in open_ids)
            has_next = position + 1 < len(links)
            message = self._attempts_on(link, admission, later, has_next, notes)
            if message is not None:
                if key is not None:
                    self._store(config, key, message)
                return message
            if self.stopped:
                break
        raise self._error()

    # -- one configuration ---------------------------------------------------------------------

    def _attempts_on(self, link: ChainLink, admission: Admission, later: int, has_next: bool,
                     notes: list[str]) -> ChatMessage | None:
        config = link.config
        share_end = self.clock.monotonic() + self.left() / (1 + later)
        retries = 0
        seen = admission.row
        while True:
            share = share_end - self.clock.monotonic()
            if share < MIN_ATTEMPT_SECONDS:
                notes.append("its share of the call's deadline ran out")
                self.timed_out = self.deadline_passed = True
                return None
            timeout = min(float(config.timeout), share)
            started, started_at = self.clock.monotonic(), utcnow()
            reservation = None
            try:
                model = self.gateway.model_for(link)  # built on first use: not part of the attempt's latency
                prices.warm_up()  # once per process: loads while the request is in flight, not beside imports
                reservation = self.gateway.reserve(config, self.messages, timeout)  # before anything is sent
                started, started_at = self.clock.monotonic(), utcnow()
                with deadline.limit(started + timeout):
                    message = model.generate(self.messages, stop_sequences=self.stop_sequences,
                                             response_format=self.response_format,
                                             tools_to_call_from=self.tools, **self.kwargs)
            except BudgetExceededError:
                raise
            except BaseException as exc:  # noqa: BLE001 - every failure is classified, recorded, acted on
                if not isinstance(exc, Exception):  # interrupted: no record will settle the reservation
                    self.gateway.release(reservation)
                    raise
                failure = classify(exc)
                self.last = (config, failure, exc)
                if failure.counts:
                    seen = self.gateway.breakers.failure(config.id, failure.label())
                elif failure.status is not None:  # it answered: the endpoint is up
                    self.gateway.breakers.success(config.id, seen)
                    seen = None
                # the one trial call through a half-open breaker is not retried: its failure opened it again
                wait = None if admission.trial else self._retry_wait(failure, retries, config, later, share_end, notes)
                if wait is not None:
                    outcome = "retried"
                elif failure.falls_back and has_next:
                    outcome = "fell_back"
                else:
                    outcome = "failed"
                notes.append(f"{failure.label()} ({outcome.replace('_', ' ')})")
                self._record(config, outcome, started, started_at, failure=failure, reservation=reservation)
                if wait is not None:
                    self.clock.sleep(wait)
                    retries += 1
                    continue
                self.timed_out = failure.kind == "timeout"
                if not failure.falls_back:
                    self.stopped = True
                return None
            self.gateway.breakers.success(config.id, seen)
            self.gateway._last_model = model
            notes.append("ok")
            self._record(config, "ok", started, started_at, message=message, reservation=reservation)
            return message

    def _retry_wait(self, failure: Failure, retries: int, config: LLMConfig, later: int, share_end: float,
                    notes: list[str]) -> float | None:
        """Seconds to wait before retrying the same configuration, or None to stop trying it."""
        if not failure.retryable or retries >= config.max_retries:
            return None
        if failure.kind == "timeout" and later > 0:  # a fallback can take over: do not wait twice
            return None
        if failure.retry_after is not None:
            cap = float(self.settings.llm_retry_after_max)
            if failure.retry_after > cap:
                notes.append(f"asked to retry after {failure.retry_after:.0f} s, more than MT_LLM_RETRY_AFTER_MAX"
                             f" ({cap:g} s)")
                return None
            wait = failure.retry_after + self.clock.random.uniform(0, min(0.1 * failure.retry_after, 1.0))
        else:
            step = min(float(self.settings.llm_backoff) * (2 ** retries), MAX_BACKOFF_SECONDS)
            wait = step / 2 + self.clock.random.uniform(0, step / 2)  # "equal jitter": never near 0, spread out
        if self.clock.monotonic() + wait + MIN_ATTEMPT_SECONDS > share_end:
            if failure.retry_after is not None:
                notes.append(f"asked to retry after {failure.retry_after:.1f} s, past its share of the deadline")
            return None
        return wait

    # -- cache -------------------------------------------------------------------------------

    def _cache_key(self, config: LLMConfig) -> str | None:
        if not config.cache_ttl or not is_deterministic(config.options, self.kwargs):
            return None
        from smolagents.models import get_tool_json_schema

        tools = [get_tool_json_schema(tool) for tool in self.tools] if self.tools else None
        return cache_key(
            tenant=config.tenant, llm_id=config.id, provider=config.provider, model=config.model_name,
            base_url=config.base_url, options=config.options, messages=self.messages, tools=tools,
            stop_sequences=self.stop_sequences, response_format=self.response_format, kwargs=self.kwargs,
        )

    def _store(self, config: LLMConfig, key: str, message: ChatMessage) -> None:
        now = self.clock.wall()
        try:
            reply = encode_reply(message)  # plain JSON values (anything else as its repr)
        except (TypeError, ValueError, AttributeError):  # a reply the cache cannot hold is simply not cached
            logger.debug("reply not cached", exc_info=True)
            return
        self.gateway.storage.put_cached_response(self.gateway.tenant, {
            "cache_key": key, "llm_id": config.id, "response": reply, "created_at": now,
            "expires_at": now + float(config.cache_ttl or 0),
        }, max_entries=int(self.settings.llm_cache_max_entries))

    # -- records and the error -----------------------------------------------------------------

    def _record(self, config: LLMConfig, outcome: str, started: float, started_at: str, *,
                failure: Failure | None = None, message: ChatMessage | None = None, error_type: str | None = None,
                error: str | None = None, reservation: str | None = None) -> None:
        usage = getattr(message, "token_usage", None)
        input_tokens = int(usage.input_tokens) if usage else 0
        output_tokens = int(usage.output_tokens) if usage else 0
        cached_tokens = _cached_tokens(message)
        cost = prices.attempt_cost(provider=config.provider, model=config.model_name, base_url=config.base_url,
                                   prices=config.prices, input_tokens=input_tokens, output_tokens=output_tokens,
                                   cached_tokens=cached_tokens, at=datetime.fromisoformat(started_at))
        row: LLMAttemptRow = {
            "call_index": self.index, "llm_id": config.id, "provider": config.provider, "model": config.model_name,
            "base_url": config.base_url, "outcome": outcome,
            "error_type": failure.error_type if failure else error_type,
            "status_code": failure.status if failure else None,
            "error": self.gateway.redact(failure.message if failure else error) if (failure or error) else None,
            "latency_ms": int((self.clock.monotonic() - started) * 1000),
            "input_tokens": input_tokens, "output_tokens": output_tokens, "cached_tokens": cached_tokens,
            "started_at": started_at, "finished_at": utcnow(), "cost_usd": cost.usd, "priced_by": cost.priced_by,
        }
        self.attempts.append(self.gateway.record(row, reservation))

    def _error(self) -> LLMCallError:
        if self.last is not None:
            config, failure, exc = self.last
            endpoint = f"{config.provider} endpoint {config.base_url or config.model_name}"
            detail = failure.message
            if isinstance(exc, json.JSONDecodeError):
                detail = f"the response is not valid JSON ({detail})"
            verb = "refused" if failure.kind == "blocked" else "failed"
            headline = f"LLM request {verb} ({endpoint}): {failure.error_type}: {detail}"
        elif self.timed_out:
            headline = f"LLM call ran out of time (MT_LLM_TIMEOUT, {float(self.settings.llm_timeout):g} s)"
        else:
            headline = "LLM call not sent: the circuit breaker of every configuration of the chain is open"
        if self.deadline_passed and self.last is not None and self.last[1].kind != "timeout":
            headline += f"; then the call's deadline (MT_LLM_TIMEOUT, {float(self.settings.llm_timeout):g} s) passed"
        tried = [(config, notes) for config, notes in self.notes if notes]
        if len(self.attempts) > 1 or len(tried) > 1 or self.last is None:
            elapsed = self.clock.monotonic() - self.started
            parts = [f"[{n}] {config.describe()}: {', '.join(notes)}" for n, (config, notes) in enumerate(tried, 1)]
            headline += f". Tried {len(tried)} configuration{'s' if len(tried) != 1 else ''} in {elapsed:.1f} s: " \
                        + "; ".join(parts)
        error = LLMCallError(self.gateway.redact(headline), attempts=self.attempts, timed_out=self.timed_out)
        if self.last is not None:
            error.__cause__ = self.last[2]
        return error


def _cached_tokens(message: Any) -> int:
    """Input tokens the provider served from its own prompt cache (OpenAI's ``prompt_tokens_details``)."""
    usage = getattr(getattr(message, "raw", None), "usage", None)
    details = getattr(usage, "prompt_tokens_details", None)
    value = getattr(details, "cached_tokens", None)
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else 0
