"""Every error mt-core raises on purpose: one module, one base class, messages a user can act on.

Two exceptions to the base class, on purpose: :class:`ExecutorAbort` is a ``BaseException`` (see
its docstring), and :class:`SandboxFallbackWarning` is a warning.
"""

from __future__ import annotations


class MTError(Exception):
    """Base class of every error raised by mt-core."""


class ValidationError(MTError, ValueError):
    """An argument is malformed; the message names the field and the problem."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class TenantError(ValidationError):
    """A tenant name is not acceptable."""

    def __init__(self, problem: str) -> None:
        super().__init__("tenant", problem)


class ToolValidationError(ValidationError):
    """Tool source, name, description or dependencies were rejected; nothing was stored."""

    def __init__(self, problem: str, *, field: str = "code", line: int | None = None) -> None:
        self.line = line
        if line is not None:
            problem = f"line {line}: {problem}"
        super().__init__(field, problem)


class LLMConfigError(ValidationError):
    """An LLM configuration is incomplete or names an unknown provider."""


class BlockedAddressError(LLMConfigError):
    """A tenant-supplied URL leads to an address the network policy refuses; nothing was sent there.

    Raised by ``add_llm`` for a ``base_url`` whose host is a literal address (or ``localhost``),
    and when a request is about to connect: after resolving the host, on every redirect hop.

    Args:
        host: the host name as written in the URL (or the redirect target).
        address: the refused address.
        address_class: ``loopback``, ``private``, ``link-local``, ``unspecified``, ``multicast``,
            ``reserved`` or ``shared``.
        variable: the setting that allows networks (``MT_LLM_ALLOWED_NETWORKS``).
        suggestion: a network that, added to ``variable``, would allow the address.
        embedded: the IPv4 address an IPv6 form embeds (``::ffff:127.0.0.1``), judged in its place.
        resolved: whether ``address`` came from resolving ``host`` (else ``host`` spells it).
    """

    def __init__(
        self,
        host: str,
        address: str,
        address_class: str,
        *,
        variable: str,
        suggestion: str,
        embedded: str | None = None,
        resolved: bool = True,
        field: str = "base_url",
    ) -> None:
        self.host = host
        self.address = address
        self.address_class = address_class
        self.variable = variable
        words = "shared (carrier-grade NAT)" if address_class == "shared" else address_class
        article = "an" if address_class[:1] in "aeiou" else "a"
        via = f" (which embeds {embedded})" if embedded else ""
        verb = "resolves to" if resolved else "is the address"
        super().__init__(
            field,
            f"host {host!r} {verb} {address}{via}, {article} {words} address; tenant URLs may not reach"
            f" it unless {variable} includes it (e.g. {variable}={suggestion})",
        )


class NotFoundError(MTError, LookupError):
    """No such object for this tenant. Raised identically whether the id exists elsewhere or not."""

    def __init__(self, kind: str, object_id: str) -> None:
        self.kind = kind
        self.object_id = object_id
        super().__init__(f"{kind} {object_id!r} not found")


class ConflictError(MTError):
    """The object would collide with one the tenant already has (e.g. a duplicate tool name)."""


class QuotaExceededError(MTError):
    """A tenant limit would be exceeded; nothing was written."""


class BudgetExceededError(QuotaExceededError):
    """A tenant's budget had no room for a run's next LLM request, so it was not sent: the run
    stops with status ``budget_exceeded`` (its :class:`RunError` says which budget)."""


class RunError(MTError):
    """An agent run failed; the failed run is recorded under ``run_id``."""

    def __init__(self, message: str, *, run_id: str, status: str = "failed") -> None:
        self.run_id = run_id
        self.status = status
        super().__init__(f"run {run_id} {status}: {message}")


class DatabaseError(MTError):
    """The database cannot be used as asked (a driver is missing, a server is unreachable, a copy
    would write into a database that holds data); the message says what to do."""


class LLMCallError(MTError):
    """One LLM call failed on every configuration of its chain (after retries and fallbacks),
    or ran out of its deadline. The message names each configuration tried and why it failed;
    API keys never appear in it.

    Args:
        message: the account of the call.
        attempts: one dict per attempt (``llm_id``, ``outcome``, ``error_type``, ``status_code``...).
        timed_out: whether the call ended because time ran out.
    """

    def __init__(self, message: str, *, attempts: list[dict] | None = None, timed_out: bool = False) -> None:
        self.attempts = list(attempts or [])
        self.timed_out = timed_out
        super().__init__(message)


class SecretError(MTError):
    """A secret could not be encrypted or decrypted (wrong master key, or ciphertext moved)."""


class PluginError(MTError):
    """A plugin could not be loaded or broke a hook contract."""


class SandboxUnavailableError(MTError):
    """No sandbox that may run this tenant code is available (no jail can run here, or the Docker
    sandbox is unusable and ``MT_DOCKER_FALLBACK=error``); the message says what to install or set."""


class SandboxError(MTError):
    """A sandbox could not be started or broke its protocol."""


class SandboxFallbackWarning(RuntimeWarning):
    """A run asked for the Docker sandbox and ran in the local jail instead; the message says why."""


class ExecutorAbort(BaseException):
    """Raised by an executor to end the run now (its sandbox died, or a step ran out of time).

    A ``BaseException`` on purpose: smolagents turns every ``Exception`` an executor raises into a
    step error and lets the model try again, which would re-run a runaway step. ``run_query``
    catches it and records the run (status ``timeout`` for :class:`StepTimeout`, else ``failed``).
    """


class StepTimeout(ExecutorAbort):
    """A code step ran past its time limit and was stopped from the host."""


class SandboxCrashed(ExecutorAbort):
    """The sandbox process or container died during a step (out of memory, killed...)."""
class KeyRotationError(SecretError):
    """A master key rotation was refused or could not finish; nothing unsafe was left behind.
    The message says what to set or run."""


class ToolUnavailableError(MTError, LookupError):
    """A tool the tenant enabled cannot be used now (e.g. its package was uninstalled); the message
    names what is missing."""
