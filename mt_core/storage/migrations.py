"""The schema and numbered migrations of each dialect, as shipped in ``mt_core.database``
(the top-level ``database/`` folder): ``<dialect>/schema.sql`` is version 1, and
``<dialect>/migrations/NNNN_name.sql`` are versions 2 and up. A version number means the same
change in every dialect."""

from __future__ import annotations

from importlib import resources

DIALECTS = ("sqlite", "postgresql")


def migrations(dialect: str) -> list[tuple[int, str, str]]:
    """Every step of ``dialect`` in order: (version, name, sql), the baseline schema first."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}")
    folder = resources.files("mt_core.database").joinpath(dialect)
    steps = [(1, "schema", folder.joinpath("schema.sql").read_text(encoding="utf-8"))]
    for entry in folder.joinpath("migrations").iterdir():
        stem, _, suffix = entry.name.partition(".")
        number, _, name = stem.partition("_")
        if suffix == "sql" and number.isdigit():
            steps.append((int(number), name, entry.read_text(encoding="utf-8")))
    return sorted(steps)


def split_sql(script: str) -> list[str]:
    """Split a migration script into statements (our scripts hold no triggers, functions or
    semicolons inside strings); ``--`` comments are dropped."""
    lines = [line.split("--", 1)[0] if "--" in line else line for line in script.splitlines()]
    return [statement.strip() for statement in "\n".join(lines).split(";") if statement.strip()]
