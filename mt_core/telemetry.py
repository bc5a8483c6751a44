"""OpenTelemetry traces of runs in the GenAI semantic conventions (``pip install "mt-core[otel]"``).

Each run is a span ``invoke_agent``; under it, each LLM attempt that reached a model (or was
answered from the response cache) is a span ``chat {model}``, and each tool call a span
``execute_tool {name}``, including tools that ran in a sandbox (built from the start and duration
the sandbox reported). Spans carry the ``gen_ai.*`` attributes of the conventions (operation,
provider, model, token usage, tool name, ``error.type``) and mt-core's own: ``mt.tenant``,
``mt.run.id``, ``mt.llm.id``, ``mt.llm.outcome``, ``mt.cost_usd``, ``mt.tool.id``, ``mt.tool.version``
and ``mt.run.status``. Prompts, replies, tool arguments and keys are never recorded.

Spans go to the application's tracer provider: the one given to ``MTCore(tracer_provider=...)``,
else the one ``opentelemetry.trace.get_tracer_provider()`` returns when a run starts (the global
provider the application set, or OpenTelemetry's no-op one). mt-core never sets a global
provider. Without ``opentelemetry-api`` installed nothing is imported and nothing is recorded; a
failure to record a span is logged and never fails a run.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

TRACER_NAME = "mt_core"
# mt-core's provider plugins -> gen_ai.provider.name of the semantic conventions (others as named)
PROVIDER_NAMES = {"openai": "openai", "azure_openai": "azure.ai.openai", "huggingface": "huggingface"}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _ns(moment: str | datetime) -> int:
    """Nanoseconds since the epoch of an ISO 8601 time (as stored) or a datetime."""
    when = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    delta = when.astimezone(timezone.utc) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def provider_name(provider: str) -> str:
    """``gen_ai.provider.name`` of an mt-core provider plugin."""
    return PROVIDER_NAMES.get(provider, provider)


class NoTrace:
    """What a run records when OpenTelemetry is not installed: nothing."""

    def attempt(self, row: dict[str, Any]) -> None:
        """Record one LLM attempt (nothing)."""

    def tool_call(self, row: dict[str, Any]) -> None:
        """Record one tool call (nothing)."""

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Make the run's span current (there is none)."""
        yield

    def end(self, *, status: str, error: str | None = None, usage: dict[str, int] | None = None,
            cost_usd: float | None = None) -> None:
        """End the run's span (there is none)."""


class RunTrace(NoTrace):
    """The spans of one run: its ``invoke_agent`` span, and children added as the run goes."""

    def __init__(self, trace_api: Any, tracer: Any, span: Any, base: dict[str, Any]) -> None:
        self._trace = trace_api
        self._tracer = tracer
        self._span = span
        self._context = trace_api.set_span_in_context(span)
        self._base = base

    def _child(self, name: str, kind: Any, start: int, end: int, attributes: dict[str, Any],
               error_type: str | None, description: str | None = None) -> None:
        try:
            span = self._tracer.start_span(name, context=self._context, kind=kind, start_time=start,
                                           attributes={k: v for k, v in {**self._base, **attributes}.items()
                                                       if v is not None})
            if error_type:
                span.set_attribute("error.type", error_type)
                span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, description))
            span.end(end_time=max(end, start))
        except Exception:  # noqa: BLE001 - tracing never fails a run
            logger.debug("could not record span %s", name, exc_info=True)

    def attempt(self, row: dict[str, Any]) -> None:
        """A ``chat {model}`` span for one recorded LLM attempt (none for a breaker's skip: nothing
        was asked)."""
        if row.get("outcome") == "skipped":
            return
        where = urlsplit(row.get("base_url") or "")
        self._child(f"chat {row['model']}", self._trace.SpanKind.CLIENT, _ns(row["started_at"]),
                    _ns(row["finished_at"]), {
                        "gen_ai.operation.name": "chat", "gen_ai.provider.name": provider_name(row["provider"]),
                        "gen_ai.request.model": row["model"], "gen_ai.usage.input_tokens": row.get("input_tokens"),
                        "gen_ai.usage.output_tokens": row.get("output_tokens"),
                        "gen_ai.usage.cache_read.input_tokens": row.get("cached_tokens") or None,
                        "server.address": where.hostname, "server.port": where.port,
                        "mt.llm.id": row["llm_id"], "mt.llm.outcome": row["outcome"],
                        "mt.cost_usd": row.get("cost_usd"),
                    }, row.get("error_type") if row["outcome"] not in ("ok", "cache_hit") else None,
                    row.get("error"))

    def tool_call(self, row: dict[str, Any]) -> None:
        """An ``execute_tool {name}`` span for one tool call, at the time the sandbox reported. A
        failed call's span has the exception's type, not its message (which may hold the arguments)."""
        start = _ns(row["started_at"])
        error_type = (row.get("error") or "").split(":", 1)[0] or "error"
        self._child(f"execute_tool {row['name']}", self._trace.SpanKind.INTERNAL, start,
                    start + int(float(row["duration_ms"]) * 1_000_000), {
                        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": row["name"],
                        "gen_ai.tool.type": "function", "mt.tool.id": row["tool_id"],
                        "mt.tool.version": row.get("tool_version"),
                    }, error_type if row["outcome"] == "error" else None)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Make the run's span current while the agent runs (so that the application's own
        instrumentation, e.g. of HTTP clients, nests under it)."""
        try:
            scope = self._trace.use_span(self._span, end_on_exit=False)
            scope.__enter__()
        except Exception:  # noqa: BLE001
            logger.debug("could not make the run's span current", exc_info=True)
            yield
            return
        try:
            yield
        finally:
            scope.__exit__(None, None, None)

    def end(self, *, status: str, error: str | None = None, usage: dict[str, int] | None = None,
            cost_usd: float | None = None) -> None:
        """End the run's span with its outcome."""
        try:
            span = self._span
            span.set_attribute("mt.run.status", status)
            if usage:
                span.set_attribute("gen_ai.usage.input_tokens", int(usage["input_tokens"]))
                span.set_attribute("gen_ai.usage.output_tokens", int(usage["output_tokens"]))
            if cost_usd is not None:
                span.set_attribute("mt.cost_usd", float(cost_usd))
            if status not in ("succeeded", "max_steps"):
                span.set_attribute("error.type", status)
                span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, error))
            span.end()
        except Exception:  # noqa: BLE001
            logger.debug("could not end the run's span", exc_info=True)


def start_run(tracer_provider: Any, *, tenant: str, run_id: str, agent_type: str, provider: str,
              model: str) -> NoTrace:
    """Start a run's ``invoke_agent`` span on ``tracer_provider`` (``None``: the provider
    OpenTelemetry returns now), as a child of the current span; :class:`NoTrace` without
    OpenTelemetry."""
    try:
        from opentelemetry import trace
    except ImportError:
        return NoTrace()
    try:
        from . import __version__

        provider_ = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        tracer = provider_.get_tracer(TRACER_NAME, __version__)
        base = {"mt.tenant": tenant, "mt.run.id": run_id}
        span = tracer.start_span("invoke_agent", kind=trace.SpanKind.INTERNAL, attributes={
            **base, "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": f"{agent_type} agent",
            "gen_ai.provider.name": provider_name(provider), "gen_ai.request.model": model,
        })
        return RunTrace(trace, tracer, span, base)
    except Exception:  # noqa: BLE001 - tracing never stops a run
        logger.debug("could not start the run's span", exc_info=True)
        return NoTrace()
