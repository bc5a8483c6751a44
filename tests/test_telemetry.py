"""OpenTelemetry spans of runs (the ``otel`` extra), checked with OpenTelemetry's in-memory exporter."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from conftest import API_KEY, CALCULATOR, JAIL_REASON, make_settings
from mt_core import MTCore, QuotaExceededError, RunError

CALL_TOOL = 'Thought: use the calculator.\n<code>\nresult = calculator(expression="25 * 16")\nprint(result)\n</code>'
SCRIPT = [
    {"content": CALL_TOOL, "usage": {"prompt_tokens": 1000, "completion_tokens": 200, "cached_tokens": 400}},
    {"content": "<code>\nfinal_answer(result)\n</code>", "usage": {"prompt_tokens": 1500, "completion_tokens": 50}},
]


@pytest.fixture
def traced(tmp_path):
    """An installation whose runs' spans go to an in-memory exporter, and that exporter."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    core = MTCore(settings=make_settings(tmp_path / "home"), tracer_provider=provider)
    yield core, exporter
    core.close()


def run(tenant, tool_ids, llm_id, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return tenant.run_query(tool_ids, llm_id, "What is 25 multiplied by 16?", use_docker=False, **options)
        except RunError as error:
            return error


def test_a_run_is_an_invoke_agent_span_with_chat_and_execute_tool_children(traced, llm_server):
    core, exporter = traced
    server = llm_server(SCRIPT)
    acme = core.tenant("acme")
    tool_id = acme.add_tool("calculator", "Evaluates arithmetic.", CALCULATOR)
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="gpt-4o-mini")

    result = run(acme, [tool_id], llm_id)

    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["chat gpt-4o-mini", "execute_tool calculator", "chat gpt-4o-mini",
                                       "invoke_agent"]  # in the order they ended
    first, tool, second, agent = spans
    assert agent.parent is None and {s.parent.span_id for s in (first, tool, second)} == {agent.context.span_id}
    assert len({s.context.trace_id for s in spans}) == 1
    assert agent.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert agent.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert agent.attributes["gen_ai.provider.name"] == "openai"
    assert agent.attributes["gen_ai.usage.input_tokens"] == 2500 and agent.attributes["gen_ai.usage.output_tokens"] == 250
    assert agent.attributes["mt.run.status"] == "succeeded"
    assert agent.attributes["mt.cost_usd"] == pytest.approx(result.cost_usd)
    for span in spans:
        assert span.attributes["mt.tenant"] == "acme" and span.attributes["mt.run.id"] == result.run_id
    assert first.kind == trace.SpanKind.CLIENT
    assert dict(first.attributes) == {
        "mt.tenant": "acme", "mt.run.id": result.run_id, "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 1000,
        "gen_ai.usage.output_tokens": 200, "gen_ai.usage.cache_read.input_tokens": 400, "server.address": "127.0.0.1",
        "server.port": server.port, "mt.llm.id": llm_id, "mt.llm.outcome": "ok",
        "mt.cost_usd": pytest.approx(result.llm_calls[0]["cost_usd"]),
    }
    assert second.attributes["gen_ai.usage.input_tokens"] == 1500
    # the tool ran in the sandbox: its span is built from the time the sandbox reported
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool.attributes["gen_ai.tool.name"] == "calculator" and tool.attributes["mt.tool.id"] == tool_id
    assert tool.attributes["mt.tool.version"] == "1"
    assert first.end_time <= tool.start_time <= tool.end_time <= second.start_time
    assert agent.start_time <= first.start_time and second.end_time <= agent.end_time
    assert all(span.status.status_code == StatusCode.UNSET for span in spans)
    assert API_KEY not in json.dumps([dict(span.attributes) for span in spans])


def test_failures_are_error_spans(traced, llm_server):
    core, exporter = traced
    server = llm_server([{"status": 503}])
    acme = core.tenant("acme")
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m", max_retries=0)

    error = run(acme, [], llm_id)

    assert isinstance(error, RunError)
    chat, agent = exporter.get_finished_spans()
    assert chat.status.status_code == StatusCode.ERROR and chat.attributes["error.type"] == "InternalServerError"
    assert chat.attributes["mt.llm.outcome"] == "failed"
    assert agent.status.status_code == StatusCode.ERROR and agent.attributes["error.type"] == "failed"


DIVIDE = '''
def divide(a: float, b: float) -> float:
    """Divides a by b.

    Args:
        a: The dividend.
        b: The divisor.
    """
    return a / b
'''


