"""A PostgreSQL database for the benchmarks: ``MT_BENCH_DATABASE_URL`` (a server you run), or a
throwaway server started like the tests do (``tests/pg_server.py``: the machine's ``initdb`` and
``postgres``, a Unix socket in a temporary folder, no TCP port)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .common import Row


@contextmanager
def postgres_database() -> Iterator[str | None]:
    """Yield the URL of an empty database, or ``None`` (with the reason printed) when there is none."""
    configured = os.environ.get("MT_BENCH_DATABASE_URL")
    if configured:
        yield configured
        return
    try:
        import psycopg  # noqa: F401

        from tests.pg_server import PostgresServer, find_bindir
    except ImportError as exc:
        print(f"  postgresql: skipped ({exc}; pip install 'mt-core[postgres]')", flush=True)
        yield None
        return
    bindir = find_bindir()
    if bindir is None:
        print("  postgresql: skipped (no initdb/postgres: install postgresql-15 or set MT_PG_BIN)", flush=True)
        yield None
        return
    server = PostgresServer(bindir).start()
    try:
        yield server.create_database(migrated=False)
    finally:
        server.stop()


def on_both_backends(case: str, measure: Callable[[Path, str | None, bool], list[Row]], quick: bool) -> list[Row]:
    """``measure(folder, database_url, quick)`` on SQLite (``database_url=None``), then on
    PostgreSQL when a server is at hand (a ``skipped`` row otherwise)."""
    with tempfile.TemporaryDirectory(prefix="mt-bench-") as tmp:
        rows = measure(Path(tmp) / "sqlite", None, quick)
        with postgres_database() as url:
            if url is None:
                rows.append(Row(case, "postgresql: no server (see above)", "", "", "", "", "skipped"))
            else:
                rows += measure(Path(tmp) / "postgresql", url, quick)
    return rows
