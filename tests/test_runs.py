"""run_query end to end against a real OpenAI-compatible HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import time
import warnings

import pytest

from conftest import API_KEY, CALCULATOR, make_settings, LOCAL_EXECUTOR
from mt_core import MTCore, NotFoundError, RunError, SandboxFallbackWarning, ValidationError
from mt_core.testing import message_text


def run(acme, tool_ids, llm_id, query="What is 25 multiplied by 16?", **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SandboxFallbackWarning)
        return acme.run_query(tool_ids, llm_id, query, **kwargs)


def test_calculator_end_to_end(calculator_setup):
    acme, server, tool_id, llm_id = calculator_setup
    with pytest.warns(SandboxFallbackWarning, match=f"Docker sandbox is unavailable .*running in the {LOCAL_EXECUTOR} executor"):
        result = acme.run_query(tool_ids=[tool_id], llm_id=llm_id, query="What is 25 multiplied by 16?")

    assert str(result) == "400" and result.output == "400"
    assert result.status == "succeeded" and result.executor == LOCAL_EXECUTOR
    assert result.run_id.startswith("run_")
    assert result.usage["input_tokens"] > 0 and result.usage["output_tokens"] > 0
    assert result.steps == 2
    # timed in the sandbox, stored with the tool's id and version
    assert [(c["name"], c["outcome"], c["tool_id"], c["tool_version"]) for c in result.tool_calls] == [
        ("calculator", "ok", tool_id, "1")]
    assert 0 <= result.tool_calls[0]["duration_ms"] < 5000
    assert result.tool_calls == acme.get_run(result.run_id)["tool_calls"]
    assert [step["step_number"] for step in result.trace if "step_number" in step] == [1, 2]
    assert "system_prompt" not in repr(result.trace)

    # what the LLM endpoint received: the model, the decrypted key, the tool in the system prompt
    assert len(server.requests) == 2
    first = server.requests[0]
    assert first["path"] == "/v1/chat/completions"
    assert first["body"]["model"] == "scripted-model"
    assert first["headers"]["authorization"] == f"Bearer {API_KEY}"
    system_prompt = message_text(first["body"]["messages"][0])
    assert "calculator" in system_prompt and "Evaluates arithmetic expressions." in system_prompt
    assert "What is 25 multiplied by 16?" in json.dumps(first["body"]["messages"])
    # the observation of the tool call (400) went back to the LLM in the second request
    assert "400" in json.dumps(server.requests[1]["body"]["messages"][-1])

    record = acme.get_run(result.run_id)
    assert record["status"] == "succeeded" and record["output"] == "400"
    assert record["tool_ids"] == [tool_id] and record["llm_id"] == llm_id
    assert record["input_tokens"] == result.usage["input_tokens"]
    assert record["executor"] == LOCAL_EXECUTOR and record["agent_type"] == "code"
    assert record["duration_ms"] >= 0 and record["finished_at"] >= record["started_at"]
    assert record["error"] is None
    assert [r["id"] for r in acme.get_runs()] == [result.run_id]


def test_use_docker_false_runs_locally_without_warning(calculator_setup):
    acme, _, tool_id, llm_id = calculator_setup
    with warnings.catch_warnings():
        warnings.simplefilter("error", SandboxFallbackWarning)
        result = acme.run_query([tool_id], llm_id, "What is 25 multiplied by 16?", use_docker=False)
    assert str(result) == "400"


def test_tool_calling_agent(core, llm_server):
    acme = core.tenant("acme")
    server = llm_server([
        json.dumps({"name": "calculator", "arguments": {"expression": "25 * 16"}}),
        json.dumps({"name": "final_answer", "arguments": {"answer": "400"}}),
    ])
    tool_id = acme.add_tool("calculator", "Evaluates arithmetic expressions.", CALCULATOR)
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning that tools run in this process: they run in the jail
        result = acme.run_query([tool_id], llm_id, "What is 25 multiplied by 16?", agent_type="tool_calling",
                                use_docker=False)
    assert str(result) == "400" and result.executor == LOCAL_EXECUTOR
    assert acme.get_run(result.run_id)["agent_type"] == "tool_calling"
    # the tool's observation reached the model
    assert "400" in json.dumps(server.requests[1]["body"]["messages"])


def test_a_tool_calling_agent_shows_the_model_the_tools_own_error_type(core, llm_server):
    """As plain smolagents does ("Error executing tool ...: ValueError: ..."), not the sandbox's wrapper."""
    acme = core.tenant("acme")
    server = llm_server([
        json.dumps({"name": "calculator", "arguments": {"expression": "25 * x"}}),
        json.dumps({"name": "final_answer", "arguments": {"answer": "could not compute"}}),
    ])
    tool_id = acme.add_tool("calculator", "Evaluates arithmetic expressions.", CALCULATOR)
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
    result = acme.run_query([tool_id], llm_id, "What is 25 times x?", agent_type="tool_calling", use_docker=False)
    assert str(result) == "could not compute"
    observed = message_text(server.requests[1]["body"]["messages"][-1])
    assert ("Error executing tool 'calculator' with arguments {'expression': '25 * x'}: ValueError: unsupported"
            " expression: '25 * x'") in observed
    assert "SandboxStepError" not in observed


