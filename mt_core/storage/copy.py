"""Copy a whole installation from one database to another (``mt db copy``), e.g. from the
embedded SQLite file to PostgreSQL, through the storage interface's table-level export and import.

Every table is copied as stored (tenants, tools and all their versions, tool secrets, LLM
configurations with their ciphertexts untouched, limits, executor options, the package tool
catalog and its per-tenant enablement, runs) in one target transaction: all or nothing. Before
anything is written, every ciphertext of the source must decrypt with the installation's master
key; after, the rows of every table are counted on both sides and every ciphertext of the target
is decrypted again. A target that holds data is refused unless ``into_non_empty``; then rows with
the same keys are overwritten with the source's, so running the copy again is safe.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import DatabaseError, SecretError
from ..secrets import SecretBox, decode_master_key, secret_context
from .base import TABLES, Storage



@dataclass
class CopyReport:
    """What a copy did: rows read per table, rows in the target before and after, secrets checked."""

    read: dict[str, int] = field(default_factory=dict)
    before: dict[str, int] = field(default_factory=dict)
    after: dict[str, int] = field(default_factory=dict)
    source_now: dict[str, int] = field(default_factory=dict)
    secrets_checked: int = 0

    def lines(self) -> list[str]:
        """A table of the counts, and what was verified."""
        width = max(len(t) for t in TABLES)
        out = [f"{'table'.ljust(width)}  {'source':>8}  {'target before':>13}  {'target after':>12}"]
        for table in TABLES:
            out.append(f"{table.ljust(width)}  {self.read.get(table, 0):>8}  {self.before.get(table, 0):>13}"
                       f"  {self.after.get(table, 0):>12}")
        out.append(f"verified: every table's rows are in the target; {self.secrets_checked} secrets decrypt there"
                   " with this installation's master key")
        changed = [t for t in TABLES if self.source_now.get(t, 0) != self.read.get(t, 0)]
        if changed:
            out.append(f"note: the source changed while it was copied ({', '.join(changed)}); stop every process"
                       " that writes to it and copy again with --into-non-empty")
        return out


def check_secrets(storage: Storage, box: SecretBox, where: str) -> int:
    """Decrypt every ciphertext of ``storage``; how many. :class:`DatabaseError` names the first that fails."""
    checked = 0
    for secret in storage.secrets_not_under(""):  # under no key id: every one
        what = f"LLM {secret.owner_id}" if secret.kind == "llm" else f"secret {secret.name} of tool {secret.owner_id}"
        try:
            box.decrypt(secret.ciphertext, tenant=secret.tenant, context=secret_context(secret))
        except SecretError as exc:
            raise DatabaseError(
                f"the key of {what} (tenant {secret.tenant}) in the {where} does not decrypt with this"
                f" installation's master key ({exc}); set MT_MASTER_KEY (or MT_HOME to the data directory"
                " holding master.key) to the key of the installation being copied"
            ) from None
        checked += 1
    return checked


def copy_installation(source: Storage, target: Storage, box: SecretBox, *, into_non_empty: bool = False) -> CopyReport:
    """Copy every row of ``source`` into ``target`` and verify it (see the module's docstring)."""
    if source.schema_versions() != target.schema_versions():
        raise DatabaseError(
            f"the databases are at different schema versions (source {source.schema_versions()[-1][0]}, target"
            f" {target.schema_versions()[-1][0]}); open both with the same mt-core version"
        )
    report = CopyReport(before=target.count_rows())
    held = {table: n for table, n in report.before.items() if n}
    if held and not into_non_empty:
        described = ", ".join(f"{n} {table}" for table, n in held.items())
        raise DatabaseError(
            f"the target database already holds data ({described}); nothing was copied. Pass --into-non-empty"
            " to copy into it anyway: rows with the same keys are overwritten with the source's, the others are kept"
        )
    check_secrets(source, box, "source")

    def counted() -> Iterator[tuple[str, list[dict[str, Any]]]]:
        for table, rows in source.export_rows():
            report.read[table] = report.read.get(table, 0) + len(rows)
            yield table, rows

    target.import_rows(counted())
    report.after = target.count_rows()
    report.source_now = source.count_rows()
    for table in TABLES:
        read, after = report.read.get(table, 0), report.after.get(table, 0)
        if after < read or (not held and after != read):
            raise DatabaseError(f"verification failed: {table} has {after} rows in the target after copying {read}")
    report.secrets_checked = check_secrets(target, box, "target")
    return report


def installation_keys(settings: Any) -> SecretBox:
    """The installation's master keys (``MT_MASTER_KEY`` and ``MT_MASTER_KEY_PREVIOUS``, else its
    key files); never creates one."""
    from ..master_keys import KeyFiles

    previous = [decode_master_key(k, source="MT_MASTER_KEY_PREVIOUS") for k in settings.previous_master_keys]
    if settings.master_key:
        return SecretBox(decode_master_key(settings.master_key), previous=previous)
    files = KeyFiles(settings.home)
    if not files.exists():
        raise DatabaseError(
            f"no master key: set MT_MASTER_KEY, or MT_HOME to the data directory holding master.key (looked in"
            f" {settings.home}), so that the copy can check that every stored key still decrypts"
        )
    current, older = files.load()
    return SecretBox(current, previous=older + previous)


def copy_databases(source_url: str, target_url: str, settings: Any, *, into_non_empty: bool = False) -> CopyReport:
    """Open both databases (migrating each to this version's schema), copy, verify, close."""
    from . import open_storage, sqlite_path

    if source_url == target_url:
        raise DatabaseError("--from and --to name the same database")
    path = sqlite_path(source_url)
    if path is not None and not path.is_file():
        raise DatabaseError(f"there is no SQLite database at {path} to copy from (--from sqlite:///relative/path"
                            " or sqlite:////absolute/path)")
    box = installation_keys(settings)
    source, target = open_storage(source_url), open_storage(target_url)
    try:
        return copy_installation(source, target, box, into_non_empty=into_non_empty)
    finally:
        source.close()
        target.close()
