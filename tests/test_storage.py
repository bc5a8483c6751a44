"""The SQLite file: schema, migrations, and what import does not do."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

from mt_core import MTCore
from mt_core.storage import open_storage


def test_schema_and_migrations_are_recorded_once(core):
    core.tenant("acme").get_tools()
    versions = core.storage.schema_versions()
    assert versions[0] == (1, "schema")
    assert [v for v, _ in versions] == sorted({v for v, _ in versions})
    # opening the same file again applies nothing new
    again = open_storage(core.home / "mt.db")
    assert again.schema_versions() == versions
    with sqlite3.connect(core.home / "mt.db") as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"tenants", "tools", "llms", "runs", "schema_migrations"} <= tables
        assert conn.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0] == len(versions)


def test_every_tenant_table_is_keyed_by_tenant(core):
    core.tenant("acme").get_tools()
    with sqlite3.connect(core.home / "mt.db") as conn:
        for table in ("tools", "llms", "runs"):
            columns = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
            assert "tenant_id" in columns
            primary = [row[1] for row in sorted(conn.execute(f"PRAGMA table_info({table})"), key=lambda r: r[5]) if row[5]]
            assert primary == ["tenant_id", "id"]


def test_import_opens_nothing_and_loads_no_smolagents(tmp_path):
    code = (
        "import sys, mt_core\n"
        "assert 'smolagents' not in sys.modules, 'smolagents imported'\n"
        "assert 'sqlite3' not in sys.modules, 'sqlite3 imported'\n"
        "assert 'mt_core.plugins' not in sys.modules, 'plugins loaded'\n"
        "mt_core.Settings\n"
        "assert 'smolagents' not in sys.modules\n"
        "print('clean')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
        env={"MT_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"},
    )
    assert out.stdout.strip() == "clean", out.stderr
    assert not (tmp_path / "home").exists()


def test_nothing_is_created_until_first_use(tmp_path):
    core = MTCore(tmp_path / "home")
    assert not (tmp_path / "home").exists()
    core.tenant("acme")
    assert not (tmp_path / "home").exists()