def test_a_tool_error_is_reported_to_the_model_and_the_run_goes_on(core, llm_server):
    acme = core.tenant("acme")
    server = llm_server([
        '<code>\nprint(calculator(expression="25 * x"))\n</code>',
        '<code>\nfinal_answer("could not compute")\n</code>',
    ])
    tool_id = acme.add_tool("calculator", "Evaluates arithmetic expressions.", CALCULATOR)
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
    result = run(acme, [tool_id], llm_id)
    assert str(result) == "could not compute"
    assert "unsupported expression" in json.dumps(server.requests[1]["body"]["messages"])


def test_a_model_that_never_answers_properly_stops_at_max_steps(core, llm_server):
    acme = core.tenant("acme")
    server = llm_server(["I am just chatting, no code here."])
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
    result = run(acme, [], llm_id, max_steps=2)
    assert result.status == "max_steps" and not result.completed
    assert "stopped at max_steps without a final answer" in repr(result)
    record = acme.get_run(result.run_id)
    assert record["status"] == "max_steps" and record["steps"] == result.steps


def _closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@pytest.mark.parametrize(
    ("reply", "status", "message"),
    [
        (None, "failed", "APIConnectionError: Connection error"),
        ({"status": 500}, "failed", "InternalServerError: Error code: 500"),
        ({"status": 429}, "failed", "RateLimitError: Error code: 429"),
        ({"raw": "this is not json{"}, "failed", "the response is not valid JSON"),
        ({"content": "<code>final_answer(1)</code>", "usage": False}, "failed", "response has no 'usage'"),
        ({"drop": True}, "failed", "APIConnectionError"),
        ({"delay": 5, "content": "too late"}, "timeout", "APITimeoutError: Request timed out"),
    ],
)
def test_llm_failures_end_the_run_with_a_recorded_readable_error(tmp_path, llm_server, reply, status, message):
    core = MTCore(settings=make_settings(tmp_path, llm_timeout=1.5))
    acme = core.tenant("acme")
    base_url = llm_server([reply]).base_url if reply is not None else f"http://127.0.0.1:{_closed_port()}/v1"
    llm_id = acme.add_llm(base_url=base_url, api_key=API_KEY, model_name="m", max_retries=0)
    started = time.monotonic()
    with pytest.raises(RunError, match=message) as caught:
        run(acme, [], llm_id, query="hello")
    assert time.monotonic() - started < 10
    error = caught.value
    assert error.status == status
    assert "LLM request failed (openai endpoint http://127.0.0.1:" in str(error)
    record = acme.get_run(error.run_id)
    assert record["status"] == status
    assert message.split(":")[0] in record["error"]
    assert API_KEY not in record["error"] and API_KEY not in str(error)


def test_bad_arguments(calculator_setup):
    acme, _, tool_id, llm_id = calculator_setup
    with pytest.raises(ValidationError, match="query: must not be empty"):
        run(acme, [tool_id], llm_id, query="")
    with pytest.raises(ValidationError, match="agent_type: 'planner' is not one of code, tool_calling"):
        run(acme, [tool_id], llm_id, agent_type="planner")
    with pytest.raises(ValidationError, match="tool_ids: must be a list"):
        run(acme, tool_id, llm_id)
    with pytest.raises(ValidationError, match="max_steps: must be an integer from 1 to 100"):
        run(acme, [tool_id], llm_id, max_steps=0)
    with pytest.raises(NotFoundError, match="tool 'tool_nope' not found"):
        run(acme, [tool_id, "tool_nope"], llm_id)
    with pytest.raises(NotFoundError, match="llm 'llm_nope' not found"):
        run(acme, [tool_id], "llm_nope")
    for wrong in (["x"], 7, None, {"id": 1}):  # ids of the wrong type are simply not found
        with pytest.raises(NotFoundError, match=r"^llm .* not found$"):
            run(acme, [tool_id], wrong)
        with pytest.raises(NotFoundError, match=r"^tool .* not found$"):
            run(acme, [wrong], llm_id)
    with pytest.raises(ValidationError, match="step_timeout: must be a number of seconds above 0 and at most 3600"):
        run(acme, [tool_id], llm_id, step_timeout=10**7)
    assert acme.get_runs() == []  # nothing was recorded for calls that never started


def test_each_run_gets_a_fresh_agent_and_executor(calculator_setup):
    acme, server, tool_id, llm_id = calculator_setup
    first = run(acme, [tool_id], llm_id)
    second = run(acme, [tool_id], llm_id)
    assert str(first) == str(second) == "400"
    assert first.run_id != second.run_id
    # the second run's first request starts a new conversation: no memory of the first run
    assert sum(m["role"] == "assistant" for m in server.requests[2]["body"]["messages"]) == 0
