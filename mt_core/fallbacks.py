"""Fallback chains of LLM configurations as a graph: the order a call tries them in, and the
check that refuses a cycle. Pure functions; storage runs the check inside its write."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .errors import LLMConfigError

MAX_FALLBACKS = 5  # fallbacks one configuration may list
MAX_CHAIN = 8  # configurations one call may try, the primary included


def find_cycle(edges: Mapping[str, Sequence[str]], start: str) -> list[str] | None:
    """A path ``start -> ... -> start`` following ``edges`` (id -> its fallbacks), or None."""
    path: list[str] = [start]
    seen: set[str] = set()

    def visit(node: str) -> list[str] | None:
        for target in edges.get(node, ()):
            if target == start:
                return [*path, start]
            if target in seen:
                continue
            seen.add(target)
            path.append(target)
            found = visit(target)
            if found:
                return found
            path.pop()
        return None

    return visit(start)


def check_no_cycle(edges: Mapping[str, Sequence[str]], llm_id: str) -> None:
    """Raise :class:`LLMConfigError` (field ``fallbacks``) naming the cycle through ``llm_id``."""
    cycle = find_cycle(edges, llm_id)
    if cycle:
        raise LLMConfigError(
            "fallbacks",
            f"would make a cycle: {' -> '.join(cycle)}; a configuration cannot fall back to itself, directly or"
            " through others",
        )


def check_fallback_list(llm_id: str | None, fallbacks: object) -> list[str]:
    """A fallback list's shape: a list of distinct ids, at most :data:`MAX_FALLBACKS`, not ``llm_id``."""
    if isinstance(fallbacks, (str, bytes)) or not isinstance(fallbacks, (list, tuple)):
        raise LLMConfigError("fallbacks", "must be a list of LLM configuration ids, e.g. ['llm_…', 'llm_…']")
    if len(fallbacks) > MAX_FALLBACKS:
        raise LLMConfigError("fallbacks", f"lists {len(fallbacks)} configurations; the limit is {MAX_FALLBACKS}")
    seen: list[str] = []
    for item in fallbacks:
        if not isinstance(item, str) or not item:
            raise LLMConfigError("fallbacks", f"must hold LLM configuration ids (strings), got {item!r}")
        if item in seen:
            raise LLMConfigError("fallbacks", f"lists {item!r} twice")
        if item == llm_id:
            raise LLMConfigError("fallbacks", f"would make a cycle: {llm_id} -> {llm_id}; a configuration cannot"
                                              " fall back to itself")
        seen.append(item)
    return seen


def chain_order(root: str, edges: Mapping[str, Sequence[str]], limit: int = MAX_CHAIN) -> list[str]:
    """The configurations a call to ``root`` tries, in order: ``root``, then each fallback
    followed by its own fallbacks (depth first), each id once, at most ``limit``."""
    order: list[str] = []

    def visit(node: str) -> None:
        if node in order or len(order) >= limit:
            return
        order.append(node)
        for target in edges.get(node, ()):
            visit(target)

    visit(root)
    return order
