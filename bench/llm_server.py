"""The scripted OpenAI-compatible server in a process of its own.

Run apart from the process being measured, its JSON and socket work does not compete with the
agents for the GIL. ``python llm_server.py --latency 0.05 --script '[...]'`` prints its base URL
and serves until its stdin closes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def llm_server(script: list[str], latency: float) -> Iterator[str]:
    """Start the server process; yield its base URL; stop it on exit."""
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--latency", str(latency), "--script", json.dumps(script)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        if not base_url.startswith("http"):
            raise RuntimeError("the scripted LLM server did not start")
        yield base_url
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> None:
    """Serve the script until stdin closes."""
    from mt_core.testing import ScriptedLLMServer

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--script", required=True, help="JSON list of replies")
    args = parser.parse_args(argv)
    server = ScriptedLLMServer(json.loads(args.script), latency=args.latency).start()
    print(server.base_url, flush=True)
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    main()
