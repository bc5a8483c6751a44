"""Running a query: a resolved :class:`RunRequest` in, a recorded run and a :class:`QueryResult` out.

The tenant facade resolves everything a run needs (tools, LLM, executor, limits) into a frozen
request; this module builds a fresh smolagents agent from it, runs it and records the run. It
never reaches back into the facade, and it never builds a tenant's tool in this process: the
agent holds :class:`~mt_core.sandbox.remote.RemoteTool` stand-ins, and the executor's sandbox
builds and runs the real tools.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from .errors import (
    BlockedAddressError, ExecutorAbort, LLMCallError, QuotaExceededError, RunError, StepTimeout, ValidationError,
)
from .executors import ExecutorContext, ToolSpec
from . import owners, telemetry
from .ids import new_id
from .limits import Limits, exceeded
from .llms import LLMChain, LLMConfig
from .plugins import Executor
from .secrets import redact
from .storage import RunQuota, RunRow, Storage, utcnow
from .usage import ToolCallLog
from .validation import check_text

logger = logging.getLogger(__name__)

AGENT_TYPES = ("code", "tool_calling")
MAX_QUERY_LENGTH = 100_000
MAX_STORED_CHARS = 65_536  # output and error text kept per run record; more is cut with a marker
DEFAULT_MAX_STEPS = 20
DEFAULT_STEP_TIMEOUT = 30.0
MAX_PRINT_CHARS = 50_000  # what a code step prints, as the model sees it
DEADLINE_SLACK_SECONDS = 300.0  # a sandbox's start, tool builds, recording: on top of the steps' bounds
BASE_AUTHORIZED_IMPORTS = ("math", "statistics", "datetime", "json", "re", "random", "itertools", "collections")


@dataclass(frozen=True)
class RunRequest:
    """Everything one run needs, resolved by the tenant facade before anything runs."""

    tenant: str
    query: str
    agent_type: str
    max_steps: int
    verbosity: int
    step_timeout: float
    tools: tuple[ToolSpec, ...]
    tool_ids: tuple[str, ...]
    chain: LLMChain
    executor: Executor
    executor_options: dict[str, Any]
    quota: RunQuota
    settings: Any
    sandbox_modules: tuple[str, ...] = ()
    sandbox_env: dict[str, str] = field(default_factory=dict, repr=False)
    tracer_provider: Any = field(default=None, repr=False)

    @property
    def llm(self) -> LLMConfig:
        """The LLM configuration the run names (the first of its chain)."""
        return self.chain.primary


@dataclass(frozen=True, repr=False)
class QueryResult:
    """The result of one ``run_query``; the same fields as its run record (``get_run``).

    ``str(result)`` is the final answer. ``status`` is ``"succeeded"``, or ``"max_steps"`` when
    the agent used every step without calling ``final_answer``: then ``output`` is the answer
    smolagents asked the model for at the end, ``completed`` is False and ``repr`` says so.
    ``llm_calls`` lists every attempt of every LLM call with its ``cost_usd``, as ``get_run``
    does; ``cost_usd`` is the run's total (``None`` when ``unpriced_calls`` attempts billed tokens
    nobody has a price for). ``steps`` counts the agent's steps; ``trace`` holds the task and each
    step (model output, code, observations) as smolagents records them, without the system
    prompt. ``tool_calls`` lists each call of a tool, wherever it ran, as stored: ``seq``,
    ``tool_id``, ``tool_version``, ``name``, ``outcome`` (``ok`` or ``error``), ``error``,
    ``duration_ms`` and ``started_at``.
    """

    run_id: str
    output: Any
    status: str
    usage: dict[str, int] | None
    steps: int
    duration_ms: int
    executor: str
    tool_versions: dict[str, Any]
    trace: list[dict[str, Any]] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    llm_calls: list[dict[str, Any]] = field(default_factory=list)
    cost_usd: float | None = None
    unpriced_calls: int = 0

    @property
    def completed(self) -> bool:
        """Whether the agent finished with ``final_answer`` (not stopped at ``max_steps``)."""
        return self.status == "succeeded"

    def __str__(self) -> str:
        return str(self.output)

    def __repr__(self) -> str:
        note = " (stopped at max_steps without a final answer)" if self.status == "max_steps" else ""
        return (f"QueryResult(status={self.status!r}{note}, output={_short(self.output)!r}, run_id={self.run_id!r},"
                f" steps={self.steps}, usage={self.usage}, cost_usd={self.cost_usd}, duration_ms={self.duration_ms},"
                f" executor={self.executor!r})")


def check_run_arguments(query: object, agent_type: object, tool_ids: object, max_steps: object, step_timeout: object,
                        limits: Limits, settings: Any) -> None:
    """The checks of a run's own arguments, against the tenant's limits and the operator's bounds."""
    check_text("query", query, max_length=MAX_QUERY_LENGTH)
    if len(query) > limits.max_query_length:  # type: ignore[arg-type]
        raise exceeded("max_query_length", len(query), limits.max_query_length, "the query's length")  # type: ignore[arg-type]
    if agent_type not in AGENT_TYPES:
        raise ValidationError("agent_type", f"{agent_type!r} is not one of {', '.join(AGENT_TYPES)}")
    if isinstance(tool_ids, str) or not isinstance(tool_ids, (list, tuple)):
        raise ValidationError("tool_ids", "must be a list of tool ids")
    ceiling = int(settings.max_steps)
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or not 1 <= max_steps <= ceiling:
        raise ValidationError("max_steps", f"must be an integer from 1 to {ceiling} (the operator's MT_MAX_STEPS)")
    if max_steps > limits.max_steps:
        raise exceeded("max_steps", max_steps, limits.max_steps, "the run's max_steps")
    longest = float(settings.max_step_timeout)
    if isinstance(step_timeout, bool) or not isinstance(step_timeout, (int, float)) or not 0 < step_timeout <= longest:
        raise ValidationError(
            "step_timeout", f"must be a number of seconds above 0 and at most {longest:g} (the operator's"
            " MT_MAX_STEP_TIMEOUT)"
        )


