"""Running a query: assemble a fresh smolagents agent from the hooks, run it, record the run."""

from __future__ import annotations

import copy
import functools
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from .errors import LLMConfigError, RunError, ValidationError
from .executors import LOCAL, ExecutorAbort, ExecutorContext, choose_executor, local_fallback
from .ids import new_id
from .limits import exceeded
from .storage import utcnow
from .validation import check_text

if TYPE_CHECKING:
    from .core import Tenant

logger = logging.getLogger(__name__)

AGENT_TYPES = ("code", "tool_calling")
MAX_QUERY_LENGTH = 100_000
MAX_STORED_OUTPUT = 65_536
DEFAULT_MAX_STEPS = 20
DEFAULT_STEP_TIMEOUT = 30.0
BASE_AUTHORIZED_IMPORTS = ("math", "statistics", "datetime", "json", "re", "random", "itertools", "collections")


@dataclass
class QueryResult:
    """The full result of one ``run_query``. ``str(result)`` is the final answer."""

    run_id: str
    output: Any
    status: str
    usage: dict[str, int] | None
    steps: list[dict[str, Any]] = field(repr=False)
    duration_ms: int
    executor: str

    def __str__(self) -> str:
        return str(self.output)


def run_query(
    handle: "Tenant",
    tool_ids: list[str],
    llm_id: str,
    query: str,
    *,
    use_docker: bool,
    agent_type: str,
    max_steps: int,
    verbosity: int,
    step_timeout: float,
) -> QueryResult:
    """Run ``query`` for the tenant of ``handle``; see :meth:`mt_core.Tenant.run_query`."""
    core, tenant = handle.core, handle.name
    check_text("query", query, max_length=MAX_QUERY_LENGTH)
    limits = handle.limits()
    if len(query) > limits.max_query_length:
        raise exceeded("max_query_length", len(query), limits.max_query_length, "the query's length")
    if agent_type not in AGENT_TYPES:
        raise ValidationError("agent_type", f"{agent_type!r} is not one of {', '.join(AGENT_TYPES)}")
    if isinstance(tool_ids, str) or not isinstance(tool_ids, (list, tuple)):
        raise ValidationError("tool_ids", "must be a list of tool ids")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or not 1 <= max_steps <= 100:
        raise ValidationError("max_steps", "must be an integer from 1 to 100")
    if max_steps > limits.max_steps:
        raise exceeded("max_steps", max_steps, limits.max_steps, "the run's max_steps")
    tool_records = handle.resolve_tools(list(tool_ids))
    llm_row = core.storage.get("llms", tenant, llm_id)
    provider = core.plugins.providers.get(llm_row["provider"])
    if provider is None:
        raise LLMConfigError("provider", f"{llm_row['provider']!r} is not installed (see `mt plugins`)")
    if agent_type == "code":
        executor = choose_executor(core.plugins, use_docker, core.settings)
    else:
        executor = core.plugins.executors[LOCAL]
        if use_docker:
            local_fallback("agent_type='tool_calling' calls its tools in this process: the Docker sandbox runs"
                           " the code of agent_type='code' agents only", core.settings)

    run_id = new_id("run")
    core.storage.insert(
        "runs",
        tenant,
        {
            "id": run_id, "llm_id": llm_id, "tool_ids": list(tool_ids), "query": query,
            "agent_type": agent_type, "executor": executor.name, "status": "running", "started_at": utcnow(),
        },
        check=_run_quota(tenant, limits),
    )
    started = time.perf_counter()
    config = agent = model = None
    try:
        config = handle.llm_config(llm_id)
        model = provider.factory(config)
        tools = [record["build"]() for record in tool_records]
        context = ExecutorContext(
            tenant=tenant, run_id=run_id, tools=[dict(r["record"]) for r in tool_records],
            authorized_imports=list(BASE_AUTHORIZED_IMPORTS), timeout_seconds=step_timeout, settings=core.settings,
            options=handle.executor_options(),
        )
        agent = _assemble(agent_type, tools, model, executor, context, max_steps, verbosity, config.api_key)
        core.plugins.notify("mt_agent_assembled", agent=agent, tenant=tenant, run_id=run_id)
        outcome = agent.run(query, return_full_result=True)
    except (Exception, ExecutorAbort) as exc:  # every failure becomes a recorded, readable run error
        message = _redact(describe_failure(exc, config), getattr(config, "api_key", None))
        status = "timeout" if _is_timeout(exc) else "failed"
        _finish(handle, run_id, started, status=status, error=message)
        logger.info("run %s for tenant %s %s", run_id, tenant, status)
        raise RunError(message, run_id=run_id, status=status) from None
    except BaseException as exc:  # KeyboardInterrupt, SystemExit: record the run, then let it go on
        _finish(handle, run_id, started, status="failed", error=f"interrupted ({type(exc).__name__})")
        raise
    finally:
        _close(agent, model)
    usage = outcome.token_usage.dict() if outcome.token_usage is not None else None
    if usage:
        usage = {"input_tokens": usage["input_tokens"], "output_tokens": usage["output_tokens"]}
    status = "succeeded" if outcome.state == "success" else "max_steps"
    duration_ms = _finish(
        handle, run_id, started, status=status, output=_redact(str(outcome.output), config.api_key),
        usage=usage, steps=len(outcome.steps or []),
    )
    return QueryResult(
        run_id=run_id, output=outcome.output, status=status, usage=usage, steps=list(outcome.steps or []),
        duration_ms=duration_ms, executor=executor.name,
    )


