"""An OpenAI-compatible chat completions server on 127.0.0.1 that plays scripted replies.

For tests, benchmarks and the offline demo: agents reach it through smolagents and the real
``openai`` client, and it records every request it receives.

    with ScriptedLLMServer(script=['<code>print(1)</code>', '<code>final_answer("1")</code>']) as llm:
        add_llm(base_url=llm.base_url, api_key="k", model_name="m")

A reply is a string (the assistant's content) or a dict with any of: ``content``, ``status``
(an HTTP error status), ``error`` (the ``error`` object of an error body, as the provider sends
it: see :data:`CONTEXT_LENGTH_ERROR`, :data:`CONTENT_FILTER_ERROR`), ``headers`` (extra response
headers, e.g. ``{"Retry-After": "1"}``), ``raw`` (a body sent as is, e.g. malformed JSON),
``delay`` (seconds to wait first), ``hang`` (wait that many seconds, or until the server stops,
and close without answering), ``usage`` (``False`` leaves usage out; a dict sends these counts:
``{"prompt_tokens": 1000, "completion_tokens": 200, "cached_tokens": 300}``, the cached ones as
OpenAI's ``prompt_tokens_details``; by default about four characters a token), ``drop`` (close
without answering), ``reset`` (send the status line, headers and part of the body, then reset
the connection).

Faults in arrival order rather than by conversation step: ``responder=in_order([...])``.
Besides OpenAI's ``/v1/chat/completions`` it answers Azure OpenAI's deployment path
(``/openai/deployments/<name>/chat/completions?api-version=...``); each recorded request has
its ``path`` (without the query), ``query`` (a dict), ``headers`` and ``body``.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

Reply = str | dict[str, Any]

# Where the scripted servers listen: requests to it are refused unless MT_LLM_ALLOWED_NETWORKS allows it.
LOOPBACK_NETWORKS = "127.0.0.0/8"

# A sample tool and the two replies that use it ("What is 25 multiplied by 16?" -> 400), shared
# by mt-core's tests and benchmarks and handy in a plugin's own tests.
CALCULATOR_SOURCE = '''
def calculate(expression: str) -> str:
    """Evaluates a mathematical expression and returns the result.

    Args:
        expression: The mathematical expression to evaluate, e.g. "2 + 2" or "25 * 16".
    """
    import ast
    import operator

    operators = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}

    def evaluate(node):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in operators:
            return operators[type(node.op)](evaluate(node.left), evaluate(node.right))
        raise ValueError(f"unsupported expression: {expression!r}")

    return str(evaluate(ast.parse(expression, mode="eval").body))
'''

CALCULATOR_SCRIPT: list[Reply] = [
    'Thought: use the calculator.\n<code>\nresult = calculator(expression="25 * 16")\nprint(result)\n</code>',
    "<code>\nfinal_answer(result)\n</code>",
]



# Error bodies as the providers send them.
CONTEXT_LENGTH_ERROR: dict[str, Any] = {
    "message": "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens."
               " Please reduce the length of the messages.",
    "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded",
}
CONTENT_FILTER_ERROR: dict[str, Any] = {  # Azure OpenAI's, for a prompt its content filter refused
    "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy."
               " Please modify your prompt and retry. To learn more about our content filtering policies please"
               " read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766",
    "type": None, "param": "prompt", "code": "content_filter", "status": 400,
    "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
        "hate": {"filtered": False, "severity": "safe"}, "jailbreak": {"filtered": False, "detected": False},
        "self_harm": {"filtered": False, "severity": "safe"}, "sexual": {"filtered": False, "severity": "safe"},
        "violence": {"filtered": True, "severity": "medium"}}},
}


def in_order(replies: Sequence[Reply]) -> Callable[[dict[str, Any]], Reply]:
    """A responder that plays ``replies`` in the order requests arrive (the last one repeats),
    whatever the conversation: for retries, which repeat the same step."""
    lock = threading.Lock()
    played = [0]

    def respond(body: dict[str, Any]) -> Reply:
        with lock:
            index = min(played[0], len(replies) - 1)
            played[0] += 1
        return replies[index]

    return respond


def allow_loopback_llm_servers(environ: MutableMapping[str, str] | None = None) -> bool:
    """Set ``MT_LLM_ALLOWED_NETWORKS=127.0.0.0/8`` in ``environ`` (default: this process's
    environment, inherited by its children) when it is not set, so that installations built from
    the environment afterwards may reach a :class:`ScriptedLLMServer`. Returns whether it set it.

    For demos, benchmarks and tests: a service that hosts tenants should not allow loopback.
    """
    from .netguard import ALLOWED_NETWORKS_VARIABLE

    environment = os.environ if environ is None else environ
    if ALLOWED_NETWORKS_VARIABLE in environment:
        return False
    environment[ALLOWED_NETWORKS_VARIABLE] = LOOPBACK_NETWORKS
    return True


class FakeDNS:
    """A ``socket.getaddrinfo`` for tests of the SSRF guard: it answers the test's own names, each
    with a list of addresses or a function of the call's number (``lambda call: [...]``, for DNS
    rebinding), and counts the lookups in :attr:`calls`. Numeric hosts go to the real
    ``getaddrinfo`` with ``AI_NUMERICHOST`` and any other name fails, so no query leaves the host.

        monkeypatch.setattr(socket, "getaddrinfo", FakeDNS({"llm.attacker.test": ["127.0.0.1"]}))
    """

    def __init__(self, answers: Mapping[str, list[str] | Callable[[int], list[str]]]) -> None:
        self.answers = dict(answers)
        self.calls: Counter[str] = Counter()
        self._real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0,  # noqa: A002
                 flags: int = 0) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else host
        if name in self.answers and not flags & socket.AI_NUMERICHOST:
            self.calls[name] += 1
            answer = self.answers[name]
            addresses = answer(self.calls[name]) if callable(answer) else answer
            return [
                (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, int(port or 0), 0, 0)) if ":" in a
                else (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, int(port or 0)))
                for a in addresses
            ]
        return self._real(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)


def conversation_step(body: dict[str, Any]) -> int:
    """How many assistant turns the request's conversation already has (0 for the first call)."""
    return sum(1 for message in body.get("messages", []) if message.get("role") == "assistant")


