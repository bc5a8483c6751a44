"""mt-core example: a calculator tool, an LLM configuration and a query, for tenant "example".

Run it with `make demo`. With LLM_API_KEY, API_BASE_URL and MODEL_NAME in .env it uses that LLM;
without them it starts the offline demo model, a scripted OpenAI-compatible server on 127.0.0.1.
"""

from __future__ import annotations

import os

from mt_core import (
    add_llm, add_tool, enable_package_tool, get_llm_config, get_package_tools, run_query, tenant,
)
from mt_core.testing import ScriptedLLMServer, allow_loopback_llm_servers, conversation_step, message_text

CALCULATOR = '''
def calculate(expression: str) -> str:
    """Evaluates a mathematical expression and returns the result.

    Args:
        expression: The mathematical expression to evaluate, e.g. "2 + 2" or "25 * 16".
    """
    import ast
    import operator

    operators = {
        ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.Div: operator.truediv, ast.Pow: operator.pow, ast.Mod: operator.mod,
        ast.USub: operator.neg, ast.UAdd: operator.pos,
    }

    def evaluate(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in operators:
            return operators[type(node.op)](evaluate(node.left), evaluate(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in operators:
            return operators[type(node.op)](evaluate(node.operand))
        raise ValueError(f"unsupported expression: {expression!r}")

    return str(evaluate(ast.parse(expression, mode="eval").body))
'''

# What the offline demo model answers, step by step: call the tool, then give the final answer.
DEMO_SCRIPT = [
    "Thought: I will multiply the numbers with the calculator tool.\n"
    '<code>\nresult = calculator(expression="25 * 16")\nprint(result)\n</code>',
    "Thought: The calculator says 400.\n<code>\nfinal_answer(result)\n</code>",
]

# ... and for the package tool human_size (from example_tools_pkg, which `make demo` pip-installs).
SIZES_SCRIPT = [
    'Thought: I will format the size with the human_size tool.\n<code>\nsize = human_size(num_bytes=3000000)\n'
    "print(size)\n</code>",
    "Thought: The tool says it.\n<code>\nfinal_answer(size)\n</code>",
]

TENANT = "example"


def demo_reply(body: dict) -> str:
    """The offline demo model: the calculator conversation, or the human_size one for sizes."""
    question = " ".join(message_text(m) for m in body.get("messages", []) if m.get("role") == "user")
    script = SIZES_SCRIPT if "bytes" in question else DEMO_SCRIPT
    return script[min(conversation_step(body), len(script) - 1)]


def allow_in_process_if_no_jail() -> None:
    """On a machine where the local jail cannot run (no bubblewrap), opt in to running tool code in
    this process, as a single-tenant demo may, and say so loudly."""
    from mt_core.sandbox.jail import unavailable_reason

    reason = unavailable_reason()
    if reason is not None and os.environ.get("MT_ALLOW_IN_PROCESS") != "1":
        os.environ["MT_ALLOW_IN_PROCESS"] = "1"
        print(
            f"NOTE: the local jail cannot run here ({reason}).\n"
            "This demo sets MT_ALLOW_IN_PROCESS=1, so tool code runs in this process. That is fine for a\n"
            "single-tenant demo and never for a multi-tenant service: install bubblewrap instead.\n"
        )


def main() -> None:
    from dotenv import find_dotenv, load_dotenv

    load_dotenv(find_dotenv(usecwd=True), override=False)
    allow_in_process_if_no_jail()
    demo = None
    if os.environ.get("LLM_API_KEY"):
        base_url, api_key = os.environ.get("API_BASE_URL"), os.environ["LLM_API_KEY"]
        model_name = os.environ.get("MODEL_NAME") or "gpt-4o-mini"
        print(f"Using {model_name} at {base_url}")
    else:
        # The SSRF guard refuses LLM requests to 127.0.0.1, where the demo model listens, unless
        # MT_LLM_ALLOWED_NETWORKS allows it: allow loopback for this process when it is not set.
        if allow_loopback_llm_servers():
            print("MT_LLM_ALLOWED_NETWORKS is not set: allowing 127.0.0.0/8 for this process, for the demo model.")
        demo = ScriptedLLMServer(responder=demo_reply).start()
        base_url, api_key, model_name = demo.base_url, "demo-key", "offline-demo-model"
        print(
            "LLM_API_KEY is not set: using the OFFLINE DEMO MODEL, a scripted OpenAI-compatible\n"
            f"server at {demo.base_url} that plays a fixed conversation. Set LLM_API_KEY,\n"
            "API_BASE_URL and MODEL_NAME in .env to use a real LLM."
        )
    try:
        # Tools are per tenant and names are unique within a tenant: a rerun reuses the same tool.
        tool_id = add_tool(
            name="calculator",
            description="Evaluates an arithmetic expression such as '25 * 16' and returns the result.",
            code=CALCULATOR,
            tenant=TENANT,
            exist_ok=True,
        )
        llm_id = add_llm(
            base_url=base_url, api_key=api_key, model_name=model_name,
            llm_name=f"{model_name}-{len(tenant(TENANT).get_llms())}", tenant=TENANT,
        )
        print("LLM configuration (key masked):", get_llm_config(llm_id, tenant=TENANT))

        result = run_query(
            tool_ids=[tool_id], llm_id=llm_id, query="What is 25 multiplied by 16?",
            use_docker=True, tenant=TENANT, verbosity=1,
        )
        print(f"\nAnswer: {result}")
        print(f"Run {result.run_id}: status={result.status} executor={result.executor} "
              f"tokens={result.usage} duration={result.duration_ms} ms")
        run_package_tool(llm_id)
    finally:
        if demo is not None:
            demo.stop()


def run_package_tool(llm_id: str) -> None:
    """The plugin path: a tool from a pip-installed package, enabled for this tenant, in a query."""
    catalog = {tool["name"]: tool for tool in get_package_tools()}
    if not catalog.get("human_size", {}).get("available"):
        print("\nThe package tool human_size is not installed: `pip install ./example_tools_pkg` (in the venv) adds it.")
        return
    tool_id = enable_package_tool("human_size", tenant=TENANT)  # "pkg:human_size"
    print(f"\nPackage tool {tool_id} from {catalog['human_size']['distribution']}, enabled for {TENANT!r}")
    result = run_query([tool_id], llm_id, "How big is 3000000 bytes, for a human?", use_docker=True, tenant=TENANT)
    print(f"Answer: {result} (executor={result.executor})")


if __name__ == "__main__":
    main()
