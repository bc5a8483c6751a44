"""Tools written as Python source: validation, storage, files on disk."""

from __future__ import annotations

import os
import time

import pytest

from conftest import CALCULATOR, make_settings
from mt_core import ConflictError, MTCore, NotFoundError, ToolValidationError

CLASS_TOOL = '''
from smolagents import Tool


class Shout(Tool):
    name = "shout"
    description = "Upper-cases a text."
    inputs = {"text": {"type": "string", "description": "The text to shout."}}
    output_type = "string"

    def forward(self, text: str) -> str:
        return text.upper() + "!"
'''


def test_function_tool_is_stored_with_metadata_and_file(core):
    acme = core.tenant("acme")
    tool_id = acme.add_tool("calculator", "Evaluates arithmetic.", CALCULATOR, dependencies=["packaging>=20"])

    tool = acme.get_tool(tool_id)
    assert tool["id"] == tool_id and tool_id.startswith("tool_")
    assert tool["name"] == "calculator"
    assert tool["description"] == "Evaluates arithmetic."
    assert tool["inputs"] == {
        "expression": {"type": "string", "description": 'The mathematical expression to evaluate, e.g. "2 + 2" or "25 * 16".'}
    }
    assert tool["output_type"] == "string"
    assert tool["dependencies"] == ["packaging>=20"]
    assert tool["origin"] == "tenant" and tool["kind"] == "function" and tool["version"] == 1
    assert tool["code"] == CALCULATOR
    path = core.home / "tools" / "acme" / f"{tool_id}.py"
    assert path.read_text() == CALCULATOR
    assert [t["id"] for t in acme.get_tools()] == [tool_id]


def test_class_tool_is_accepted(core):
    acme = core.tenant("acme")
    tool_id = acme.add_tool("shouter", "Shouts.", CLASS_TOOL)
    tool = acme.get_tool(tool_id)
    assert tool["kind"] == "class"
    assert tool["inputs"]["text"]["type"] == "string"


def test_delete_removes_row_and_file(core):
    acme = core.tenant("acme")
    tool_id = acme.add_tool("calculator", "Evaluates arithmetic.", CALCULATOR)
    acme.delete_tool(tool_id)
    assert acme.get_tools() == []
    assert not (core.home / "tools" / "acme" / f"{tool_id}.py").exists()
    with pytest.raises(NotFoundError, match=f"tool '{tool_id}' not found"):
        acme.get_tool(tool_id)
    with pytest.raises(NotFoundError):
        acme.delete_tool(tool_id)


def test_duplicate_name_is_a_conflict_and_other_tenants_may_reuse_it(core):
    core.tenant("acme").add_tool("calculator", "Evaluates arithmetic.", CALCULATOR)
    with pytest.raises(ConflictError, match="already has a tool named 'calculator'"):
        core.tenant("acme").add_tool("calculator", "Again.", CALCULATOR)
    assert core.tenant("globex").add_tool("calculator", "Evaluates arithmetic.", CALCULATOR)
    assert len(core.tenant("acme").get_tools()) == 1


