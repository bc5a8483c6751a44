"""Case 3: plugin loading with 0, 1, 20 and 100 installed plugin distributions, cold and warm.

Each dummy distribution is a ``*.dist-info`` folder (METADATA, entry_points.txt in group
``mt_core``) beside a one-hookimpl module, in a temporary folder put on ``sys.path``.
*cold*: a new data directory (no discovery cache); *warm*: a data directory a previous process
already loaded plugins with; *scan*: ``importlib.metadata.entry_points(group="mt_core")`` alone,
the discovery work a cache can save (importing and registering each plugin it cannot).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .common import Row, ms, python, ratio, summary

NAME = "plugin discovery"
COUNTS = (0, 1, 20, 100)
WARM_GROWTH_TARGET = 1.10  # warm(100) / warm(1)

PLUGIN_MODULE = '''"""Dummy mt-core plugin for the benchmark."""
from mt_core import hookimpl


@hookimpl
def mt_register_tools(register):
    pass
'''

LOAD_CHILD = """
import json, sys, time
from mt_core import MTCore, Settings
core = MTCore(settings=Settings(home=sys.argv[1], master_key="", load_plugins=None))
started = time.perf_counter()
plugins = core.plugins
elapsed = time.perf_counter() - started
infos = [i for i in plugins.infos.values() if i.name.startswith("bench_plugin_")]
print(json.dumps({"seconds": elapsed, "loaded": sum(1 for i in infos if not i.error),
                  "errors": [i.error for i in infos if i.error][:3]}))
"""

SCAN_CHILD = """
import json, time
started = time.perf_counter()
from importlib.metadata import entry_points
found = list(entry_points(group="mt_core"))
elapsed = time.perf_counter() - started
print(json.dumps({"seconds": elapsed, "loaded": sum(ep.name.startswith("bench_plugin_") for ep in found), "errors": []}))
"""


def make_plugins(folder: Path, count: int) -> None:
    """Write ``count`` dummy plugin distributions into ``folder``."""
    folder.mkdir(parents=True)
    for index in range(count):
        module = f"mt_bench_plugin_{index:03d}"
        dist = folder / f"{module}-0.1.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: mt-bench-plugin-{index:03d}\nVersion: 0.1\n")
        (dist / "entry_points.txt").write_text(f"[mt_core]\nbench_plugin_{index:03d} = {module}\n")
        (dist / "RECORD").write_text("")
        (folder / f"{module}.py").write_text(PLUGIN_MODULE)


def child(code: str, site: Path, *args: str) -> dict[str, Any]:
    """Run ``code`` in a new interpreter with ``site`` on sys.path; return its JSON."""
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("MT_LOAD_PLUGINS", None)
    completed = subprocess.run(
        [python(), "-c", code, *args], cwd=site, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"child failed: {completed.stderr.strip()[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def run(quick: bool) -> list[Row]:
    """Measure and return the rows of case 3."""
    rounds = 4 if quick else 9
    results: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="mt-bench-") as tmp:
        root = Path(tmp)
        for count in COUNTS:
            site = root / f"site-{count}"
            make_plugins(site, count)
            warm_home = root / f"home-warm-{count}"
            warm_home.mkdir()  # an installation in use has its data directory (the cache goes inside)
            first = child(LOAD_CHILD, site, str(warm_home))  # writes bytecode and the cache, if there is one
            if first["loaded"] != count:
                raise RuntimeError(f"{count} dummy plugins installed, {first['loaded']} loaded: {first['errors']}")
            samples: dict[str, list[float]] = {"cold": [], "warm": [], "scan": []}
            for index in range(rounds):
                modes = ["cold", "warm", "scan"] if index % 2 == 0 else ["scan", "warm", "cold"]
                for mode in modes:
                    if mode == "cold":
                        cold_home = root / f"home-cold-{count}-{index}"
                        cold_home.mkdir()
                        result = child(LOAD_CHILD, site, str(cold_home))
                    elif mode == "warm":
                        result = child(LOAD_CHILD, site, str(warm_home))
                    else:
                        result = child(SCAN_CHILD, site)
                    samples[mode].append(result["seconds"])
            results[count] = {mode: summary(values) for mode, values in samples.items()}
    rows = []
    base = results[0]
    for count in COUNTS:
        cold, warm, scan = (results[count][mode]["p50"] for mode in ("cold", "warm", "scan"))
        rows.append(Row(
            NAME, f"{count} plugins: load p50 cold (warm {ms(warm)}, entry-point scan alone {ms(scan)})",
            ms(cold), ms(base["cold"]["p50"]) if count else "", f"{ratio(cold, base['cold']['p50']):.2f}" if count else "",
            data=results[count],
        ))
    slopes = {
        mode: (results[100][mode]["p50"] - results[1][mode]["p50"]) / 99 for mode in ("cold", "warm", "scan")
    }
    growth = ratio(results[100]["warm"]["p50"], results[1]["warm"]["p50"])
    rows.append(Row(
        NAME, "warm load, 100 plugins vs 1 (growth per plugin: cold "
        f"{slopes['cold'] * 1000:.2f} ms, warm {slopes['warm'] * 1000:.2f} ms, scan {slopes['scan'] * 1000:.2f} ms)",
        ms(results[100]["warm"]["p50"]), ms(results[1]["warm"]["p50"]), f"{growth:.2f}",
        f"<= {WARM_GROWTH_TARGET} (flat)", "met" if growth <= WARM_GROWTH_TARGET else "missed",
        {"per_plugin_seconds": slopes},
    ))
    return rows
