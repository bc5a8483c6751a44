"""What an LLM attempt cost: a configuration's own prices, or the price data of ``genai-prices``.

``genai-prices`` (pydantic's maintained price data) is used as bundled with the installed
version: its auto-update, which would fetch prices over the network, is never started. Prices are
looked up at the attempt's own time (historic prices), with the provider's price for input
tokens it served from its prompt cache. The provider is found, in order:

1. by the configuration's ``base_url``, when it is a known provider's API (``api.openai.com``,
   an Azure OpenAI resource, ``api.groq.com``...): the model must be one of that provider's;
2. by the provider plugin, when it names a vendor (``azure_openai``: Azure; ``litellm``: the
   vendor in the model's ``vendor/`` prefix);
3. by the model's name, among the vendors' own models (``gpt-...``: OpenAI, ``claude...``:
   Anthropic, ``gemini...``: Google...): a vendor's model behind an OpenAI-compatible proxy.

A model none of these prices is *unpriced*: its cost is ``None`` (never 0), and reports flag it.
A configuration's ``prices`` (``add_llm(..., prices={"input_per_mtok": 0.15, "output_per_mtok":
0.6})``) override all of this, for self-hosted or private models (zeros for a free one).
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from .errors import LLMConfigError
from .fields import did_you_mean

logger = logging.getLogger(__name__)

PRICE_KEYS = {
    "input_per_mtok": "US dollars per million input tokens",
    "output_per_mtok": "US dollars per million output tokens",
    "cached_input_per_mtok": "US dollars per million input tokens served from the provider's prompt cache"
                             " (default: input_per_mtok)",
}
REQUIRED_PRICE_KEYS = ("input_per_mtok", "output_per_mtok")
MAX_PRICE_PER_MTOK = 1_000_000.0
CONFIGURATION = "configuration"  # priced_by of an attempt priced by its configuration's prices
# Provider plugins that name the vendor whose prices apply (2. above), as genai-prices knows them.
VENDOR_OF_PROVIDER = {"azure_openai": "azure", "litellm": "litellm"}

_warm_lock = threading.Lock()
_warm_started = False


def check_prices(value: object) -> dict[str, float] | None:
    """Validate a configuration's ``prices``: a dict of :data:`PRICE_KEYS` with ``input_per_mtok``
    and ``output_per_mtok``, each a number from 0 up; ``None`` for none. Returns the prices as floats;
    :class:`LLMConfigError` (field ``prices``) names what is wrong."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise LLMConfigError("prices", f"must be a dict such as {{'input_per_mtok': 0.15, 'output_per_mtok': 0.6}},"
                                       f" got {type(value).__name__}")
    clean: dict[str, float] = {}
    for key, number in value.items():
        if key not in PRICE_KEYS:
            raise LLMConfigError("prices", f"{key!r} is not a price{did_you_mean(key, PRICE_KEYS)} (prices:"
                                           f" {', '.join(PRICE_KEYS)})")
        if isinstance(number, bool) or not isinstance(number, (int, float, Decimal)) \
                or not math.isfinite(float(number)) or not 0 <= float(number) <= MAX_PRICE_PER_MTOK:
            raise LLMConfigError("prices", f"{key} must be a number of US dollars per million tokens from 0 to"
                                           f" {MAX_PRICE_PER_MTOK:,.0f}, got {number!r}")
        clean[key] = float(number)
    missing = [key for key in REQUIRED_PRICE_KEYS if key not in clean]
    if missing:
        raise LLMConfigError("prices", f"{missing[0]} is missing (both input_per_mtok and output_per_mtok are needed)")
    return clean


@dataclass(frozen=True)
class Cost:
    """What one attempt cost in US dollars (``None``: unpriced) and what priced it."""

    usd: float | None
    priced_by: str | None


def attempt_cost(*, provider: str, model: str, base_url: str | None, prices: dict[str, float] | None,
                 input_tokens: int, output_tokens: int, cached_tokens: int, at: datetime) -> Cost:
    """The cost of one attempt that billed these tokens at ``at`` (its start). ``input_tokens``
    includes the ``cached_tokens`` the provider served from its prompt cache, as OpenAI counts them.
    An attempt that billed no tokens costs 0."""
    if input_tokens <= 0 and output_tokens <= 0:
        return Cost(0.0, None)
    cached = min(max(cached_tokens, 0), max(input_tokens, 0))
    if prices is not None:
        per_million = (Decimal(str(prices["input_per_mtok"])) * (input_tokens - cached)
                       + Decimal(str(prices.get("cached_input_per_mtok", prices["input_per_mtok"]))) * cached
                       + Decimal(str(prices["output_per_mtok"])) * output_tokens)
        return Cost(float(per_million / 1_000_000), CONFIGURATION)
    return _genai_prices_cost(provider, model, base_url, input_tokens, output_tokens, cached, at)


def _genai_prices_cost(provider: str, model: str, base_url: str | None, input_tokens: int, output_tokens: int,
                       cached: int, at: datetime) -> Cost:
    try:
        import genai_prices
        from genai_prices import data_snapshot
    except ImportError:  # pragma: no cover - a dependency, except on Python 3.10 (it needs 3.11)
        return Cost(None, None)
    usage = genai_prices.Usage(input_tokens=input_tokens, output_tokens=output_tokens,
                               cache_read_tokens=cached or None)
    lookup: dict[str, Any] = {}
    if base_url:
        try:
            data_snapshot.get_snapshot().find_provider(None, None, base_url)
            lookup = {"provider_api_url": base_url}
        except LookupError:  # not a known provider's API: a proxy, a self-hosted server
            pass
    if not lookup and provider in VENDOR_OF_PROVIDER:
        lookup = {"provider_id": VENDOR_OF_PROVIDER[provider]}
    how = "" if lookup else " (by model name)"
    try:
        price = genai_prices.calc_price(usage, model, genai_request_timestamp=at, **lookup)
    except LookupError:
        return Cost(None, None)
    except Exception:  # noqa: BLE001 - a price the data cannot compute is unpriced, never a failed run
        logger.debug("genai-prices could not price %s (%s)", model, provider, exc_info=True)
        return Cost(None, None)
    return Cost(float(price.total_price), f"genai-prices {genai_prices.__version__}: {price.provider.id}"
                                          f" {price.model.id}{how}")


def warm_up() -> None:
    """Load genai-prices' data in a background thread, once per process, so that pricing the
    first attempt of a run does not wait for it."""
    global _warm_started
    with _warm_lock:
        if _warm_started:
            return
        _warm_started = True

    def load() -> None:
        try:
            from genai_prices import data_snapshot

            data_snapshot.get_snapshot()
        except Exception:  # noqa: BLE001 - pricing reports its own failures when it runs
            logger.debug("genai-prices did not load", exc_info=True)

    threading.Thread(target=load, name="mt-prices-warm-up", daemon=True).start()


def format_usd(value: float | Decimal | None) -> str:
    """``$0.000435``, ``$5.00``: US dollars with up to 6 decimals (at least 2); ``unpriced`` for None."""
    if value is None:
        return "unpriced"
    text = f"{float(value):,.6f}".rstrip("0")
    whole, _, cents = text.partition(".")
    return f"${whole}.{cents.ljust(2, '0')}"