def test_a_failing_tool_call_is_an_error_span_with_the_exception_type_only(traced, llm_server):
    core, exporter = traced
    server = llm_server(["<code>\ntry:\n    divide(a=12345, b=0)\nexcept Exception:\n    pass\nfinal_answer('no')\n</code>"])
    acme = core.tenant("acme")
    tool_id = acme.add_tool("divide", "Divides.", DIVIDE)
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")

    run(acme, [tool_id], llm_id)

    [tool] = [span for span in exporter.get_finished_spans() if span.name == "execute_tool divide"]
    assert tool.status.status_code == StatusCode.ERROR and tool.attributes["error.type"] == "ZeroDivisionError"
    assert "12345" not in json.dumps(dict(tool.attributes)) + str(tool.status.description)


def test_a_budget_stop_ends_the_run_span_with_its_status(traced, llm_server):
    core, exporter = traced
    server = llm_server([{"content": "<code>print(1)</code>", "usage": {"prompt_tokens": 10, "completion_tokens": 10}}])
    acme = core.tenant("acme")
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m",
                          prices={"input_per_mtok": 1, "output_per_mtok": 1})
    acme.set_limits(tokens_per_day=15)

    error = run(acme, [], llm_id, max_steps=5)

    assert isinstance(error, RunError) and error.status == "budget_exceeded"
    *chats, agent = exporter.get_finished_spans()
    assert [c.name for c in chats] == ["chat m"]
    assert agent.attributes["mt.run.status"] == "budget_exceeded" and agent.attributes["error.type"] == "budget_exceeded"
    exporter.clear()
    with pytest.raises(QuotaExceededError):  # refused before it started: no span
        run(acme, [], llm_id)
    assert exporter.get_finished_spans() == ()


def test_the_global_tracer_provider_is_never_set(traced, llm_server):
    core, _ = traced
    server = llm_server(['<code>final_answer("ok")</code>'])
    acme = core.tenant("acme")
    run(acme, [], acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m"))
    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"


def run_application(tmp_path, prelude: str, body: str) -> dict | list:
    """Run an application script in a new process: ``prelude`` first, then an installation on this
    test's database and a scripted server answering "ok", then ``body``; what it prints as JSON."""
    settings = make_settings(tmp_path / "home")
    script = prelude + textwrap.dedent('''
        import json, sys, warnings
        from mt_core import MTCore, Settings
        from mt_core.testing import ScriptedLLMServer

        warnings.simplefilter("ignore")
        settings = Settings(home=sys.argv[1], master_key=sys.argv[2], database_url=sys.argv[3] or None,
                            load_plugins=(), llm_allowed_networks=("127.0.0.0/8",), allow_in_process=sys.argv[4] == "1")
        with ScriptedLLMServer(['<code>final_answer("ok")</code>']) as llm:
            acme = MTCore(settings=settings).tenant("acme")
            llm_id = acme.add_llm(base_url=llm.base_url, api_key="sk-app-0123456789", model_name="m")
    ''') + textwrap.indent(textwrap.dedent(body), "    ")
    out = subprocess.run([sys.executable, "-c", script, str(settings.home), settings.master_key,
                          settings.database_url or "", "1" if JAIL_REASON else "0"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


GLOBAL_PROVIDER = textwrap.dedent('''
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # the application's global provider
''')


def test_without_a_provider_given_spans_go_to_the_applications_global_one(tmp_path):
    found = run_application(tmp_path, GLOBAL_PROVIDER, '''
        with trace.get_tracer("app").start_as_current_span("handle request"):
            acme.run_query([], llm_id, "Say ok.", use_docker=False, max_steps=2)
        spans = exporter.get_finished_spans()
        print(json.dumps([[s.name, s.parent.span_id if s.parent else None, s.context.span_id] for s in spans]))
    ''')
    spans = {name: (parent, own) for name, parent, own in found}
    assert set(spans) == {"chat m", "invoke_agent", "handle request"}
    assert spans["invoke_agent"][0] == spans["handle request"][1]  # under the application's current span
    assert spans["chat m"][0] == spans["invoke_agent"][1]


NOT_INSTALLED = textwrap.dedent('''
    import importlib.abc, sys

    class NotInstalled(importlib.abc.MetaPathFinder):
        """As if the otel extra were not installed."""
        def find_spec(self, name, path=None, target=None):
            if name == "opentelemetry" or name.startswith("opentelemetry."):
                raise ModuleNotFoundError(f"No module named {name!r}")
            return None

    sys.meta_path.insert(0, NotInstalled())
''')


def test_without_the_extra_nothing_is_imported_and_runs_work(tmp_path):
    found = run_application(tmp_path, NOT_INSTALLED, '''
        result = acme.run_query([], llm_id, "Say ok.", use_docker=False, max_steps=2)
        otel = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
        print(json.dumps({"output": str(result), "otel": otel}))
    ''')
    assert found == {"output": "ok", "otel": []}
