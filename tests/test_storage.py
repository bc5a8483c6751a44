"""The database: schema, migrations (shipped in the wheel), settings, and what import does not do."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import make_settings, raw_sql
from mt_core import MTCore, Settings, ValidationError
from mt_core.storage import open_storage
from mt_core.storage.migrations import migrations, split_sql

ROOT = Path(__file__).resolve().parent.parent


def test_schema_and_migrations_are_recorded_once(core):
    core.tenant("acme").get_tools()
    versions = core.storage.schema_versions()
    assert versions[0] == (1, "schema")
    assert [v for v, _ in versions] == [v for v, _, _ in migrations(core.storage.dialect)]
    # opening the same database again applies nothing new
    again = open_storage(core.settings.database)
    assert again.schema_versions() == versions
    again.close()
    assert set(core.storage.count_rows()) >= {"tenants", "tools", "llms", "runs"}
    assert raw_sql(core, "SELECT COUNT(*) FROM schema_migrations") == [(len(versions),)]


def test_both_dialects_have_the_same_versions():
    sqlite, postgresql = migrations("sqlite"), migrations("postgresql")
    assert [(v, n) for v, n, _ in sqlite] == [(v, n) for v, n, _ in postgresql]
    assert [v for v, _, _ in sqlite] == list(range(1, len(sqlite) + 1))


@pytest.mark.backends("sqlite")
def test_every_tenant_table_is_keyed_by_tenant(core):
    core.tenant("acme").get_tools()
    with sqlite3.connect(core.home / "mt.db") as conn:
        for table in ("tools", "llms", "runs"):
            columns = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
            assert "tenant_id" in columns
            primary = [row[1] for row in sorted(conn.execute(f"PRAGMA table_info({table})"), key=lambda r: r[5]) if row[5]]
            assert primary == ["tenant_id", "id"]


@pytest.mark.backends("postgresql")
def test_every_tenant_table_is_keyed_by_tenant_on_postgresql(core):
    core.tenant("acme").get_tools()
    for table in ("tools", "llms", "runs"):
        primary = raw_sql(core, "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
                          " AND a.attnum = ANY(i.indkey) WHERE i.indrelid = ?::regclass AND i.indisprimary"
                          " ORDER BY array_position(i.indkey, a.attnum)", (table,))
        assert [row[0] for row in primary] == ["tenant_id", "id"]


@pytest.mark.backends("sqlite")
def test_an_existing_sqlite_database_migrates_on(tmp_path):
    """A database made by the previous release (version 5) is migrated to the current schema on open."""
    path = tmp_path / "home" / "mt.db"
    path.parent.mkdir()
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                     " applied_at TEXT NOT NULL)")
        for version, name, sql in migrations("sqlite")[:5]:
            for statement in split_sql(sql):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?, 'then')", (version, name))
        conn.execute("INSERT INTO tenants VALUES ('acme', '2024-01-01T00:00:00+00:00')")
        conn.execute("INSERT INTO runs (tenant_id, id, llm_id, tool_ids, query, agent_type, status, started_at)"
                     " VALUES ('acme', 'run_old', 'llm_x', '[]', 'q', 'code', 'running', '2024-01-01T00:00:00+00:00')")
    core = MTCore(settings=make_settings(path.parent, database_url=f"sqlite:///{path}"))
    assert [v for v, _ in core.storage.schema_versions()] == list(range(1, len(migrations("sqlite")) + 1))
    # the run its dead process left 'running' a year ago has no owner recorded: its deadline is start + 1 h
    run = core.tenant("acme").get_run("run_old")
    assert run["status"] == "failed" and "deadline" in run["error"]
    core.close()


def test_database_url_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("MT_DATABASE_URL", "postgresql://mt:hunter2-password@db.internal:5432/mt")
    settings = Settings.from_env(dotenv=False)
    assert settings.database_url == "postgresql://mt:hunter2-password@db.internal:5432/mt"
    assert settings.database_path is None
    assert "hunter2" not in repr(settings)
    monkeypatch.setenv("MT_DATABASE_URL", "mysql://nope")
    with pytest.raises(ValidationError, match="database_url: must start with sqlite:/// or postgresql://"):
        Settings.from_env(dotenv=False)
    elsewhere = Settings(home=tmp_path / "home", database_url=f"sqlite:///{tmp_path}/db/mt.db")
    assert elsewhere.database_path == tmp_path / "db" / "mt.db"
    assert Settings(home=tmp_path / "home").database_path == tmp_path / "home" / "mt.db"


@pytest.mark.backends("sqlite")
def test_a_sqlite_url_outside_the_data_directory(tmp_path):
    url = f"sqlite:///{tmp_path}/elsewhere/data.db"
    core = MTCore(tmp_path / "home", settings=make_settings(tmp_path / "home"), database_url=url)
    core.tenant("acme").add_llm(base_url="http://127.0.0.1:9/v1", api_key="sk-elsewhere-0000000", model_name="m")
    assert (tmp_path / "elsewhere" / "data.db").is_file()
    assert not (tmp_path / "home" / "mt.db").exists()
    from mt_core.sandbox.local import hidden_paths

    assert (tmp_path / "elsewhere").absolute() in hidden_paths(core.settings)
    core.close()


def test_import_opens_nothing_and_loads_no_smolagents(tmp_path):
    code = (
        "import sys, mt_core\n"
        "assert 'smolagents' not in sys.modules, 'smolagents imported'\n"
        "assert 'sqlite3' not in sys.modules, 'sqlite3 imported'\n"
        "assert 'psycopg' not in sys.modules, 'psycopg imported'\n"
        "assert 'mt_core.plugins' not in sys.modules, 'plugins loaded'\n"
        "mt_core.Settings\n"
        "assert 'smolagents' not in sys.modules\n"
        "core = mt_core.MTCore()\n"
        "core.tenant('acme').get_llms()\n"
        "assert 'psycopg' not in sys.modules, 'psycopg imported for SQLite'\n"
        "print('clean')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
        env={"MT_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin", "MT_LOAD_PLUGINS": ""},
    )
    assert out.stdout.strip() == "clean", out.stderr


def test_nothing_is_created_until_first_use(tmp_path):
    core = MTCore(tmp_path / "home")
    assert not (tmp_path / "home").exists()
    core.tenant("acme")
    assert not (tmp_path / "home").exists()


@pytest.mark.backends("sqlite")
def test_the_wheel_and_the_editable_install_ship_the_migrations(tmp_path):
    from importlib import resources

    # the editable install of this checkout reads them from the top-level database/ folder
    assert Path(str(resources.files("mt_core.database"))).resolve() == (ROOT / "database").resolve()
    # a built wheel holds them inside the package, and an installation of it finds them
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                          "--wheel-dir", str(tmp_path / "dist"), str(ROOT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    wheel = next((tmp_path / "dist").glob("mt_core-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for dialect in ("sqlite", "postgresql"):
        for version, name, _ in migrations(dialect):
            expected = "schema.sql" if version == 1 else f"migrations/{version:04d}_{name}.sql"
            assert f"mt_core/database/{dialect}/{expected}" in names
    site = tmp_path / "site"
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                          str(wheel)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    check = ("import mt_core, sys; from mt_core.storage.migrations import migrations\n"
             f"assert mt_core.__file__.startswith({str(site)!r}), mt_core.__file__\n"
             "print(len(migrations('sqlite')), len(migrations('postgresql')))")
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert out.stdout.split() == [str(len(migrations("sqlite")))] * 2, out.stderr