def run_deadline(request: RunRequest, started: datetime) -> datetime:
    """When a run must have finished, whatever happens: every step (and the final-answer call
    at ``max_steps``) at its step timeout plus every LLM call at its deadline (``MT_LLM_TIMEOUT``,
    across retries and fallbacks), plus slack. After it, any process may mark the run failed
    (:func:`mt_core.owners.stale_reason`)."""
    llm_seconds = float(getattr(request.settings, "llm_timeout", 60.0))
    seconds = (request.max_steps + 1) * (request.step_timeout + llm_seconds) + DEADLINE_SLACK_SECONDS
    return started + timedelta(seconds=seconds)


def execute(request: RunRequest, storage: Storage, notify: Callable[..., None]) -> QueryResult:
    """Run ``request`` with a fresh agent and record it; :class:`RunError` when the run fails
    (status ``budget_exceeded`` when a budget stopped it before an LLM request)."""
    run_id = new_id("run")
    versions = {spec.id: spec.version for spec in request.tools}
    now = datetime.now(timezone.utc)
    owner = owners.current()
    try:
        storage.start_run(request.tenant, {
            "id": run_id, "llm_id": request.llm.id, "tool_ids": list(request.tool_ids), "tool_versions": versions,
            "query": request.query, "agent_type": request.agent_type, "executor": request.executor.name,
            "status": "running", "started_at": now.isoformat(timespec="microseconds"),
            "owner_host": owner.host, "owner_boot_id": owner.boot_id, "owner_pid": owner.pid,
            "owner_start_time": owner.start_time,
            "deadline": run_deadline(request, now).isoformat(timespec="microseconds"),
        }, quota=request.quota)
    except QuotaExceededError as exc:
        logger.info("run refused for tenant %s: %s", request.tenant, exc)
        raise
    started = time.perf_counter()
    secrets = request.chain.secrets()
    spans = telemetry.start_run(request.tracer_provider, tenant=request.tenant, run_id=run_id,
                                agent_type=request.agent_type, provider=request.llm.provider,
                                model=request.llm.model_name)
    agent = model = executor = None
    try:
        context = ExecutorContext(
            tenant=request.tenant, run_id=run_id, tools=request.tools, authorized_imports=BASE_AUTHORIZED_IMPORTS,
            timeout_seconds=request.step_timeout, settings=request.settings, options=dict(request.executor_options),
            env=dict(request.sandbox_env), max_print_chars=MAX_PRINT_CHARS, sandbox_modules=request.sandbox_modules,
            on_tool_call=ToolCallLog(storage, request.tenant, run_id, request.tools, spans.tool_call),
        )
        executor = request.executor.factory(context)  # first, so that a sandbox boots while smolagents loads
        from .gateway import GatewayModel

        model = GatewayModel(request.chain, storage=storage, tenant=request.tenant, run_id=run_id,
                             settings=request.settings, budgets=request.quota.get("budgets"),
                             on_attempt=spans.attempt)
        agent = _assemble(request, executor, model)
        notify("mt_agent_assembled", agent=agent, tenant=request.tenant, run_id=run_id)
        with spans.active():
            outcome = agent.run(request.query, return_full_result=True)
        if model.budget_stop is not None:  # refused in the final-answer call at max_steps, which smolagents swallows
            raise model.budget_stop
    except (Exception, ExecutorAbort) as exc:  # every failure becomes a recorded, readable run error
        stop = model.budget_stop if model is not None else None
        message = str(stop) if stop is not None else redact(describe_failure(exc, request.llm), secrets)
        status = "budget_exceeded" if stop is not None else "timeout" if is_timeout(exc) else "failed"
        _finish(request, storage, notify, run_id, started, spans, status=status, error=message)
        logger.info("run %s for tenant %s %s", run_id, request.tenant, status)
        raise RunError(_cut(message), run_id=run_id, status=status) from None
    except BaseException as exc:  # KeyboardInterrupt, SystemExit: record the run, then let it go on
        _finish(request, storage, notify, run_id, started, spans, status="failed",
                error=f"interrupted ({type(exc).__name__})")
        raise
    finally:
        _close(agent, executor, model)
    usage = outcome.token_usage.dict() if outcome.token_usage is not None else None
    if usage:
        usage = {"input_tokens": usage["input_tokens"], "output_tokens": usage["output_tokens"]}
    status = "succeeded" if outcome.state == "success" else "max_steps"
    trace = [dict(step) for step in (outcome.steps or []) if "system_prompt" not in step]
    steps = sum(1 for step in trace if "step_number" in step)
    record = _finish(
        request, storage, notify, run_id, started, spans, status=status, output=redact(str(outcome.output), secrets),
        usage=usage, steps=steps,
    )
    return QueryResult(
        run_id=run_id, output=outcome.output, status=status, usage=usage, steps=steps,
        duration_ms=record["duration_ms"], executor=request.executor.name, tool_versions=versions, trace=trace,
        tool_calls=record["tool_calls"], llm_calls=record["llm_calls"], cost_usd=record["cost_usd"],
        unpriced_calls=record["unpriced_calls"],
    )


