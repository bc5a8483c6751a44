"""Tools as people really write them (issue #10): every source of ``tests/tool_corpus`` is accepted by
``add_tool`` as plain smolagents builds it, and where it runs offline a real run through mt-core
(the local jail, a scripted model on 127.0.0.1) gives the answer plain smolagents gives.

Plain smolagents is this process: the corpus file is imported as a module, as its author would, and
the definition they hand to an agent is picked (a class is instantiated with the settings, and with
the secrets its ``__init__`` takes, the others being environment variables). Tools that need the
network or an API key are never called, here or in the jail.
"""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import json
import os
import sys
import warnings
from typing import Any
from unittest import mock

import pytest

from conftest import API_KEY
from mt_core import ToolValidationError
from mt_core.testing import conversation_step, message_text
from tool_corpus import CASES, HERE, SOURCES, Case

# loading and running tools does not depend on the database (tests/test_tools.py covers storing them on both)
pytestmark = pytest.mark.backends("sqlite")

ACCEPTED = [case for case in CASES if case.refused is None]
OFFLINE = [case for case in CASES if case.calls]
WITH_SECRET = [case for case in CASES if case.secret_attribute]
REFUSED = [case for case in CASES if case.refused is not None]
_modules = itertools.count()


def ids(cases: list[Case]) -> list[str]:
    return [case.id for case in cases]


# -- plain smolagents, in this process -----------------------------------------------------------------

def plain_tool(case: Case) -> Any:
    """The tool as a smolagents user gets it from the corpus file (call inside ``plain_environment``)."""
    name = f"tool_corpus_plain_{case.source}_{next(_modules)}"
    spec = importlib.util.spec_from_file_location(name, case.path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as an import would (dataclasses look their module up)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "has decorators other than @tool"
            spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    picked = getattr(module, case.pick)
    if isinstance(picked, type):
        parameters = inspect.signature(picked).parameters
        arguments = {**case.settings, **{k: v for k, v in case.secrets.items() if k in parameters}}
        picked = picked(**arguments)
    return picked


def plain_environment(case: Case) -> Any:
    """This process's environment with the case's secrets, restored afterwards (also undoing what a
    module body such as visual_qa.py's ``load_dotenv(override=True)`` may set)."""
    return mock.patch.dict(os.environ, case.secrets)


def call_all(tool: Any, calls: tuple[dict[str, Any], ...]) -> list[Any]:
    """What the scripted step below computes, in plain Python."""
    answers = []
    for arguments in calls:
        try:
            answers.append(tool(**arguments))
        except Exception as error:  # noqa: BLE001 - a tool's error is an answer too
            answers.append("raised " + str(type(error)) + ": " + str(error))
    return answers


def scripted_step(case: Case) -> str:
    """A code step that makes the case's calls as an agent would, and answers with what they returned."""
    lines = ["answers = []"]
    for arguments in case.calls:
        lines += [
            "try:",
            f"    answers.append({case.name}(**{arguments!r}))",
            "except Exception as error:",
            "    answers.append('raised ' + str(type(error)) + ': ' + str(error))",
        ]
    lines.append("final_answer(answers)")
    return "<code>\n" + "\n".join(lines) + "\n</code>"


def as_json(value: Any) -> Any:
    """A value as it comes back from the sandbox (tuples become lists)."""
    return json.loads(json.dumps(value))


# -- mt-core -------------------------------------------------------------------------------------------

def add(acme: Any, case: Case) -> str:
    return acme.add_tool(case.name, None, case.code(), settings=case.settings, secrets=case.secrets)


def run(acme: Any, llm_server: Any, tool_id: str, step: str) -> Any:
    server = llm_server([step])
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="scripted",
                          llm_name=f"scripted-{next(_modules)}")
    result = acme.run_query([tool_id], llm_id, "Use the tool.", use_docker=False)
    assert result.status == "succeeded", result
    return result


# -- the corpus ----------------------------------------------------------------------------------------

def test_the_corpus_holds_every_source_it_cites_and_nothing_else():
    files = {path.stem for path in HERE.glob("*.py") if path.name != "__init__.py"}
    assert files == set(SOURCES)
    assert len(SOURCES) >= 20
    assert {case.source for case in CASES} == set(SOURCES)
    assert len({case.id for case in CASES}) == len(CASES)
    assert all(url.startswith("https://github.com/huggingface/") for url in SOURCES.values())
    assert len({case.source for case in OFFLINE}) >= 20  # most of them are run, not only accepted


@pytest.mark.parametrize("case", ACCEPTED, ids=ids(ACCEPTED))
def test_each_source_is_accepted_with_the_interface_smolagents_gives_it(core, case):
    acme = core.tenant("acme")
    stored = acme.get_tool(add(acme, case))
    with plain_environment(case):
        plain = plain_tool(case)

    assert stored["name"] == case.name
    assert stored["description"] == plain.description
    assert stored["output_type"] == plain.output_type
    assert stored["settings"] == case.settings and set(stored["secrets"]) == set(case.secrets)
    if case.tool_inputs_vary:  # PythonInterpreterTool lists list(set(...)) of modules in a description
        assert {k: v["type"] for k, v in stored["inputs"].items()} == {k: v["type"] for k, v in plain.inputs.items()}
    else:
        assert stored["inputs"] == as_json(plain.inputs)


