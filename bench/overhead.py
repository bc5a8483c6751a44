"""Case 1: time of one ``run_query`` against the same query on plain smolagents."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .common import (
    ANSWER, API_KEY, AUTHORIZED_IMPORTS, MAX_STEPS, MODEL_ID, QUERY, SCRIPT, STEPS, TOOL_DESCRIPTION, TOOL_NAME,
    TOOL_SOURCE, Row, interleave, load_baseline_tool, make_core, ms, paired_median_difference, ratio, summary,
)
from .llm_server import llm_server

NAME = "overhead"
LATENCY = 0.05  # seconds per LLM reply
TARGET_RATIO = 1.05


class Baseline:
    """Plain smolagents: a fresh CodeAgent per query, with a fresh or a reused OpenAIModel."""

    def __init__(self, base_url: str, directory: Path) -> None:
        from smolagents import OpenAIModel

        self.base_url = base_url
        self.tool = load_baseline_tool(directory)
        self.shared_model = OpenAIModel(model_id=MODEL_ID, api_base=base_url, api_key=API_KEY)

    def _agent(self, model: Any) -> Any:
        from smolagents import CodeAgent
        from smolagents.monitoring import LogLevel

        return CodeAgent(
            tools=[self.tool], model=model, max_steps=MAX_STEPS, verbosity_level=LogLevel.OFF,
            additional_authorized_imports=list(AUTHORIZED_IMPORTS),
        )

    def fresh(self) -> Any:
        """New model (and HTTP client) and new agent, like mt-core does per run."""
        from smolagents import OpenAIModel

        model = OpenAIModel(model_id=MODEL_ID, api_base=self.base_url, api_key=API_KEY)
        try:
            return self._agent(model).run(QUERY, return_full_result=True)
        finally:
            model.client.close()

    def reused(self) -> Any:
        """One model (and HTTP connection pool) for all queries, new agent per query."""
        return self._agent(self.shared_model).run(QUERY, return_full_result=True)


def setup_tenant(core: Any, base_url: str) -> tuple[Any, str, str]:
    """Tenant ``bench`` with the calculator tool and an LLM on the scripted server."""
    handle = core.tenant("bench")
    if hasattr(handle, "set_limits"):  # measure the engine, not the per-tenant run quota
        handle.set_limits(max_concurrent_runs=10_000, runs_per_minute=1_000_000)
    tool_id = handle.add_tool(TOOL_NAME, TOOL_DESCRIPTION, TOOL_SOURCE)
    llm_id = handle.add_llm(base_url=base_url, api_key=API_KEY, model_name=MODEL_ID, llm_name="bench")
    return handle, tool_id, llm_id


@contextmanager
def scenario(latency: float) -> Iterator[tuple[Callable[[], Any], "Baseline"]]:
    """A scripted server with ``latency`` per reply, a bench tenant on a fresh installation, and
    the baseline; yields the framework's query and the baseline, checked to do the same work."""
    with tempfile.TemporaryDirectory(prefix="mt-bench-") as tmp, llm_server(SCRIPT, latency) as base_url:
        core = make_core(Path(tmp) / "home")
        handle, tool_id, llm_id = setup_tenant(core, base_url)
        baseline = Baseline(base_url, Path(tmp))

        def framework() -> Any:
            return handle.run_query([tool_id], llm_id, QUERY, use_docker=False, max_steps=MAX_STEPS)

        check_same_work(framework(), baseline.fresh())
        try:
            yield framework, baseline
        finally:
            core.close()


def check_same_work(framework: Any, baseline: Any) -> None:
    """Both sides must answer the same in the same number of steps, or the comparison is void."""
    got = (str(framework.output), framework.status, str(baseline.output), baseline.state)
    if got != (ANSWER, "succeeded", ANSWER, "success"):
        raise RuntimeError(f"the framework and the baseline did not do the same work: {got}")
    # QueryResult.steps is a count; its trace holds the steps as smolagents records them
    llm_calls = [sum(1 for s in steps if "step_number" in s) for steps in (framework.trace, baseline.steps)]
    if llm_calls != [STEPS, STEPS]:
        raise RuntimeError(f"expected {STEPS} action steps on both sides, got {llm_calls}")


def run(quick: bool) -> list[Row]:
    """Measure and return the rows of case 1."""
    rounds = 12 if quick else 40
    with scenario(LATENCY) as (framework, baseline):
        for _ in range(2):  # warm-up: imports, first connections, first database pages
            framework(), baseline.fresh(), baseline.reused()
        samples = interleave(
            {"mt_core": framework, "smolagents": baseline.fresh, "smolagents_reused_model": baseline.reused}, rounds
        )
    stats = {name: summary(values) for name, values in samples.items()}
    mt, base, reused = stats["mt_core"], stats["smolagents"], stats["smolagents_reused_model"]
    overhead = paired_median_difference(samples["mt_core"], samples["smolagents"])
    overhead_reused = paired_median_difference(samples["mt_core"], samples["smolagents_reused_model"])
    p50_ratio = ratio(mt["p50"], base["p50"])
    setting = f"{STEPS} LLM calls x {LATENCY * 1000:.0f} ms, local executor, {rounds} rounds"
    return [
        Row(NAME, f"query p50 ({setting})", ms(mt["p50"]), ms(base["p50"]), f"{p50_ratio:.3f}",
            f"<= {TARGET_RATIO}", "met" if p50_ratio <= TARGET_RATIO else "missed", {"stats": stats}),
        Row(NAME, "query p95", ms(mt["p95"]), ms(base["p95"]), f"{ratio(mt['p95'], base['p95']):.3f}"),
        Row(NAME, "query p50 against plain smolagents with one reused model/client", ms(mt["p50"]), ms(reused["p50"]),
            f"{ratio(mt['p50'], reused['p50']):.3f}"),
        Row(NAME, "overhead per query, paired median (mt-core minus baseline): vs fresh model"
            f" {ms(overhead)}, vs reused model", ms(overhead_reused), "", "", "", "info",
            {"vs_fresh_seconds": overhead, "vs_reused_seconds": overhead_reused}),
    ]
