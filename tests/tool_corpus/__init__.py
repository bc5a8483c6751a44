"""Tool sources as people really write them (issue #10), for ``tests/test_tool_corpus.py``.

Each ``*.py`` file beside this one is a tool source copied from smolagents' documentation and
repository or from the Hugging Face agents course, kept as written: the text of a documentation
snippet, of a test's tool or of an example file, with nothing changed inside the lines kept. Where a
snippet is not a whole source, the comment beside its entry below says what was taken around it (the
import line of its file, the lines of its page before it) and what was left out (the lines that
build and run an agent, or call the network when the module loads). Tools defined inside a test
function or fixture are de-indented. These files are data: they are read as text, never imported
as part of this package.

Both sources are under the Apache License 2.0 (copyright The HuggingFace Team and contributors), as
mt-core is. The links pin the commits the text was copied from.

``SOURCES`` maps each file to where it came from; ``CASES`` says how each is added to mt-core (the
name given to ``add_tool``, settings, secrets), which definition a smolagents user would hand to an
agent (``pick``), and the calls to make where the tool runs offline (none where it needs the network
or an API key: those are only checked to be accepted, or refused as plain smolagents refuses them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent

SMOLAGENTS = "https://github.com/huggingface/smolagents/blob/e3a5b8994b301983b91c0325546e9dc82eab8cf0/"
COURSE = "https://github.com/huggingface/agents-course/blob/8c0832eae634ebb34541c65265caa6da4c5d2c57/"

SOURCES: dict[str, str] = {
    # -- smolagents' documentation (docs/source/en) ----------------------------------------------------
    # the Tool subclass of "What is a tool, and how to build one?", with its module-level instance
    "smolagents_tools_hf_model_downloads": SMOLAGENTS + "docs/source/en/tutorials/tools.md#L24-L45",
    # "Decorate a function with @tool": list_models comes from an earlier snippet of the page and is
    # not imported here, as on the page (the tool loads; calling it would need the Hub anyway)
    "smolagents_guided_tour_model_download_tool": SMOLAGENTS + "docs/source/en/guided_tour.md#L467-L479",
    # "Subclass Tool"
    "smolagents_guided_tour_model_download_class": SMOLAGENTS + "docs/source/en/guided_tour.md#L505-L515",
    # the "poor version" of get_weather_api, with the public helper functions beside it
    "smolagents_good_agents_weather_poor": SMOLAGENTS + "docs/source/en/tutorials/building_good_agents.md#L48-L70",
    # the "better way to build this tool" (L83-L98), after the imports and helpers of the poor version
    # (L48-L58) that the page runs first
    "smolagents_good_agents_weather_better": SMOLAGENTS + "docs/source/en/tutorials/building_good_agents.md#L48-L98",

    # -- smolagents' repository ------------------------------------------------------------------------
    # seven @tool functions calling web APIs; L7-L14 (model = InferenceClientModel() and comments) and
    # L219-L252 (the agent and its run) left out
    "smolagents_example_multiple_tools": SMOLAGENTS + "examples/multiple_tools.py#L1-L218",
    # the whole file: public helpers, load_dotenv() and an InferenceClient at module level, a Tool
    # subclass and a @tool function both named "visualizer", OPENAI_API_KEY read from the environment
    "smolagents_example_visual_qa": SMOLAGENTS + "examples/open_deep_research/scripts/visual_qa.py",
    # the whole file, relative imports written as absolute ones (L20, L26): ten Tool subclasses (one of
    # PipelineTool), constructor settings (provider, max_results, engine, ...), API keys read from the
    # environment, a dataclass; identical to the file of the installed smolagents 1.26.0
    "smolagents_default_tools": SMOLAGENTS + "src/smolagents/default_tools.py",
    # a subclass of smolagents' FinalAnswerTool, with the import line of its file (L51)
    "smolagents_test_custom_final_answer": SMOLAGENTS + "tests/test_agents.py#L824-L826",
    # the same with its own inputs, from test_custom_final_answer_with_custom_inputs
    "smolagents_test_custom_final_answer_inputs": SMOLAGENTS + "tests/test_agents.py#L1946-L1953",
    # test_tool_to_dict_allows_no_arg_in_init, first half: __init__(self, url) and the module's instance
    # FailTool("dummy_url"); each test_tools.py snippet comes with `from smolagents.tools import Tool,
    # tool` of its file's import line (L28)
    "smolagents_test_required_init_argument": SMOLAGENTS + "tests/test_tools.py#L297-L310",
    # the second half: __init__(self, url: str | None = "none")
    "smolagents_test_default_init_argument": SMOLAGENTS + "tests/test_tools.py#L315-L328",
    # test_tool_decorator_preserves_original_function: a plain function and tool(test_function) (L632)
    "smolagents_test_tool_of_plain_function": SMOLAGENTS + "tests/test_tools.py#L617-L632",
    # test_tool_with_union_type_return: -> str | bool
    "smolagents_test_union_return": SMOLAGENTS + "tests/test_tools.py#L647-L655",
    # a public decorator beside the tool, and @tool over it (L665-L666, L670-L678)
    "smolagents_test_multiple_decorators": SMOLAGENTS + "tests/test_tools.py#L665-L678",
    # a signature over several lines, with defaults
    "smolagents_test_multiline_signature": SMOLAGENTS + "tests/test_tools.py#L701-L719",
    # two decorators and a multiline signature (L745-L749, L753-L773)
    "smolagents_test_decorators_and_multiline": SMOLAGENTS + "tests/test_tools.py#L745-L773",
    # the tools of tests/fixtures/tools.py, each with its file's import line (L3)
    "smolagents_fixture_test_tool": SMOLAGENTS + "tests/fixtures/tools.py#L8-L17",
    "smolagents_fixture_no_input_tool": SMOLAGENTS + "tests/fixtures/tools.py#L24-L31",
    "smolagents_fixture_multi_input_tool": SMOLAGENTS + "tests/fixtures/tools.py#L52-L62",
    "smolagents_fixture_valid_tool_function": SMOLAGENTS + "tests/fixtures/tools.py#L83-L90",
    "smolagents_fixture_boolean_default_class": SMOLAGENTS + "tests/fixtures/tools.py#L97-L107",
    "smolagents_fixture_boolean_default_function": SMOLAGENTS + "tests/fixtures/tools.py#L114-L123",
    "smolagents_fixture_optional_input_class": SMOLAGENTS + "tests/fixtures/tools.py#L130-L142",
    "smolagents_fixture_optional_input_function": SMOLAGENTS + "tests/fixtures/tools.py#L149-L160",

    # -- the Hugging Face agents course (units/en) -----------------------------------------------------
    # unit 2.1 "Tools", the @tool example; the agent and its run (L84-L91) left out
    "course_catering_service_tool": COURSE + "units/en/unit2/smolagents/tools.mdx#L60-L81",
    # unit 2.1 "Tools", the Tool subclass and its instance; the agent and its run (L141-L148) left out
    "course_superhero_party_theme_tool": COURSE + "units/en/unit2/smolagents/tools.mdx#L113-L140",
    # unit 2.1 "Code agents": "occasion (str):" in Args; the agent and its run (L142-L146) left out
    "course_suggest_menu": COURSE + "units/en/unit2/smolagents/code_agents.mdx#L119-L140",
    # unit 2.1 "Code agents", the party preparator: two @tool functions and a Tool subclass in one
    # module that imports smolagents' own tools; the agent (L290-L306) left out
    "course_alfred_party_tools": COURSE + "units/en/unit2/smolagents/code_agents.mdx#L227-L287",
    # unit 2.3 "Multi-agent systems": Tuple[float, float] arguments, a helper inside the tool, and a
    # print at module level that calls the tool
    "course_cargo_travel_time": COURSE + "units/en/unit2/smolagents/multi_agent_systems.mdx#L62-L122",
    # unit 3 "Building and integrating tools": random output, module-level import and instance
    "course_weather_info_tool": COURSE + "units/en/unit3/agentic-rag/tools.mdx#L90-L116",
    # unit 3: huggingface_hub imported at module level; the example call (L210-L211, network) left out
    "course_hub_stats_tool": COURSE + "units/en/unit3/agentic-rag/tools.mdx#L180-L208",
}


@dataclass(frozen=True)
class Case:
    """One way of adding a corpus source to mt-core, and how to check it."""

    source: str  # a key of SOURCES
    name: str  # the name given to add_tool (the description given is None: the tool keeps its own)
    pick: str  # the module attribute a smolagents user hands to an agent (a class is instantiated)
    calls: tuple[dict[str, Any], ...] = ()  # offline calls; none: only checked to be accepted
    settings: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    random: bool = False  # the output is drawn at random: compared with the outputs smolagents gives
    secret_attribute: str | None = None  # an attribute of the tool holding its secret (its length is checked)
    refused: str | None = None  # plain smolagents cannot build it either: the reason both give
    tool_inputs_vary: bool = False  # input descriptions depend on set order (differs per process)
    variant: str = ""  # tells apart cases of one source and name

    @property
    def id(self) -> str:
        short = self.source.removeprefix("smolagents_").removeprefix("course_")
        return f"{short}:{self.name}" + (f":{self.variant}" if self.variant else "")

    @property
    def path(self) -> Path:
        return HERE / f"{self.source}.py"

    def code(self) -> str:
        return self.path.read_text(encoding="utf-8")


SERPER = "serper-test-key-0123456789"
BRAVE = "brave-test-key-abcdef"
OPENAI = "sk-corpus-test-key-xyz"

CASES: tuple[Case, ...] = (
    # -- offline: the answer of a run through mt-core is the answer of plain smolagents --------------
    Case("course_catering_service_tool", "catering_service_tool", "catering_service_tool",
         calls=({"query": "Gotham City catering"},)),
    Case("course_superhero_party_theme_tool", "superhero_party_theme_generator", "party_theme_tool",
         calls=({"category": "villain masquerade"}, {"category": "futuristic Gotham"}, {"category": "pirates"})),
    Case("course_suggest_menu", "suggest_menu", "suggest_menu",
         calls=({"occasion": "formal"}, {"occasion": "wedding"})),
    Case("course_alfred_party_tools", "suggest_menu", "suggest_menu", calls=({"occasion": "superhero"},)),
    Case("course_alfred_party_tools", "catering_service_tool", "catering_service_tool", calls=({"query": "best"},)),
    Case("course_alfred_party_tools", "superhero_party_theme_generator", "SuperheroPartyThemeTool",
         calls=({"category": "Futuristic Gotham"},)),
    Case("course_cargo_travel_time", "calculate_cargo_travel_time", "calculate_cargo_travel_time",
         calls=({"origin_coords": (41.8781, -87.6298), "destination_coords": (-33.8688, 151.2093)},
                {"origin_coords": (48.8566, 2.3522), "destination_coords": (40.7128, -74.006),
                 "cruising_speed_kmh": 900.0})),
    Case("course_weather_info_tool", "weather_info", "weather_info_tool", calls=({"location": "Gotham"},), random=True),
    Case("smolagents_good_agents_weather_poor", "get_weather_api", "get_weather_api",
         calls=({"location": "Anchor Point, Taghazout, Morocco", "date_time": "01/18/25 09:00:00"},)),
    Case("smolagents_good_agents_weather_better", "get_weather_api", "get_weather_api",
         calls=({"location": "Anchor Point, Taghazout, Morocco", "date_time": "01/18/25 09:00:00"},)),
    Case("smolagents_default_tools", "python_interpreter", "PythonInterpreterTool",
         settings={"authorized_imports": ["json"]},
         calls=({"code": "import json\nprint(json.dumps({'a': [1, 2]}))\nsum(range(10))"},
                {"code": "total = 0\nfor n in [1, 2, 3]:\n    total += n\ntotal / 0"}),
         tool_inputs_vary=True),
    Case("smolagents_test_custom_final_answer", "custom_final_answer", "CustomFinalAnswerTool",
         calls=({"answer": "2"},)),
    Case("smolagents_test_custom_final_answer_inputs", "two_part_answer", "CustomFinalAnswerToolWithCustomInputs",
         calls=({"answer1": "1", "answer2": "2"},)),
    Case("smolagents_test_required_init_argument", "specific", "fail_tool", calls=({"string_input": "/path"},)),
    Case("smolagents_test_default_init_argument", "specific", "fail_tool", calls=({"string_input": "/path"},)),
    Case("smolagents_test_default_init_argument", "specific_url", "PassTool", settings={"url": "https://hf.co"},
         calls=({"string_input": "/models"},)),
    Case("smolagents_test_tool_of_plain_function", "test_function", "test_tool", calls=({"items": ["a", "b", "c"]},)),
    Case("smolagents_test_union_return", "union_type_return_tool_function", "union_type_return_tool_function",
         calls=({"param": 5}, {"param": -1})),
    Case("smolagents_test_multiple_decorators", "multi_decorator_tool", "multi_decorator_tool",
         calls=({"text": "hello"},)),
    Case("smolagents_test_multiline_signature", "multiline_signature_tool", "multiline_signature_tool",
         calls=({"text": "hello", "count": 2, "uppercase": True}, {"text": "ab"})),
    Case("smolagents_test_decorators_and_multiline", "complex_tool", "complex_tool",
         calls=({"text": "hello", "multiplier": 3, "separator": "-"},)),
    Case("smolagents_fixture_test_tool", "test_tool", "TestTool", calls=({"input": "x"}, {"input": "error"})),
    Case("smolagents_fixture_no_input_tool", "no_input_tool", "NoInputTool", calls=({},)),
    Case("smolagents_fixture_multi_input_tool", "multi_input_tool", "MultiInputTool",
         calls=({"text": "a", "count": 2},)),
    Case("smolagents_fixture_valid_tool_function", "valid_tool_function", "valid_tool_function",
         calls=({"input": "hello"},)),
    Case("smolagents_fixture_boolean_default_class", "boolean_default_tool", "BooleanDefaultTool",
         calls=({"text": "t"}, {"text": "t", "flag": True})),
    Case("smolagents_fixture_boolean_default_function", "boolean_default_tool", "boolean_default_tool",
         calls=({"text": "t"}, {"text": "t", "flag": True})),
    Case("smolagents_fixture_optional_input_class", "optional_input_tool", "OptionalInputTool",
         calls=({"required_text": "a"}, {"required_text": "a", "optional_text": "b"})),
    Case("smolagents_fixture_optional_input_function", "optional_input_tool", "optional_input_tool",
         calls=({"required_text": "a"}, {"required_text": "a", "optional_text": "b"})),

    # -- need the network or an API key: accepted, never called ---------------------------------------
    Case("smolagents_tools_hf_model_downloads", "model_download_counter", "model_downloads_tool"),
    Case("smolagents_guided_tour_model_download_tool", "model_download_tool", "model_download_tool"),
    Case("smolagents_guided_tour_model_download_class", "model_download_tool", "ModelDownloadTool"),
    Case("smolagents_example_multiple_tools", "get_weather", "get_weather"),
    Case("smolagents_example_multiple_tools", "convert_currency", "convert_currency"),
    Case("smolagents_example_multiple_tools", "get_news_headlines", "get_news_headlines"),
    Case("smolagents_example_visual_qa", "visualizer", "visualizer", secrets={"OPENAI_API_KEY": OPENAI}),
    Case("smolagents_example_visual_qa", "VisualQATool", "VisualQATool"),
    Case("course_hub_stats_tool", "hub_stats", "hub_stats_tool"),
    Case("smolagents_default_tools", "GoogleSearchTool", "GoogleSearchTool", settings={"provider": "serper"},
         secrets={"SERPER_API_KEY": SERPER}, secret_attribute="api_key"),
    # a secret named like an __init__ argument is passed to it; others are environment variables only
    Case("smolagents_default_tools", "ApiWebSearchTool", "ApiWebSearchTool", settings={"rate_limit": 5.0},
         secrets={"api_key": BRAVE}, secret_attribute="api_key", variant="argument"),
    Case("smolagents_default_tools", "ApiWebSearchTool", "ApiWebSearchTool",
         settings={"api_key_name": "BRAVE_SEARCH_KEY"}, secrets={"BRAVE_SEARCH_KEY": BRAVE},
         secret_attribute="api_key", variant="environment"),
    Case("smolagents_default_tools", "WebSearchTool", "WebSearchTool", settings={"engine": "bing", "max_results": 3}),
    Case("smolagents_default_tools", "visit_webpage", "VisitWebpageTool", settings={"max_output_length": 2000}),
    Case("smolagents_default_tools", "user_input", "UserInputTool"),

    # -- refused by plain smolagents too (here), and by mt-core with the reason and its line ---------
    Case("smolagents_default_tools", "GoogleSearchTool", "GoogleSearchTool", settings={"provider": "serper"},
         variant="no-key",
         refused="ValueError: Missing API key. Make sure you have 'SERPER_API_KEY' in your env variables."),
    Case("smolagents_default_tools", "DuckDuckGoSearchTool", "DuckDuckGoSearchTool",
         refused="ImportError: You must install package `ddgs` to run this tool"),
    Case("smolagents_default_tools", "wikipedia_search", "WikipediaSearchTool",
         refused="ImportError: You must install `wikipedia-api` to run this tool"),
    Case("smolagents_default_tools", "transcriber", "SpeechToTextTool",
         refused="ModuleNotFoundError: No module named 'transformers'"),
)
