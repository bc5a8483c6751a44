"""The machine description, the results table and results.json."""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from .common import Row

COLUMNS = ("case", "metric", "mt-core", "baseline", "ratio", "target", "result")


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for dist in ("mt-core", "smolagents", "openai", "pluggy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "cpus": os.cpu_count(), "cpu_model": cpu, "python": platform.python_version(),
        "implementation": platform.python_implementation(), "system": f"{platform.system()} {platform.release()}",
        "versions": versions,
    }


def table(rows: list[Row]) -> str:
    """The rows as a Markdown table (readable in a terminal too)."""
    cells = [COLUMNS] + [(r.case, r.metric, r.value, r.baseline, r.ratio, r.target, r.result) for r in rows]
    lines = ["| " + " | ".join(row) + " |" for row in cells]
    lines.insert(1, "|" + "|".join(" --- " for _ in COLUMNS) + "|")
    return "\n".join(lines)


def write_json(path: Path, info: dict[str, Any], rows: list[Row], extra: dict[str, Any]) -> None:
    """Everything measured, raw numbers included."""
    payload = {
        **extra, "machine": info,
        "rows": [
            {"case": r.case, "metric": r.metric, "mt_core": r.value, "baseline": r.baseline, "ratio": r.ratio,
             "target": r.target, "result": r.result, "data": r.data}
            for r in rows
        ],
    }
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