def _assemble(request: RunRequest, executor: Any, model: Any) -> Any:
    from rich.console import Console
    from smolagents import CodeAgent, ToolCallingAgent
    from smolagents.monitoring import AgentLogger, LogLevel

    from .sandbox.remote import RemoteTool

    tools = [RemoteTool(spec, executor) for spec in request.tools]
    level = LogLevel(min(request.verbosity, 2)) if request.verbosity > 0 else LogLevel.OFF
    # The agent prints what the LLM endpoint says, and an endpoint may echo the key back.
    logger_ = AgentLogger(level, console=Console(file=_RedactingWriter(sys.stdout, request.chain.secrets()),
                                                 highlight=False))
    if request.agent_type == "tool_calling":
        if not hasattr(executor, "call_tool"):
            raise ValidationError("agent_type", f"executor {request.executor.name!r} cannot run tool calls")
        return ToolCallingAgent(
            tools=tools, model=model, max_steps=request.max_steps, verbosity_level=level, logger=logger_,
            prompt_templates=_prompt_templates("toolcalling_agent.yaml"),
        )
    return CodeAgent(
        tools=tools, model=model, max_steps=request.max_steps, verbosity_level=level, logger=logger_,
        executor=executor, additional_authorized_imports=list(BASE_AUTHORIZED_IMPORTS),
        prompt_templates=_prompt_templates("code_agent.yaml"),
    )


@functools.lru_cache(maxsize=None)
def _parsed_prompt_templates(name: str) -> Any:
    import importlib.resources

    import yaml

    return yaml.safe_load(importlib.resources.files("smolagents.prompts").joinpath(name).read_text())


def _prompt_templates(name: str) -> Any:
    """smolagents' own prompt templates, parsed once per process (the agent re-reads and parses
    its YAML file on every construction otherwise); each agent gets its own copy."""
    return copy.deepcopy(_parsed_prompt_templates(name))


class _RedactingWriter:
    """A text stream that replaces secrets before passing text on."""

    def __init__(self, stream: Any, secrets: list[str]) -> None:
        self.stream, self.secrets = stream, secrets

    def write(self, text: str) -> int:
        return self.stream.write(redact(text, self.secrets))

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())