NO_HINT = '''
def f(x) -> str:
    """Doc.

    Args:
        x: a value.
    """
    return str(x)
'''
NO_RETURN_HINT = '''
def f(x: int):
    """Doc.

    Args:
        x: a value.
    """
    return x
'''
NO_DOCSTRING = "def f(x: int) -> int:\n    return x\n"
NO_ARGS_SECTION = 'def f(x: int) -> int:\n    """Returns x."""\n    return x\n'
UNDESCRIBED_PARAM = '''
def f(x: int, y: int) -> int:
    """Adds.

    Args:
        x: first.
    """
    return x + y
'''
TWO_TOOLS = '''
def a(x: int) -> int:
    """A.

    Args:
        x: x.
    """
    return x


def b(x: int) -> int:
    """B.

    Args:
        x: x.
    """
    return x
'''
MISSING_IMPORT = '''
import surely_not_an_installed_module


def f(x: int) -> int:
    """F.

    Args:
        x: x.
    """
    return x
'''
# smolagents' SpeechToTextTool (default_tools.py): the import is in __new__, not at module level.
MISSING_IMPORT_IN_INIT = '''
from smolagents import Tool


class SpeechToTextTool(Tool):
    name = "transcriber"
    description = "Transcribes an audio into text."
    inputs = {"audio": {"type": "audio", "description": "The audio to transcribe."}}
    output_type = "string"

    def __new__(cls, *args, **kwargs):
        from transformers.models.whisper import WhisperForConditionalGeneration, WhisperProcessor

        return super().__new__(cls)

    def forward(self, audio):
        return ""
'''
RAISES_AT_IMPORT = '''
raise RuntimeError("boom at import")


def f(x: int) -> int:
    """F.

    Args:
        x: x.
    """
    return x
'''
BAD_CLASS_TOOL = '''
from smolagents import Tool


class Broken(Tool):
    name = "broken"
    description = "Broken."
    inputs = {"text": {"type": "not-a-type", "description": "x"}}
    output_type = "string"

    def forward(self, text):
        return text
'''


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("def f(:\n", r"code: line 1: is not valid Python"),
        ("", "code: must not be empty"),
        ("   \n", "code: must not be empty"),
        ("x = 1\n", "code: defines no tool"),
        ("import os\n", "code: defines no tool"),
        (NO_HINT, "code: line 2: parameter 'x' of 'f' has no type hint"),
        (NO_RETURN_HINT, "code: line 2: function 'f' has no return type hint"),
        (NO_DOCSTRING, "code: line 1: function 'f' has no docstring"),
        (NO_ARGS_SECTION, "code: line 1: docstring of 'f' has no 'Args:' section"),
        (UNDESCRIBED_PARAM, "code: line 2: docstring of 'f' does not describe parameter 'y'"),
        (TWO_TOOLS, r"code: line 11: defines 2 possible tools \('a' \(function, line 2\), 'b' \(function, line 11\)\)"
                    r" and none is named 'mytool'"),
        ("async def f(x: int) -> int:\n    return x\n", "code: line 1: async function 'f' is not supported"),
        (MISSING_IMPORT, "code: line 2: ModuleNotFoundError: No module named 'surely_not_an_installed_module';"
                         " module-level imports must be installed where tools run"),
        (MISSING_IMPORT_IN_INIT, "code: line 12: ModuleNotFoundError: No module named 'transformers'; what"
                                 " __new__ imports must be installed where tools run"),
        (RAISES_AT_IMPORT, "code: line 2: RuntimeError: boom at import"),
        (BAD_CLASS_TOOL, "not-a-type"),
        ("x = '\x00'\n", "code: must not contain NUL bytes"),
        (b"\xff\xfe", "code: is not valid UTF-8 text"),
    ],
)
def test_invalid_code_is_rejected_and_nothing_is_stored(core, code, message):
    acme = core.tenant("acme")
    with pytest.raises(ToolValidationError, match=message):
        acme.add_tool("mytool", "A tool.", code)
    assert acme.get_tools() == []
    assert not (core.home / "tools" / "acme").exists() or not any((core.home / "tools" / "acme").iterdir())


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("1abc", "name: '1abc' is not a valid tool name"),
        ("has space", "is not a valid tool name"),
        ("../etc", "is not a valid tool name"),
        ("class", "is not a valid tool name"),
        ("a" * 65, "is not a valid tool name"),
        ("print", "name: 'print' is reserved"),
        ("final_answer", "is reserved"),
        (None, "name: None is not a valid tool name"),
    ],
)
def test_invalid_names_are_rejected(core, name, message):
    with pytest.raises(ToolValidationError, match=message):
        core.tenant("acme").add_tool(name, "A tool.", CALCULATOR)
    assert core.tenant("acme").get_tools() == []


@pytest.mark.parametrize(
    ("dependencies", "message"),
    [
        ("numpy", "dependencies: must be a list"),
        (["--index-url https://evil.example/simple"], "is a pip option, not a requirement"),
        (["numpy >= = 1"], "is not a PEP 508 requirement"),
        (["pkg @ https://example.com/pkg.whl"], "direct URL references are not allowed"),
        ([""], "is not a requirement string"),
    ],
)
def test_invalid_dependencies_are_rejected(core, dependencies, message):
    with pytest.raises(ToolValidationError, match=message):
        core.tenant("acme").add_tool("calculator", "A tool.", CALCULATOR, dependencies=dependencies)
    assert core.tenant("acme").get_tools() == []


