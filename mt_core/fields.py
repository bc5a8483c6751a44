"""Typed fields of LLM configurations: what a provider declares (:class:`FieldSpec`) and the
checks of the values a tenant gives ``add_llm`` / ``update_llm``.

A provider registers its fields as names (any string, number or boolean is accepted), as a
mapping of name -> Python type (``{"temperature": float}``), or as a mapping of name ->
:class:`FieldSpec` (type, range, choices). Plain stdlib: plugins import it at load time.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SCALAR_TYPES: tuple[type, ...] = (str, int, float, bool)
MAX_TEXT_LENGTH = 4096


@dataclass(frozen=True)
class FieldSpec:
    """What values one configuration field accepts.

    Args:
        type: the accepted Python type(s): ``str``, ``int``, ``float`` (which also accepts whole
            numbers) or ``bool``; a bool is never accepted as a number.
        minimum: the smallest number accepted (``None``: no lower bound).
        maximum: the largest number accepted (``None``: no upper bound).
        exclusive_minimum: the value must be strictly above ``minimum``.
        choices: the only values accepted, when set.
        note: said after the range in errors, e.g. ``"(the operator's MT_LLM_TIMEOUT)"``.
        description: one line for documentation and ``mt`` listings.
    """

    type: type | tuple[type, ...] = SCALAR_TYPES
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    choices: tuple[Any, ...] | None = None
    note: str = ""
    description: str = ""

    @property
    def types(self) -> tuple[type, ...]:
        """The accepted types as a tuple."""
        return self.type if isinstance(self.type, tuple) else (self.type,)

    def describe(self) -> str:
        """What the field accepts, in words: ``a number from 0 to 2``."""
        if self.choices is not None:
            return "one of " + ", ".join(repr(choice) for choice in self.choices)
        types = self.types
        if set(types) >= {str, int, float, bool}:
            return "a string, number or boolean"
        if types == (bool,):
            return "true or false"
        if types == (str,):
            return "a string"
        noun = "a whole number" if int in types and float not in types else "a number"
        low, high = _show(self.minimum), _show(self.maximum)
        if self.minimum is not None and self.maximum is not None:
            text = (f"{noun} above {low} and at most {high}" if self.exclusive_minimum
                    else f"{noun} from {low} to {high}")
        elif self.minimum is not None:
            text = f"{noun} above {low}" if self.exclusive_minimum else f"{noun} of at least {low}"
        elif self.maximum is not None:
            text = f"{noun} of at most {high}"
        else:
            text = noun
        return f"{text} {self.note}".rstrip()

    def problem(self, value: object) -> str | None:
        """Why ``value`` is refused, or None when it is accepted."""
        shown = _value(value)
        if self.choices is not None:
            accepted = any(type(value) is type(choice) and value == choice for choice in self.choices)
            return None if accepted else f"must be {self.describe()}, got {shown}"
        if not _type_ok(value, self.types):
            return f"must be {self.describe()}, got {shown}"
        if isinstance(value, str):
            return text_problem(value, MAX_TEXT_LENGTH)
        if isinstance(value, bool):
            return None
        number = float(value)  # type: ignore[arg-type]
        if math.isnan(number) or math.isinf(number):
            return f"must be {self.describe()}, got {shown}"
        if self.minimum is not None and (number < self.minimum or (self.exclusive_minimum and number == self.minimum)):
            return f"must be {self.describe()}, got {shown}"
        if self.maximum is not None and number > self.maximum:
            return f"must be {self.describe()}, got {shown}"
        return None



def text_problem(value: str, max_length: int) -> str | None:
    """Why the text ``value`` is refused (too long, a NUL byte, a lone surrogate), or None."""
    if len(value) > max_length:
        return f"is {len(value)} characters long; the limit is {max_length}"
    if "\x00" in value:
        return "must not contain NUL bytes"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8 text"
    return None


ANY = FieldSpec()


def _type_ok(value: object, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in types
    if isinstance(value, int):
        return int in types or float in types
    if isinstance(value, float):
        return float in types
    return isinstance(value, str) and str in types


def _show(number: float | None) -> str:
    return "" if number is None else f"{number:g}"


def _value(value: object) -> str:
    if isinstance(value, (str, int, float, bool)) or value is None:
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    return type(value).__name__


def field_specs(fields: Iterable[str] | Mapping[str, Any]) -> dict[str, FieldSpec]:
    """Normalise what a provider declares (names, name -> type, name -> FieldSpec) to specs.

    Raises ``TypeError`` for a declaration that is none of these.
    """
    if isinstance(fields, str):
        raise TypeError(f"fields must be a list of names or a mapping, not the string {fields!r}")
    if isinstance(fields, Mapping):
        specs = {}
        for name, declared in fields.items():
            if not isinstance(name, str):
                raise TypeError(f"field names must be strings, got {name!r}")
            specs[name] = as_spec(name, declared)
        return specs
    specs = {}
    for name in fields:
        if not isinstance(name, str):
            raise TypeError(f"field names must be strings, got {name!r}")
        specs[name] = ANY
    return specs


def as_spec(name: str, declared: Any) -> FieldSpec:
    """One declared field as a :class:`FieldSpec` (``None`` means any scalar)."""
    if declared is None:
        return ANY
    if isinstance(declared, FieldSpec):
        return declared
    types = declared if isinstance(declared, tuple) else (declared,)
    if types and all(isinstance(kind, type) and kind in SCALAR_TYPES for kind in types):
        return FieldSpec(type=declared)
    raise TypeError(f"field {name!r}: declare str, int, float, bool or a FieldSpec, not {declared!r}")


def did_you_mean(name: object, candidates: Iterable[str]) -> str:
    """`` (did you mean 'temperature'?)`` for a near miss among ``candidates``, else ``""``."""
    if not isinstance(name, str):
        return ""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_values(values: Mapping[str, Any], specs: Mapping[str, FieldSpec]) -> list[tuple[str, str]]:
    """The (field, problem) pairs of every value ``specs`` refuses, in the order given."""
    problems = []
    for name, value in values.items():
        spec = specs.get(name, ANY)
        problem = spec.problem(value)
        if problem is not None:
            problems.append((name, problem))
    return problems


# Fields most chat completion APIs share, with the ranges OpenAI documents; built-in providers
# declare them, and plugins may reuse them.
SAMPLING_FIELDS: dict[str, FieldSpec] = {
    "temperature": FieldSpec(float, minimum=0, maximum=2, description="sampling temperature; 0 is deterministic"),
    "top_p": FieldSpec(float, minimum=0, maximum=1, description="nucleus sampling mass"),
    "max_tokens": FieldSpec(int, minimum=1, description="most tokens one reply may have"),
    "seed": FieldSpec(int, description="a seed for reproducible sampling"),
    "frequency_penalty": FieldSpec(float, minimum=-2, maximum=2),
    "presence_penalty": FieldSpec(float, minimum=-2, maximum=2),
}