def message_text(message: dict[str, Any]) -> str:
    """The text of a chat message whose content is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""


class ScriptedLLMServer:
    """A real HTTP server speaking the OpenAI chat completions API with scripted replies.

    Args:
        script: replies played by conversation step (see :func:`conversation_step`); the last
            reply repeats once the script is exhausted. Stateless, so concurrent runs work.
        responder: instead of ``script``, a function from the request body to a reply.
        latency: seconds added before every reply.
        host: the loopback address to listen on (another of 127.0.0.0/8 for tests of the SSRF guard).
        port: the port to listen on; 0 (the default) picks a free one. A fixed port keeps
            ``base_url`` the same from one run of a script to the next.
    """

    def __init__(
        self,
        script: list[Reply] | None = None,
        *,
        responder: Callable[[dict[str, Any]], Reply] | None = None,
        latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if (script is None) == (responder is None):
            raise ValueError("give exactly one of script or responder")
        self.script = list(script or [])
        self.responder = responder
        self.latency = latency
        self.host = host
        self._requested_port = port
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, e.g. ``http://127.0.0.1:40123/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def port(self) -> int:
        """The port it listens on."""
        if self._server is None:
            raise RuntimeError("server is not started")
        return int(self._server.server_address[1])

    def start(self, port: int | None = None) -> "ScriptedLLMServer":
        """Listen on ``port`` (default: the one given at construction, else a free one) of its host in a
        background thread."""
        self._stopping.clear()
        server = _Server((self.host, self._requested_port if port is None else port), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="scripted-llm", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (and end replies that hang)."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "ScriptedLLMServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reply_for(self, body: dict[str, Any]) -> Reply:
        """The reply to one request body."""
        if self.responder is not None:
            return self.responder(body)
        step = conversation_step(body)
        return self.script[min(step, len(self.script) - 1)]

    def _record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(entry)


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # 64 agents connecting at once must not have SYNs dropped and retried


def _completion(body: dict[str, Any], content: str, usage: object) -> dict[str, Any]:
    prompt_chars = sum(len(message_text(m)) for m in body.get("messages", []))
    result: dict[str, Any] = {
        "id": f"chatcmpl-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "scripted"),
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
        ],
    }
    if isinstance(usage, dict):
        prompt_tokens, completion_tokens = int(usage["prompt_tokens"]), int(usage["completion_tokens"])
        result["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                           "total_tokens": prompt_tokens + completion_tokens}
        if usage.get("cached_tokens") is not None:
            result["usage"]["prompt_tokens_details"] = {"cached_tokens": int(usage["cached_tokens"])}
    elif usage is not False:
        prompt_tokens, completion_tokens = max(1, prompt_chars // 4), max(1, len(content) // 4)
        result["usage"] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
    return result


def _handler_for(owner: ScriptedLLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out as written, no delayed-ACK stall

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence the default log
            return

        def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:  # noqa: N802
            if self.path.rstrip("/").endswith("/models"):
                self._send(200, json.dumps({"object": "list", "data": [{"id": "scripted", "object": "model"}]}).encode())
            else:
                self._send(404, b'{"error": {"message": "not found"}}')

        def _reset(self, status: int, headers: dict[str, str]) -> None:
            """Send the status line, headers and a part of the promised body, then reset the connection."""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "4096")
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(b'{"id": "chatcmpl-partial", "object": "chat.completion", "choi')
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                self._send(400, b'{"error": {"message": "request body is not JSON"}}')
                return
            target = urlsplit(self.path)
            owner._record({"path": target.path, "query": dict(parse_qsl(target.query)),
                           "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body,
                           "received_at": time.monotonic()})
            if not target.path.rstrip("/").endswith("/chat/completions"):
                self._send(404, b'{"error": {"message": "not found"}}')
                return
            reply = owner.reply_for(body)
            spec = {"content": reply} if isinstance(reply, str) else dict(reply)
            delay = owner.latency + float(spec.get("delay", 0.0))
            if delay:
                time.sleep(delay)
            if spec.get("hang"):
                owner._stopping.wait(3600.0 if spec["hang"] is True else float(spec["hang"]))
                self.close_connection = True
                self.connection.close()
                return
            if spec.get("drop"):
                self.close_connection = True
                self.connection.close()
                return
            headers = {str(k): str(v) for k, v in (spec.get("headers") or {}).items()}
            status = int(spec.get("status", 200))
            if spec.get("reset"):
                self._reset(status, headers)
                return
            if "raw" in spec:
                self._send(status, str(spec["raw"]).encode(), headers)
                return
            if status != 200:
                error = spec.get("error") or {"message": spec.get("content") or f"scripted error {status}",
                                              "type": "scripted"}
                self._send(status, json.dumps({"error": error}).encode(), headers)
                return
            completion = _completion(body, str(spec.get("content", "")), spec.get("usage", True))
            self._send(200, json.dumps(completion).encode(), headers)

    return Handler