def test_description_is_required(core):
    with pytest.raises(ToolValidationError, match="description: must not be empty"):
        core.tenant("acme").add_tool("calculator", "  ", CALCULATOR)


def test_module_body_that_loops_is_stopped_by_the_time_limit(tmp_path):
    core = MTCore(settings=make_settings(tmp_path, tool_check_timeout=3.0))
    looping = "while True:\n    pass\n" + CALCULATOR
    started = time.monotonic()
    with pytest.raises(ToolValidationError, match="took longer than 3 s"):
        core.tenant("acme").add_tool("calculator", "Loops.", looping)
    assert time.monotonic() - started < 10
    assert core.tenant("acme").get_tools() == []


def test_validation_never_runs_tenant_code_in_this_process(core):
    probe = f"import os\nif os.getpid() == {os.getpid()}:\n    raise SystemExit('ran in the caller')\n"
    tool_id = core.tenant("acme").add_tool("calculator", "Checks where it runs.", probe + CALCULATOR)
    assert core.tenant("acme").get_tool(tool_id)["name"] == "calculator"


# -- dependencies are checked when the tool is added -----------------------------------------------

from package_index import local_index  # noqa: E402,F401 - fixture


def test_dependencies_installed_here_are_accepted_without_asking_the_index(core, local_index):  # noqa: F811
    tool_id = core.tenant("acme").add_tool("calculator", "Evaluates.", CALCULATOR, dependencies=["packaging>=20"])
    assert core.tenant("acme").get_tool(tool_id)["dependencies"] == ["packaging>=20"]
    assert local_index.requests == []


def test_a_dependency_the_index_has_is_accepted(core, local_index):  # noqa: F811
    core.tenant("acme").add_tool("calculator", "Evaluates.", CALCULATOR, dependencies=["mt-dep-probe>=1"])
    assert any("mt-dep-probe" in path for path in local_index.requests)


@pytest.mark.parametrize(
    ("requirement", "pip_says"),
    [
        ("mt-no-such-dependency", "Could not find a version that satisfies the requirement mt-no-such-dependency"),
        ("mt-dep-probe>=2", "Could not find a version that satisfies the requirement mt-dep-probe>=2 (from versions: 1.0)"),
        ("packaging>=999", "Could not find a version that satisfies the requirement packaging>=999"),
    ],
)
def test_a_dependency_that_cannot_be_resolved_is_refused_with_pips_line(core, local_index, requirement, pip_says):  # noqa: F811
    with pytest.raises(ToolValidationError) as caught:
        core.tenant("acme").add_tool("calculator", "Evaluates.", CALCULATOR, dependencies=["packaging", requirement])
    message = str(caught.value)
    assert message.startswith(
        f"dependencies: '{requirement}' is not installed here and cannot be resolved from the package index: {pip_says}"
    )
    assert "\n" not in message and core.tenant("acme").get_tools() == []


def test_update_tool_refuses_a_dependency_that_cannot_be_resolved_as_add_tool_does(core, local_index):  # noqa: F811
    acme = core.tenant("acme")
    tool_id = acme.add_tool("calculator", "Evaluates.", CALCULATOR)
    with pytest.raises(ToolValidationError, match="'mt-no-such-dependency' is not installed here and cannot be resolved"):
        acme.update_tool(tool_id, dependencies=["mt-no-such-dependency"])
    assert [v["version"] for v in acme.get_tool_versions(tool_id)] == [1]
    assert acme.get_tool(tool_id)["dependencies"] == []


# -- which definition is the tool, and how a class becomes it (issue #10: tools as people write them) -----

# smolagents' examples/open_deep_research/scripts/visual_qa.py, shortened: a class whose name attribute
# is the Python name of a @tool function beside it.
PYTHON_NAME_AND_NAME_ATTRIBUTE = '''
from smolagents import Tool, tool


class VisualQATool(Tool):
    name = "visualizer"
    description = "Answers questions about images (class)."
    inputs = {"image_path": {"type": "string", "description": "The image."}}
    output_type = "string"

    def forward(self, image_path: str) -> str:
        return "class"


@tool
def visualizer(image_path: str) -> str:
    """Answers questions about images (function).

    Args:
        image_path: The image.
    """
    return "function"
'''