@pytest.mark.parametrize("case", OFFLINE, ids=ids(OFFLINE))
def test_an_offline_tool_answers_a_real_run_as_plain_smolagents_does(core, llm_server, case):
    acme = core.tenant("acme")
    result = run(acme, llm_server, add(acme, case), scripted_step(case))
    with plain_environment(case):
        plain = plain_tool(case)
        if case.random:  # every answer the run gave is one plain smolagents gives
            seen = {json.dumps(as_json(call_all(plain, case.calls))) for _ in range(300)}
            assert json.dumps(result.output) in seen and len(seen) > 1
        else:
            assert result.output == as_json(call_all(plain, case.calls))
    assert result.executor == "local"


@pytest.mark.parametrize("case", OFFLINE, ids=ids(OFFLINE))
def test_an_offline_tool_answers_a_tool_calling_run_as_plain_smolagents_does(core, llm_server, case):
    """The same through a ToolCallingAgent: JSON arguments (tuples arrive as lists) checked by smolagents
    against the tool's inputs, the tool called by the sandbox's ``call`` op, and its answer (or error)
    observed by the model, which answers with what it observed."""
    arguments = case.calls[0]

    def reply(body: dict[str, Any]) -> str:
        if conversation_step(body) == 0:
            return json.dumps({"name": case.name, "arguments": as_json(arguments)})
        return json.dumps({"name": "final_answer", "arguments": {"answer": message_text(body["messages"][-1])}})

    acme = core.tenant("acme")
    server = llm_server(responder=reply)
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="scripted")
    result = acme.run_query([add(acme, case)], llm_id, "Use the tool.", agent_type="tool_calling", use_docker=False)
    assert result.status == "succeeded", result
    with plain_environment(case):
        plain = plain_tool(case)
        try:
            answers = {str(plain(**arguments)) for _ in range(300 if case.random else 1)}
        except Exception as error:  # noqa: BLE001 - the model is shown the tool's error
            assert result.output.startswith("Error:\n") and f"{type(error).__name__}: {error}" in result.output
        else:
            assert result.output.removeprefix("Observation:\n") in answers


def test_the_offline_answers_are_the_tools_own(core, llm_server):
    """A few answers written out, so that a mistake shared by both sides cannot pass unseen."""
    expected = {
        ("course_catering_service_tool", "catering_service_tool"): ["Gotham Catering Co."],
        ("course_cargo_travel_time", "calculate_cargo_travel_time"): [22.82, 8.13],
        ("smolagents_test_required_init_argument", "specific"): ["dummy_url/path"],
        ("smolagents_test_custom_final_answer", "custom_final_answer"): ["2CUSTOM"],
        ("smolagents_good_agents_weather_better", "get_weather_api"): [
            "raised <class 'ValueError'>: Conversion of `date_time` to datetime format failed, make sure to provide a"
            " string in format '%m/%d/%y %H:%M:%S'. Full trace:module 'datetime' has no attribute 'strptime'"
        ],
        ("smolagents_default_tools", "python_interpreter"): [
            'Stdout:\n{"a": [1, 2]}\n\nOutput: 45',
            "raised <class 'smolagents.local_python_executor.InterpreterError'>: Code execution failed at line"
            " 'total / 0' due to: ZeroDivisionError: division by zero",
        ],
    }
    acme = core.tenant("acme")
    for (source, name), answers in expected.items():
        case = next(c for c in OFFLINE if c.source == source and c.name == name)
        tool_id = add(acme, case)
        assert run(acme, llm_server, tool_id, scripted_step(case)).output == answers
        acme.delete_tool(tool_id)


@pytest.mark.parametrize("case", WITH_SECRET, ids=ids(WITH_SECRET))
def test_a_tool_sees_its_secret_in_the_sandbox(core, llm_server, case):
    acme = core.tenant("acme")
    tool_id = add(acme, case)
    (secret,) = case.secrets.values()
    result = run(acme, llm_server, tool_id, f"<code>\nfinal_answer(len({case.name}.{case.secret_attribute}))\n</code>")
    assert result.output == len(secret)
    assert secret not in json.dumps(acme.get_tool(tool_id)) and secret not in json.dumps(acme.get_run(result.run_id))


@pytest.mark.parametrize("case", REFUSED, ids=ids(REFUSED))
def test_a_source_plain_smolagents_cannot_build_here_is_refused_with_the_reason_and_its_line(core, case):
    with plain_environment(case), pytest.raises(Exception) as plain:
        plain_tool(case)
    assert f"{type(plain.value).__name__}: {plain.value}".startswith(case.refused)

    acme = core.tenant("acme")
    with pytest.raises(ToolValidationError) as caught:
        add(acme, case)
    message = str(caught.value)
    assert message.startswith(f"code: line {caught.value.line}: {case.refused}")
    raising_line = case.code().splitlines()[caught.value.line - 1]
    assert "raise " in raising_line or "import " in raising_line
    assert acme.get_tools() == []


def test_tools_sharing_a_name_are_listed_and_one_is_added_under_its_python_name(core):
    acme = core.tenant("acme")
    code = (HERE / "smolagents_default_tools.py").read_text()
    with pytest.raises(ToolValidationError) as caught:
        acme.add_tool("web_search", None, code)
    assert str(caught.value).startswith(
        "code: line 162: defines 4 tools named 'web_search' ('DuckDuckGoSearchTool' (class, line 104),"
        " 'GoogleSearchTool' (class, line 162), 'ApiWebSearchTool' (class, line 249), 'WebSearchTool' (class,"
        " line 342)); add the one you mean under its Python name"
    )
    tool = acme.get_tool(acme.add_tool("WebSearchTool", None, code))
    assert tool["description"].startswith("Performs a web search for a query")
