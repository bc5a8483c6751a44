"""Case 2: import time and time to the first query in a new process, against plain smolagents."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .common import (
    API_KEY, AUTHORIZED_IMPORTS, MAX_STEPS, MODEL_ID, QUERY, SCRIPT, TOOL_DESCRIPTION, TOOL_NAME, TOOL_SOURCE, Row,
    make_core, ms, paired_median_difference, python, ratio, summary,
)
from .llm_server import llm_server
from .overhead import LATENCY, setup_tenant

NAME = "cold start"
IMPORT_TARGET = 0.050
FIRST_QUERY_TARGET = 1.10

IMPORT_CHILD = """
import json, sys, time
started = time.perf_counter()
{statement}
elapsed = time.perf_counter() - started
print(json.dumps({{"seconds": elapsed, "smolagents_loaded": "smolagents" in sys.modules}}))
"""

FRAMEWORK_FIRST_QUERY = """
import json, time
started = time.perf_counter()
from mt_core import run_query
result = run_query({tool_ids!r}, {llm_id!r}, {query!r}, use_docker=False, tenant="bench", max_steps={max_steps})
print(json.dumps({{"seconds": time.perf_counter() - started, "output": str(result)}}))
"""

BASELINE_FIRST_QUERY = """
import json, time
started = time.perf_counter()
from smolagents import CodeAgent, OpenAIModel, tool
from smolagents.monitoring import LogLevel
from bench_calculator_tool import calculate
calculator = tool(calculate)
calculator.name, calculator.description = {name!r}, {description!r}
model = OpenAIModel(model_id={model!r}, api_base={base_url!r}, api_key={api_key!r})
agent = CodeAgent(tools=[calculator], model=model, max_steps={max_steps}, verbosity_level=LogLevel.OFF,
                  additional_authorized_imports={imports!r})
output = agent.run({query!r})
print(json.dumps({{"seconds": time.perf_counter() - started, "output": str(output)}}))
"""


def child(code: str, cwd: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``code`` in a new interpreter and return the JSON it prints last."""
    completed = subprocess.run(
        [python(), "-c", code], cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True,
        timeout=120, check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"child failed: {completed.stderr.strip()[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def alternate(first: Any, second: Any, rounds: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Call two children alternately, swapping which goes first each round."""
    a: list[dict[str, Any]] = []
    b: list[dict[str, Any]] = []
    for index in range(rounds):
        if index % 2:
            b.append(second()), a.append(first())
        else:
            a.append(first()), b.append(second())
    return a, b


def run(quick: bool) -> list[Row]:
    """Measure and return the rows of case 2."""
    import_rounds, query_rounds = (6, 3) if quick else (15, 6)
    from mt_core.secrets import generate_master_key

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="mt-bench-") as tmp:
        cwd = Path(tmp)  # no .env here, and the baseline's tool module lives here
        (cwd / "bench_calculator_tool.py").write_text(TOOL_SOURCE, encoding="utf-8")

        def imports(statement: str) -> Any:
            return lambda: child(IMPORT_CHILD.format(statement=statement), cwd)

        for statement in ("import mt_core", "import smolagents", "from mt_core import run_query"):
            imports(statement)()  # write bytecode caches before timing
        mt, smol = alternate(imports("import mt_core"), imports("import smolagents"), import_rounds)
        api = [imports("from mt_core import run_query")() for _ in range(import_rounds)]
        mt_s, smol_s, api_s = (summary([r["seconds"] for r in runs]) for runs in (mt, smol, api))
        leaked = any(r["smolagents_loaded"] for r in mt)
        ok = mt_s["p50"] < IMPORT_TARGET and not leaked
        rows.append(Row(NAME, "`import mt_core` p50 (in a new process)" + ("; imports smolagents!" if leaked else ", smolagents not imported"),
                        ms(mt_s["p50"]), ms(smol_s["p50"]), f"{ratio(mt_s['p50'], smol_s['p50']):.3f}",
                        f"< {IMPORT_TARGET * 1000:.0f} ms", "met" if ok else "missed",
                        {"mt_core": mt_s, "smolagents": smol_s, "smolagents_loaded": leaked}))
        api_leak = any(r["smolagents_loaded"] for r in api)
        rows.append(Row(NAME, "`from mt_core import run_query` p50" + ("; imports smolagents" if api_leak else ""),
                        ms(api_s["p50"]), ms(smol_s["p50"]), f"{ratio(api_s['p50'], smol_s['p50']):.3f}",
                        data={"stats": api_s, "smolagents_loaded": api_leak}))

        with llm_server(SCRIPT, LATENCY) as base_url:
            key = generate_master_key()
            home = cwd / "home"
            core = make_core(home, master_key=key)
            _, tool_id, llm_id = setup_tenant(core, base_url)
            core.close()
            env = {"MT_HOME": str(home), "MT_MASTER_KEY": key}
            framework_code = FRAMEWORK_FIRST_QUERY.format(tool_ids=[tool_id], llm_id=llm_id, query=QUERY, max_steps=MAX_STEPS)
            baseline_code = BASELINE_FIRST_QUERY.format(
                name=TOOL_NAME, description=TOOL_DESCRIPTION, model=MODEL_ID, base_url=base_url, api_key=API_KEY,
                max_steps=MAX_STEPS, imports=AUTHORIZED_IMPORTS, query=QUERY,
            )
            child(framework_code, cwd, env), child(baseline_code, cwd)  # bytecode and plugin caches
            first, base = alternate(lambda: child(framework_code, cwd, env), lambda: child(baseline_code, cwd), query_rounds)
        for result in first + base:
            if result["output"] != "400":
                raise RuntimeError(f"a first query answered {result['output']!r}")
        f_s, b_s = (summary([r["seconds"] for r in runs]) for runs in (first, base))
        first_ratio = ratio(f_s["p50"], b_s["p50"])
        difference = paired_median_difference([r["seconds"] for r in first], [r["seconds"] for r in base])
        rows.append(Row(NAME, f"process start to first query answered, p50 (difference {ms(difference)})",
                        ms(f_s["p50"]), ms(b_s["p50"]), f"{first_ratio:.3f}", f"<= {FIRST_QUERY_TARGET}",
                        "met" if first_ratio <= FIRST_QUERY_TARGET else "missed",
                        {"mt_core": f_s, "smolagents": b_s, "paired_difference_seconds": difference}))
    return rows