def test_a_python_name_is_chosen_before_a_name_attribute(core):
    acme = core.tenant("acme")
    by_python_name = acme.get_tool(acme.add_tool("visualizer", None, PYTHON_NAME_AND_NAME_ATTRIBUTE))
    assert by_python_name["kind"] == "instance"
    assert by_python_name["description"].startswith("Answers questions about images (function).")
    by_class_name = acme.get_tool(acme.add_tool("VisualQATool", None, PYTHON_NAME_AND_NAME_ATTRIBUTE))
    assert by_class_name["kind"] == "class" and by_class_name["description"] == "Answers questions about images (class)."


SAME_NAME_ATTRIBUTE = '''
from smolagents import Tool


class GoogleSearchTool(Tool):
    name = "web_search"
    description = "Searches with Google."
    inputs = {"query": {"type": "string", "description": "The query."}}
    output_type = "string"

    def forward(self, query: str) -> str:
        return "google"


class DuckDuckGoSearchTool(GoogleSearchTool):
    description = "Searches with DuckDuckGo."

    def forward(self, query: str) -> str:
        return "duckduckgo"


class BraveSearchTool(GoogleSearchTool):
    description = "Searches with Brave."
'''


def test_several_tools_with_the_name_given_are_listed_and_one_is_chosen_by_its_python_name(core):
    acme = core.tenant("acme")
    with pytest.raises(ToolValidationError) as caught:
        acme.add_tool("web_search", None, SAME_NAME_ATTRIBUTE)
    assert str(caught.value) == (
        "code: line 22: defines 2 tools named 'web_search' ('DuckDuckGoSearchTool' (class, line 15),"
        " 'BraveSearchTool' (class, line 22)); add the one you mean under its Python name"
    )
    tool = acme.get_tool(acme.add_tool("BraveSearchTool", None, SAME_NAME_ATTRIBUTE))
    assert tool["kind"] == "class" and tool["description"] == "Searches with Brave."


# smolagents' tests/test_tools.py (test_tool_to_dict_allows_no_arg_in_init): __init__ needs an argument,
# and the module makes the tool with it.
REQUIRED_INIT_ARGUMENT = '''
from smolagents.tools import Tool


class FailTool(Tool):
    name = "specific"
    description = "test description"
    inputs = {"string_input": {"type": "string", "description": "input description"}}
    output_type = "string"

    def __init__(self, url):
        super().__init__(self)
        self.url = url

    def forward(self, string_input: str) -> str:
        return self.url + string_input
'''


def test_a_class_that_needs_init_arguments_is_the_instance_the_module_made(core, llm_server):
    acme = core.tenant("acme")
    tool_id = acme.add_tool("specific", None, REQUIRED_INIT_ARGUMENT + '\nfail_tool = FailTool("dummy_url")\n')
    assert acme.get_tool(tool_id)["kind"] == "class"
    server = llm_server(['<code>\nfinal_answer(specific(string_input="/path"))\n</code>'])
    llm_id = acme.add_llm(base_url=server.base_url, api_key="sk-test-key", model_name="m")
    assert acme.run_query([tool_id], llm_id, "Go.", use_docker=False).output == "dummy_url/path"

    # settings its __init__ accepts build it anew
    rebuilt = acme.add_tool("specific2", None, REQUIRED_INIT_ARGUMENT + '\nfail_tool = FailTool("dummy_url")\n',
                            settings={"url": "https://example.org"})
    server = llm_server(['<code>\nfinal_answer(specific2(string_input="/path"))\n</code>'])
    llm_id = acme.add_llm(base_url=server.base_url, api_key="sk-test-key", model_name="m2")
    assert acme.run_query([rebuilt], llm_id, "Go.", use_docker=False).output == "https://example.org/path"


def test_a_class_that_cannot_be_built_names_the_arguments_and_its_line(core):
    acme = core.tenant("acme")
    with pytest.raises(ToolValidationError) as caught:
        acme.add_tool("specific", None, REQUIRED_INIT_ARGUMENT)
    assert str(caught.value).startswith(
        "code: line 5: class 'FailTool' cannot be built: its __init__ needs 'url'; give it in settings, or make the"
        " tool in the source (e.g. `tool = FailTool(...)`)"
    )
    assert acme.add_tool("specific", None, REQUIRED_INIT_ARGUMENT, settings={"url": "u"})
