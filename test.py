"""The seed's smoke check: a greeting tool, an LLM from .env, a query that uses the tool, and the
database and tool files on disk. Exits non-zero on failure. Uses the offline demo model when
LLM_API_KEY is not set.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from example import allow_in_process_if_no_jail
from mt_core import add_llm, add_tool, get_core, run_query
from mt_core.testing import ScriptedLLMServer, allow_loopback_llm_servers

GREETER = '''
def greet(name: str) -> str:
    """Greets someone by name.

    Args:
        name: The name of the person to greet.
    """
    return f"Hello, {name}! Welcome to mt-core."
'''

DEMO_SCRIPT = [
    '<code>\ngreeting = greeter(name="Ada")\nprint(greeting)\n</code>',
    "<code>\nfinal_answer(greeting)\n</code>",
]


def main() -> int:
    from dotenv import find_dotenv, load_dotenv

    load_dotenv(find_dotenv(usecwd=True), override=False)
    allow_in_process_if_no_jail()
    real_key = os.environ.get("LLM_API_KEY")
    # The SSRF guard refuses LLM requests to 127.0.0.1, where the demo model listens, unless
    # MT_LLM_ALLOWED_NETWORKS allows it: allow loopback for this process when it is not set.
    if not real_key and allow_loopback_llm_servers():
        print("MT_LLM_ALLOWED_NETWORKS is not set: allowing 127.0.0.0/8 for this process, for the demo model.")
    core = get_core()
    demo = None if real_key else ScriptedLLMServer(script=DEMO_SCRIPT).start()
    if demo is not None:
        print("LLM_API_KEY is not set: using the offline demo model (scripted server on 127.0.0.1).")
    tenant = "smoke-test"
    try:
        tool_id = add_tool(
            name="greeter", description="Greets a person by name.", code=GREETER, tenant=tenant, exist_ok=True
        )
        llm_id = add_llm(
            base_url=demo.base_url if demo else os.environ.get("API_BASE_URL"),
            api_key="demo-key" if demo else real_key,
            model_name="offline-demo-model" if demo else os.environ.get("MODEL_NAME"),
            llm_name=f"smoke-{len(core.tenant(tenant).get_llms())}",
            tenant=tenant,
        )
        result = run_query([tool_id], llm_id, "Please greet Ada.", tenant=tenant)
    finally:
        if demo is not None:
            demo.stop()
    checks = {
        "the answer greets Ada": "Ada" in str(result),
        "the database file exists": (core.home / "mt.db").is_file(),
        "the tool file exists": Path(core.home / "tools" / tenant / f"{tool_id}.py").is_file(),
        "the run is recorded": core.tenant(tenant).get_run(result.run_id)["status"] == "succeeded",
    }
    for check, ok in checks.items():
        print(f"{'ok ' if ok else 'FAIL'} {check}")
    print(f"answer: {result}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
