"""A throwaway PostgreSQL server for the tests: the machine's own ``initdb`` and ``postgres``
(Debian's postgresql-15 package, or ``MT_PG_BIN``), run as an unprivileged user when the tests run
as root (``initdb`` refuses root), on a Unix socket in a temporary folder and no TCP port. One per
test session; each test gets fresh databases cloned from a migrated template."""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

TEMPLATE = "mt_template"


def find_bindir() -> Path | None:
    """Where ``initdb`` and ``postgres`` are: ``MT_PG_BIN``, Debian's newest, or ``pg_config --bindir``."""
    configured = os.environ.get("MT_PG_BIN")
    def major(folder: str) -> int:
        name = Path(folder).parent.name
        return int(name) if name.isdigit() else 0

    candidates = [configured] if configured else sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=major, reverse=True)
    if not configured and shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates.append(out.stdout.strip())
    for folder in candidates:
        if folder and (Path(folder) / "initdb").is_file() and (Path(folder) / "postgres").is_file():
            return Path(folder)
    return None


class PostgresServer:
    """One PostgreSQL cluster in a temporary folder, reached at ``url(dbname)``."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="mt-pg-"))
        self.process: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)
        self._as: dict[str, object] = {}
        if os.geteuid() == 0:
            account = _unprivileged_account()
            self._as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
            os.chown(self.root, account.pw_uid, account.pw_gid)

    def url(self, dbname: str = "postgres") -> str:
        """The URL of database ``dbname`` (as the superuser, over the Unix socket)."""
        return f"postgresql://postgres@/{dbname}?host={self.root}"

    def start(self, timeout: float = 60.0) -> "PostgresServer":
        """initdb and start the server; return once it accepts connections."""
        data = self.root / "data"
        log = self.root / "server.log"
        self._run([str(self.bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                   "--locale=C", "--no-sync"])
        with open(log, "ab") as output:
            self.process = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(data), "-k", str(self.root), "-c", "listen_addresses=",
                 "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                 "-c", "max_connections=500", "-c", "shared_buffers=64MB", "-c", "log_min_messages=warning"],
                stdout=output, stderr=subprocess.STDOUT, cwd=self.root, start_new_session=True,
                **self._as,  # type: ignore[arg-type]
            )
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                text = log.read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"PostgreSQL did not start:\n{text}")
            time.sleep(0.1)
        self._make_template()
        return self

    def _run(self, command: list[str]) -> None:
        out = subprocess.run(command, capture_output=True, text=True, cwd=self.root,
                             **self._as)  # type: ignore[arg-type]
        if out.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {out.stdout}\n{out.stderr}")

    def _ready(self) -> bool:
        import psycopg

        try:
            psycopg.connect(self.url(), connect_timeout=2).close()
            return True
        except psycopg.OperationalError:
            return False

    def _admin(self, *statements: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)  # type: ignore[arg-type]

    def _make_template(self) -> None:
        """A database with every migration applied, that test databases are cloned from."""
        from mt_core.storage import open_storage

        self._admin(f"CREATE DATABASE {TEMPLATE}")
        storage = open_storage(self.url(TEMPLATE))
        storage.schema_versions()
        storage.close()

    def create_database(self, *, migrated: bool = True) -> str:
        """A new database (migrated: a clone of the template; else empty); its URL."""
        name = f"mt_test_{os.getpid()}_{next(self._names)}"
        template = TEMPLATE if migrated else "template0"
        self._admin(f"CREATE DATABASE {name} TEMPLATE {template} STRATEGY file_copy")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by :meth:`create_database`, closing whatever is still connected."""
        name = url.split("/")[3].split("?")[0]
        self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its folder."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def _unprivileged_account() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("no unprivileged account (postgres or nobody) to run PostgreSQL as")
