"""Shared fixtures: a real installation on a temporary database, and scripted LLM servers.

Every test that does not say otherwise runs twice: on a SQLite file in its data directory, and on
a fresh database of a real PostgreSQL server that the session starts (``tests/pg_server.py``).
``@pytest.mark.backends("sqlite")`` limits a test to the backends named: modules whose subject
never touches the database (the SSRF guard, the tool corpus, providers...) say so and run once;
tests/docker/ runs on SQLite only. ``make_settings(home)`` gives each data directory of a test its own database on the
test's backend, as a SQLite file under ``home`` would be. With ``MT_REQUIRE_POSTGRES=1`` a
PostgreSQL test that would skip (no server binaries, a server that does not start) fails instead.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import mt_core
from mt_core import MTCore, Settings
from mt_core.secrets import generate_master_key
from mt_core.testing import CALCULATOR_SCRIPT, ScriptedLLMServer
from mt_core.testing import CALCULATOR_SOURCE as CALCULATOR

API_KEY = "sk-test-0123456789abcdefSECRET"
BACKENDS = ("sqlite", "postgresql")
DOCKER_SKIP_PREFIX = "Docker sandbox tests skipped: "
JAIL_SKIP_PREFIX = "Local jail tests skipped: "
# The scripted LLM servers listen on 127.0.0.1, which the SSRF guard refuses unless allowed.
LOOPBACK = ("127.0.0.0/8",)


def _jail_reason() -> str | None:
    from mt_core.sandbox.jail import unavailable_reason

    return unavailable_reason()


# Tenant code runs in the local jail, which needs bubblewrap. Where it cannot run (a fresh machine
# without bwrap), the suite still runs, with tenant code in-process (MT_ALLOW_IN_PROCESS's
# executor), and the tests of the jail itself skip, reported in one line. CI installs bubblewrap
# and sets MT_REQUIRE_SANDBOX=1: there a missing jail fails the run.
JAIL_REASON = _jail_reason()
if JAIL_REASON is not None and os.environ.get("MT_REQUIRE_SANDBOX") == "1":
    raise pytest.UsageError(f"MT_REQUIRE_SANDBOX=1 but the local jail cannot run: {JAIL_REASON}")
LOCAL_EXECUTOR = "local" if JAIL_REASON is None else "in-process"
requires_jail = pytest.mark.skipif(JAIL_REASON is not None, reason=f"{JAIL_SKIP_PREFIX}{JAIL_REASON}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Every Docker (or jail) test skipped for one reason is reported at one place, so ``-ra``
    prints one line."""
    outcome = yield
    report = outcome.get_result()
    longrepr = report.longrepr
    if report.skipped and isinstance(longrepr, tuple) and DOCKER_SKIP_PREFIX in str(longrepr[2]):
        report.longrepr = ("tests/docker/docker_support.py", 1, longrepr[2])
    if report.skipped and isinstance(longrepr, tuple) and JAIL_SKIP_PREFIX in str(longrepr[2]):
        report.longrepr = ("tests/conftest.py", 1, longrepr[2])


class Backend:
    """The database backend of the running test, and the databases it made (one per data directory)."""

    def __init__(self, name: str, server: object = None) -> None:
        self.name = name
        self.server = server
        self.urls: dict[str, str] = {}

    def url_for(self, home: Path | str) -> str | None:
        """The database URL of data directory ``home`` (``None``: the SQLite file inside it)."""
        if self.server is None:
            return None
        key = str(Path(home).absolute())
        if key not in self.urls:
            self.urls[key] = self.server.create_database()  # type: ignore[attr-defined]
        return self.urls[key]

    def new_database(self, *, migrated: bool = True) -> str:
        """Another database of this test's PostgreSQL server (dropped after the test)."""
        url = self.server.create_database(migrated=migrated)  # type: ignore[attr-defined]
        self.urls[url] = url
        return url

    def env(self, home: Path | str) -> dict[str, str]:
        """Environment variables that point an ``mt`` subprocess at ``home``'s database."""
        url = self.url_for(home)
        return {"MT_HOME": str(home), **({"MT_DATABASE_URL": url} if url else {})}

    def cleanup(self) -> None:
        if self.server is None:
            return
        from mt_core.storage.postgresql import PostgresStorage

        for obj in gc.get_objects():  # pools of installations a test did not close
            if isinstance(obj, PostgresStorage):
                obj.close()
        for url in self.urls.values():
            self.server.drop_database(url)  # type: ignore[attr-defined]


_current: list[Backend] = []


