"""Case 6: the Docker sandbox against the local executor, when a ``docker`` executor is installed.

*cold*: the first one-step run of a new installation; *warm*: later one-step runs (served by the
executor's warm pool, if it has one); *per step*: the extra time of each further code step.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from .common import API_KEY, MODEL_ID, Row, make_core, ms, ratio, summary
from .llm_server import llm_server

NAME = "docker sandbox"
POOL_REFILL_SECONDS = 1.5
STEPS = 4
ONE_STEP = ["<code>\nfinal_answer('done')\n</code>"]
MANY_STEPS = [f"<code>\nprint({n})\n</code>" for n in range(STEPS - 1)] + ONE_STEP


def docker_executor(core: Any) -> tuple[Any, str | None]:
    """The installed ``docker`` executor and why it cannot run (None when it can)."""
    executor = core.plugins.executors.get("docker")
    if executor is None:
        return None, "no docker executor"
    return executor, executor.unavailable_reason(core.settings)


def run(quick: bool) -> list[Row]:
    """Measure and return the rows of case 6 (one skipped row when there is no Docker sandbox)."""
    rounds = 3 if quick else 8
    with tempfile.TemporaryDirectory(prefix="mt-bench-") as tmp:
        probe = make_core(Path(tmp) / "probe", load_plugins=None)
        executor, reason = docker_executor(probe)
        probe.close()
        if reason is not None:
            return [Row(NAME, "time to first step, warm pool, per-step overhead", f"skipped: {reason}", result="skipped")]
        with llm_server(ONE_STEP, 0.0) as one_url, llm_server(MANY_STEPS, 0.0) as many_url:
            core = make_core(Path(tmp) / "home", load_plugins=None)
            handle = core.tenant("bench")
            one = handle.add_llm(base_url=one_url, api_key=API_KEY, model_name=MODEL_ID, llm_name="one")
            many = handle.add_llm(base_url=many_url, api_key=API_KEY, model_name=MODEL_ID, llm_name="many")

            def query(llm_id: str, docker: bool) -> float:
                if docker:  # let the warm pool replace the container the last run used (a start is ~0.5 s)
                    time.sleep(POOL_REFILL_SECONDS)
                started = time.perf_counter()
                result = handle.run_query([], llm_id, "Say done.", use_docker=docker, max_steps=STEPS + 1)
                if docker and result.executor != "docker":
                    raise RuntimeError(f"asked for docker, ran on {result.executor}")
                return time.perf_counter() - started

            cold = query(one, True)
            local_first = query(one, False)
            samples: dict[str, list[float]] = {"docker_1": [], "local_1": [], "docker_n": [], "local_n": []}
            for _ in range(rounds):
                samples["docker_1"].append(query(one, True))
                samples["local_1"].append(query(one, False))
                samples["docker_n"].append(query(many, True))
                samples["local_n"].append(query(many, False))
            core.close()
    stats = {name: summary(values) for name, values in samples.items()}
    per_step = {
        side: (stats[f"{side}_n"]["p50"] - stats[f"{side}_1"]["p50"]) / (STEPS - 1) for side in ("docker", "local")
    }
    return [
        Row(NAME, f"one-step run, cold (first run of a new installation; plugin {executor.plugin})", ms(cold),
            ms(local_first), f"{ratio(cold, local_first):.1f}", data={"docker": cold, "local": local_first}),
        Row(NAME, f"one-step run, warm pool, p50 ({rounds} runs)", ms(stats["docker_1"]["p50"]),
            ms(stats["local_1"]["p50"]), f"{ratio(stats['docker_1']['p50'], stats['local_1']['p50']):.1f}", data=stats),
        Row(NAME, f"per code step ({STEPS}-step minus 1-step runs)", ms(per_step["docker"]), ms(per_step["local"]),
            f"{ratio(per_step['docker'], per_step['local']):.1f}", data={"per_step_seconds": per_step}),
    ]