def _finish(
    request: RunRequest, storage: Storage, notify: Callable[..., None], run_id: str, started: float,
    spans: telemetry.NoTrace, *, status: str, output: str | None = None, error: str | None = None,
    usage: dict[str, int] | None = None, steps: int | None = None,
) -> dict[str, Any]:
    """Store a run's outcome, end its span, tell the plugins; the run record."""
    duration_ms = int((time.perf_counter() - started) * 1000)
    row = storage.finish_run(request.tenant, run_id, {
        "status": status, "output": None if output is None else _cut(output),
        "error": None if error is None else _cut(error), "duration_ms": duration_ms, "finished_at": utcnow(),
        "steps": steps, "input_tokens": usage["input_tokens"] if usage else None,
        "output_tokens": usage["output_tokens"] if usage else None,
    })
    record = run_record(storage, request.tenant, run_id, row)
    spans.end(status=status, error=error, usage=usage, cost_usd=record["cost_usd"])
    notify("mt_run_finished", run=copy.deepcopy(record), tenant=request.tenant)
    return record


def run_record(storage: Storage, tenant: str, run_id: str, row: RunRow | None = None) -> dict[str, Any]:
    """A run record with its cost, its ``llm_calls`` (every attempt of every LLM call, in order)
    and its ``tool_calls``; ``row`` is the run's row when the caller has just read it."""
    record: dict[str, Any] = dict(row if row is not None else storage.get_run(tenant, run_id))
    record.pop("tenant_id", None)
    record["llm_calls"] = [dict(row) for row in storage.list_llm_attempts(tenant, run_id)]
    record["tool_calls"] = [dict(row) for row in storage.list_tool_calls(tenant, run_id)]
    return record


def _close(agent: Any, executor: Any, model: Any) -> None:
    """Release the run's sandbox and HTTP clients; failures here never mask the run's result."""
    closers = [getattr(agent, "cleanup", None), getattr(executor, "cleanup", None), getattr(model, "close", None)]
    for closer in closers:
        if closer is not None:
            try:
                closer()
            except Exception:  # noqa: BLE001
                logger.debug("cleanup failed", exc_info=True)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not s for s in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _blocked(exc: BaseException) -> BlockedAddressError | None:
    """The SSRF guard's refusal behind ``exc``, if there is one."""
    return next((item for item in _chain(exc) if isinstance(item, BlockedAddressError)), None)


def describe_failure(exc: BaseException, config: LLMConfig | None) -> str:
    """A one-line account of why a run failed, naming the LLM endpoint when the LLM call failed."""
    from smolagents.utils import AgentGenerationError

    cause = exc.__cause__
    call_error = next((item for item in _chain(exc) if isinstance(item, LLMCallError)), None)
    if call_error is not None:  # the gateway's account: every configuration tried, and why each failed
        return str(call_error)
    endpoint = f" ({config.provider} endpoint {config.base_url})" if config is not None else ""
    blocked = _blocked(exc)
    if blocked is not None:  # however a provider's SDK wrapped it, the guard's own words
        return f"LLM request refused{endpoint}: {blocked}"
    if isinstance(exc, AgentGenerationError) and cause is not None:
        detail = str(cause).strip() or type(cause).__name__
        if isinstance(cause, json.JSONDecodeError):
            detail = f"the response is not valid JSON ({detail})"
        return f"LLM request failed{endpoint}: {type(cause).__name__}: {detail}"
    return f"{type(exc).__name__}: {exc}"


def is_timeout(exc: BaseException) -> bool:
    """Whether a run failed because something took too long (a step, or the LLM call)."""
    try:
        from openai import APITimeoutError
    except ImportError:  # pragma: no cover - openai is a dependency
        APITimeoutError = TimeoutError  # type: ignore[misc,assignment]
    chain = _chain(exc)
    if any(isinstance(item, LLMCallError) for item in chain):
        return any(isinstance(item, LLMCallError) and item.timed_out for item in chain)
    return any(isinstance(item, (StepTimeout, TimeoutError, APITimeoutError)) for item in chain)


def _cut(text: str, limit: int = MAX_STORED_CHARS) -> str:
    """``text`` cut to ``limit`` characters, with a marker saying how much was cut."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... cut: {len(text) - limit} more characters; mt-core stores at most {limit}]"


def _short(value: Any, limit: int = 200) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
