"""Case: how long a run waits when its primary LLM fails, before the fallback answers.

The primary is a scripted server that never answers (it hangs) or answers 503; the fallback
answers at once. Every run is one LLM call (``final_answer`` in the first step), in the local
jail. The failover time is read from the run's attempt records: from the start of the primary's
first attempt to the start of the fallback's attempt. The baseline is the same run with the
fallback as the only configuration.
"""

from __future__ import annotations

import tempfile
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

from .common import API_KEY, Row, make_core, ms, ratio, summary
from .llm_server import llm_server

NAME = "failover"
FINAL = '<code>final_answer("done")</code>'
QUERY = "Say done."


def _run(handle: Any, llm_id: str) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = handle.run_query([], llm_id, QUERY, use_docker=False, max_steps=2)
    assert str(result) == "done", result
    return handle.get_run(result.run_id)


def _failover(record: dict[str, Any]) -> float:
    """Seconds from the primary's first attempt to the attempt that answered."""
    calls = record["llm_calls"]
    first = datetime.fromisoformat(calls[0]["started_at"])
    answered = datetime.fromisoformat(calls[-1]["started_at"])
    return (answered - first).total_seconds()


def _scenario(home: Path, primary_url: str, backup_url: str, samples: int, settings: dict[str, Any],
              primary_options: dict[str, Any]) -> tuple[list[float], list[float], list[dict[str, Any]]]:
    core = make_core(home, **settings)
    handle = core.tenant("bench")
    handle.set_limits(max_concurrent_runs=10_000, runs_per_minute=1_000_000)
    backup = handle.add_llm(base_url=backup_url, api_key=API_KEY, model_name="backup", llm_name="backup")
    primary = handle.add_llm(base_url=primary_url, api_key=API_KEY, model_name="primary", llm_name="primary",
                             fallbacks=[backup], **primary_options)
    failovers, durations, records = [], [], []
    for _ in range(samples):
        record = _run(handle, primary)
        failovers.append(_failover(record))
        durations.append(record["duration_ms"] / 1000)
        records.append(record)
    core.close()
    return failovers, durations, records


def run(quick: bool) -> list[Row]:
    """Measure failover from a hanging primary (deadline share, own timeout, breaker), a failing one,
    and the default deadline."""
    samples = 2 if quick else 5
    rows: list[Row] = []
    no_breaker = {"llm_breaker_failures": 1_000_000}
    with tempfile.TemporaryDirectory() as tmp, llm_server([FINAL], 0.0) as backup_url, \
            llm_server([{"hang": True}], 0.0) as hang_url, llm_server([{"status": 503}], 0.0) as down_url:
        base = Path(tmp)
        core = make_core(base / "baseline")
        handle = core.tenant("bench")
        handle.set_limits(max_concurrent_runs=10_000, runs_per_minute=1_000_000)
        only = handle.add_llm(base_url=backup_url, api_key=API_KEY, model_name="backup")
        _run(handle, only)  # warm: imports, the jail's fork server
        baseline = summary([_run(handle, only)["duration_ms"] / 1000 for _ in range(samples)])
        core.close()
        rows.append(Row(NAME, f"run answered by a healthy only configuration, p50 ({samples} runs)",
                        ms(baseline["p50"]), data=baseline))

        cases = [
            ("hanging primary, MT_LLM_TIMEOUT=10: failover (half of the deadline)", hang_url,
             {"llm_timeout": 10.0, **no_breaker}, {}, samples),
            ("hanging primary with timeout=2: failover", hang_url, {"llm_timeout": 10.0, **no_breaker},
             {"timeout": 2}, samples),
            ("primary answering 503, max_retries=2, MT_LLM_BACKOFF=0.5: failover", down_url, no_breaker,
             {"max_retries": 2}, samples),
        ]
        if not quick:
            cases.append(("hanging primary, defaults (MT_LLM_TIMEOUT=60): failover", hang_url, no_breaker, {}, 1))
        for index, (label, url, settings, options, count) in enumerate(cases):
            failovers, durations, _ = _scenario(base / f"case{index}", url, backup_url, count, settings, options)
            stats = summary(failovers)
            rows.append(Row(NAME, f"{label}, p50 ({count} runs; run p50 {ms(summary(durations)['p50'])})",
                            ms(stats["p50"]), ms(baseline["p50"]), f"{ratio(summary(durations)['p50'], baseline['p50']):.1f}",
                            data={"failover": stats, "run": summary(durations)}))

        # With the circuit breaker (defaults: 5 failures in 60 s): the first five calls pay the
        # timeout, the next ones skip the primary without a request.
        failovers, durations, records = _scenario(base / "breaker", hang_url, backup_url, 5 + samples,
                                                  {"llm_timeout": 4.0}, {})
        skipped = [f for f, r in zip(failovers, records) if r["llm_calls"][0]["outcome"] == "skipped"]
        stats = summary(skipped)
        rows.append(Row(NAME, f"hanging primary, breaker open after 5 timeouts: failover of the next {len(skipped)}"
                              f" runs, p50 (run p50 {ms(summary(durations[5:])['p50'])})",
                        ms(stats["p50"]), ms(baseline["p50"]),
                        f"{ratio(summary(durations[5:])['p50'], baseline['p50']):.2f}",
                        data={"failover": stats, "skipped_runs": len(skipped), "run": summary(durations[5:])}))
    return rows
