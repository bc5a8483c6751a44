"""What every case shares: the tool, the script, the statistics and the result rows."""

from __future__ import annotations

import importlib.util
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mt_core.runs import BASE_AUTHORIZED_IMPORTS
from mt_core.testing import CALCULATOR_SCRIPT, CALCULATOR_SOURCE

TOOL_NAME = "calculator"
TOOL_DESCRIPTION = "Evaluates arithmetic expressions."
TOOL_SOURCE = CALCULATOR_SOURCE
QUERY = "What is 25 multiplied by 16?"
ANSWER = "400"
# Two LLM calls per query: call the tool, then give the final answer.
SCRIPT = CALCULATOR_SCRIPT
STEPS = len(SCRIPT)
MAX_STEPS = 5
MODEL_ID = "scripted-model"
API_KEY = "sk-bench-not-a-real-key"
# The imports mt-core authorizes for agent code; the baseline gets the same list.
AUTHORIZED_IMPORTS = list(BASE_AUTHORIZED_IMPORTS)


@dataclass
class Row:
    """One line of the results table (formatted cells) with its raw numbers for results.json."""

    case: str
    metric: str
    value: str
    baseline: str = ""
    ratio: str = ""
    target: str = ""
    result: str = "info"  # met, missed, info or skipped
    data: dict[str, Any] = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(values: list[float]) -> dict[str, float]:
    """p50, p95, mean and count of a list of timings (seconds)."""
    return {
        "n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95),
        "mean": statistics.fmean(values) if values else float("nan"),
    }


def ms(seconds: float) -> str:
    """Seconds as a short millisecond string."""
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


def ratio(a: float, b: float) -> float:
    """a / b, or nan when b is zero."""
    return a / b if b else float("nan")


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of one call."""
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def interleave(variants: dict[str, Callable[[], Any]], rounds: int, seed: int = 0) -> dict[str, list[float]]:
    """Time every variant once per round, in a shuffled order, so drift hits all of them alike."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    rng = random.Random(seed)
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            samples[name].append(timed(variants[name])[0])
    return samples


def paired_median_difference(a: list[float], b: list[float]) -> float:
    """Median of a[i] - b[i] over rounds: the per-round difference, robust to slow drift."""
    return statistics.median(x - y for x, y in zip(a, b))


def make_core(home: Path, **overrides: Any) -> Any:
    """An mt-core installation on ``home`` with a fixed master key and no third-party plugins;
    other settings (``DOCKER_IMAGE``...) come from the environment."""
    from mt_core import MTCore, Settings
    from mt_core.secrets import generate_master_key

    values: dict[str, Any] = {"master_key": generate_master_key(), "load_plugins": (), **overrides}
    return MTCore(settings=Settings.from_env(dotenv=False, home=home, **values))


def load_baseline_tool(directory: Path) -> Any:
    """The same tool for plain smolagents: ``smolagents.tool`` on the same function, from a module file."""
    from smolagents import tool

    path = directory / "bench_calculator_tool.py"
    path.write_text(TOOL_SOURCE, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("bench_calculator_tool", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    instance = tool(module.calculate)
    instance.name = TOOL_NAME
    instance.description = TOOL_DESCRIPTION
    return instance


def python() -> str:
    """The interpreter the benchmark runs under (children use the same one)."""
    return sys.executable