def _run_quota(tenant: str, limits: Any) -> Callable[[Any], None]:
    """A check, inside the run record's insert transaction, of the concurrency and rate limits.

    A run left ``running`` by a crashed process stops counting as concurrent after an hour.
    """

    def check(conn: Any) -> None:
        now = datetime.now(timezone.utc)
        for limit, allowed, condition, since, what in (
            ("max_concurrent_runs", limits.max_concurrent_runs, "status = 'running' AND ", timedelta(hours=1),
             "the runs in progress"),
            ("runs_per_minute", limits.runs_per_minute, "", timedelta(minutes=1), "the runs started in the last minute"),
        ):
            count = conn.execute(
                f"SELECT COUNT(*) FROM runs WHERE tenant_id = ? AND {condition}started_at > ?",
                (tenant, (now - since).isoformat(timespec="microseconds")),
            ).fetchone()[0]
            if count + 1 > allowed:
                raise exceeded(limit, count + 1, allowed, what)

    return check


def _assemble(
    agent_type: str, tools: list[Any], model: Any, executor: Any, context: ExecutorContext,
    max_steps: int, verbosity: int, secret: str | None,
) -> Any:
    from rich.console import Console
    from smolagents import CodeAgent, ToolCallingAgent
    from smolagents.monitoring import AgentLogger, LogLevel

    level = LogLevel(min(verbosity, 2)) if verbosity > 0 else LogLevel.OFF
    # The agent prints what the LLM endpoint says, and an endpoint may echo the key back.
    logger = AgentLogger(level, console=Console(file=_RedactingWriter(sys.stdout, secret), highlight=False))
    if agent_type == "tool_calling":
        return ToolCallingAgent(
            tools=tools, model=model, max_steps=max_steps, verbosity_level=level, logger=logger,
            prompt_templates=_prompt_templates("toolcalling_agent.yaml"),
        )
    return CodeAgent(
        tools=tools, model=model, max_steps=max_steps, verbosity_level=level, logger=logger,
        executor=executor.factory(context), additional_authorized_imports=context.authorized_imports,
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
    """A text stream that replaces a secret before passing text on."""

    def __init__(self, stream: Any, secret: str | None) -> None:
        self.stream, self.secret = stream, secret

    def write(self, text: str) -> int:
        return self.stream.write(_redact(text, self.secret))

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())


def _finish(
    handle: "Tenant", run_id: str, started: float, *, status: str, output: str | None = None,
    error: str | None = None, usage: dict[str, int] | None = None, steps: int | None = None,
) -> int:
    duration_ms = int((time.perf_counter() - started) * 1000)
    fields: dict[str, Any] = {
        "status": status, "output": None if output is None else output[:MAX_STORED_OUTPUT],
        "error": error, "duration_ms": duration_ms, "finished_at": utcnow(), "steps": steps,
        "input_tokens": usage["input_tokens"] if usage else None,
        "output_tokens": usage["output_tokens"] if usage else None,
    }
    core = handle.core
    core.storage.update("runs", handle.name, run_id, fields)
    core.plugins.notify("mt_run_finished", run=core.storage.get("runs", handle.name, run_id), tenant=handle.name)
    return duration_ms


def _close(agent: Any, model: Any) -> None:
    """Release the run's executor and HTTP client; failures here never mask the run's result."""
    for closer in (getattr(agent, "cleanup", None), getattr(getattr(model, "client", None), "close", None)):
        if closer is not None:
            try:
                closer()
            except Exception:  # noqa: BLE001
                logger.debug("cleanup failed", exc_info=True)


def describe_failure(exc: BaseException, config: Any) -> str:
    """A one-line account of why a run failed, naming the LLM endpoint when the LLM call failed."""
    cause = exc.__cause__
    if type(exc).__name__ == "AgentGenerationError" and cause is not None:
        endpoint = f" ({config.provider} endpoint {config.base_url})" if config is not None else ""
        detail = str(cause).strip() or type(cause).__name__
        if type(cause).__name__ == "JSONDecodeError":
            detail = f"the response is not valid JSON ({detail})"
        return f"LLM request failed{endpoint}: {type(cause).__name__}: {detail}"
    return f"{type(exc).__name__}: {exc}"


def _redact(text: str, secret: str | None) -> str:
    if secret and len(secret) >= 4:
        text = text.replace(secret, "[REDACTED]")
    return text


def _is_timeout(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TimeoutError) or "Timeout" in type(current).__name__:
            return True
        current = current.__cause__ or current.__context__
    return False