def current_backend() -> Backend:
    """The backend of the running test (SQLite outside a test, e.g. in a worker process)."""
    return _current[-1] if _current else Backend("sqlite")


def make_settings(home: Path, **overrides: object) -> Settings:
    """Hermetic settings: a fixed master key, no third-party plugins unless asked, ``home``'s
    database on the test's backend, and LLM requests allowed to reach 127.0.0.0/8 (where the
    scripted servers listen) unless overridden."""
    values: dict[str, object] = {
        "home": home, "master_key": generate_master_key(), "load_plugins": (), "llm_allowed_networks": LOOPBACK,
        "allow_in_process": JAIL_REASON is not None,
    }
    if "database_url" not in overrides:
        values["database_url"] = current_backend().url_for(home)
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "backends(*names): run the test on these database backends only")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("backends")
    names = marker.args if marker else BACKENDS
    if "docker" in Path(str(metafunc.definition.path)).parts:
        names = ("sqlite",)
    metafunc.parametrize("backend", names, indirect=True)


def postgres_unavailable(reason: str) -> None:
    """Skip a PostgreSQL test, or fail it when ``MT_REQUIRE_POSTGRES=1``."""
    if os.environ.get("MT_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"MT_REQUIRE_POSTGRES=1 but PostgreSQL is unavailable: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL unavailable: {reason}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[object]:
    """A PostgreSQL server for the whole session (started on first use, stopped at the end)."""
    from pg_server import PostgresServer, find_bindir

    bindir = find_bindir()
    if bindir is None:
        postgres_unavailable("no initdb/postgres found (install postgresql-15, or set MT_PG_BIN)")
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        postgres_unavailable(f"psycopg is not installed ({exc}); pip install 'mt-core[postgres]'")
    try:
        server = PostgresServer(bindir).start()  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001 - reported as the reason
        postgres_unavailable(f"the test server did not start: {exc}")
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """The database backend of this test (parametrized: sqlite, postgresql)."""
    name = getattr(request, "param", "sqlite")
    chosen = Backend(name, request.getfixturevalue("postgres_server") if name == "postgresql" else None)
    _current.append(chosen)
    try:
        yield chosen
    finally:
        _current.remove(chosen)
        chosen.cleanup()


@pytest.fixture
def core(tmp_path: Path) -> Iterator[MTCore]:
    """An installation on a fresh data directory."""
    installation = MTCore(settings=make_settings(tmp_path / "home"))
    yield installation
    installation.close()


@pytest.fixture
def default_core(tmp_path: Path) -> Iterator[MTCore]:
    """The installation behind the module-level functions (``mt_core.add_tool`` ...)."""
    installation = mt_core.configure(settings=make_settings(tmp_path / "home"))
    yield installation
    installation.close()


@pytest.fixture
def llm_server() -> Iterator[Callable[..., ScriptedLLMServer]]:
    """Start scripted OpenAI-compatible servers on 127.0.0.1; all stopped after the test."""
    servers: list[ScriptedLLMServer] = []

    def start(script: list | None = None, **kwargs: object) -> ScriptedLLMServer:
        server = ScriptedLLMServer(script, **kwargs).start()  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def calculator_setup(core: MTCore, llm_server: Callable[..., ScriptedLLMServer]):
    """Tenant ``acme`` with the calculator tool and an LLM on a scripted server."""
    acme = core.tenant("acme")
    server = llm_server(CALCULATOR_SCRIPT)
    tool_id = acme.add_tool("calculator", "Evaluates arithmetic expressions.", CALCULATOR)
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="scripted-model", llm_name="llama-model")
    return acme, server, tool_id, llm_id


def decrypted(core, tenant: str, llm_id: str):
    """The stored LLM configuration with its key decrypted, as a run gets it (``core`` may be the
    ``mt_core`` module, for its default installation)."""
    installation = core.get_core() if hasattr(core, "get_core") else core
    return installation.llms.resolve(tenant, llm_id).primary


def raw_sql(core: MTCore, sql: str, params: tuple = ()) -> list[tuple]:
    """Run ``sql`` (``?`` placeholders) on an installation's database behind mt-core's back, as an
    attacker with database access would; the rows as tuples."""
    url = core.settings.database_url
    if url and url.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            cursor = conn.execute(sql.replace("?", "%s"), params)  # type: ignore[arg-type]
            return [tuple(row) for row in cursor.fetchall()] if cursor.description else []
    import sqlite3

    with sqlite3.connect(core.settings.database_path) as conn:  # type: ignore[arg-type]
        return [tuple(row) for row in conn.execute(sql, params).fetchall()]
