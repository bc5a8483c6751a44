"""The ``mt`` command: inspect plugins, tools, LLMs and runs; plugins add their own subcommands.

:func:`main` builds one :class:`~mt_core.core.MTCore` from ``--home`` and the environment before
anything else, lets the plugins of that installation add their commands, and hands the core to
every command as click's context object (``ctx.obj``; ``@click.pass_obj`` receives it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import click

from .core import DEFAULT_TENANT, MTCore
from .errors import MTError

pass_core = click.make_pass_decorator(MTCore)


def dump_json(value: Any) -> str:
    """``value`` as indented JSON, non-ASCII characters as they are (``…``, not ``\\u2026``)."""
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)


def _emit(rows: list[dict[str, Any]], columns: list[str], as_json: bool) -> None:
    """Print rows as JSON or as an aligned table."""
    if as_json:
        click.echo(dump_json(rows))
        return
    if not rows:
        click.echo("(none)")
        return
    last = len(columns) - 1  # the last column (description, error) is printed whole
    cells = [[_cell(row.get(column), whole=i == last) for i, column in enumerate(columns)] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    click.echo("  ".join(column.ljust(width) for column, width in zip(columns, widths)).rstrip())
    for line in cells:
        click.echo("  ".join(value.ljust(width) for value, width in zip(line, widths)).rstrip())


def _cell(value: Any, *, whole: bool = False) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(item) for item in value)
    if isinstance(value, dict):
        return ", ".join(value)
    text = "" if value is None else str(value).replace("\n", " ")
    return text if whole or len(text) <= 60 else text[:59] + "…"


tenant_option = click.option("--tenant", "-t", default=DEFAULT_TENANT, show_default=True, help="Tenant name.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
"""The ``--json`` flag of every listing command; plugin commands use it too (one wording)."""


@click.group()
@click.option(
    "--home", envvar="MT_HOME", type=click.Path(file_okay=False),
    help="Data directory (default: MT_HOME, else ./.mt in the current directory).",
)
@click.version_option(package_name="mt-core")
@click.pass_context
def cli(ctx: click.Context, home: str | None) -> None:
    """mt-core: multi-tenant agent tools, LLMs and runs."""
    if ctx.obj is None:  # invoked without main(), e.g. by click's CliRunner
        from .api import get_core

        ctx.obj = get_core() if home is None else MTCore(home)


@cli.command()
@json_option
@pass_core
def plugins(core: MTCore, as_json: bool) -> None:
    """List every plugin that loaded or failed, with its hooks, version and error."""
    infos = [info.as_dict() for info in core.plugins.plugin_list()]  # failures are in the table
    _emit(infos, ["name", "distribution", "version", "hooks", "error"], as_json)


@cli.group()
def tools() -> None:
    """A tenant's tools."""


@tools.command("list")
@tenant_option
@json_option
@pass_core
def tools_list(core: MTCore, tenant: str, as_json: bool) -> None:
    """List the tools a tenant can use (and enabled package tools that are unavailable, with why)."""
    rows = core.tenant(tenant).get_tools()
    if not as_json:
        rows = [
            row if row.get("available", True)
            else {**row, "description": f"UNAVAILABLE: {row.get('unavailable_reason')}"}
            for row in rows
        ]
    _emit(rows, ["id", "name", "origin", "output_type", "description"], as_json)


@tools.command("catalog")
@json_option
@pass_core
def tools_catalog(core: MTCore, as_json: bool) -> None:
    """List the package tools installed plugins provide (enable them per tenant)."""
    _emit(core.package_tools(), ["name", "distribution", "version", "available", "description"], as_json)


@tools.command("enable")
@click.argument("name")
@tenant_option
@pass_core
def tools_enable(core: MTCore, name: str, tenant: str) -> None:
    """Let a tenant use the package tool NAME."""
    click.echo(core.tenant(tenant).enable_package_tool(name))


@tools.command("disable")
@click.argument("name")
@tenant_option
@pass_core
def tools_disable(core: MTCore, name: str, tenant: str) -> None:
    """Stop a tenant from using the package tool NAME."""
    core.tenant(tenant).disable_package_tool(name)
    click.echo(f"disabled {name} for {tenant}")


@cli.group()
def llms() -> None:
    """A tenant's LLM configurations (keys always masked)."""


@llms.command("list")
@tenant_option
@json_option
@pass_core
def llms_list(core: MTCore, tenant: str, as_json: bool) -> None:
    """List a tenant's LLM configurations."""
    _emit(core.tenant(tenant).get_llms(), ["id", "name", "provider", "model_name", "base_url", "api_key"], as_json)


@cli.group()
def runs() -> None:
    """A tenant's run records."""


@runs.command("list")
@tenant_option
@click.option("--limit", default=20, show_default=True, help="How many, newest first.")
@json_option
@pass_core
def runs_list(core: MTCore, tenant: str, limit: int, as_json: bool) -> None:
    """List a tenant's most recent runs."""
    from .prices import format_usd

    rows = core.tenant(tenant).get_runs(limit)
    if not as_json:
        rows = [{**row, "cost_usd": format_usd(row["cost_usd"])} for row in rows]
    _emit(rows, ["id", "status", "executor", "duration_ms", "input_tokens", "output_tokens", "cost_usd", "error"],
          as_json)


def _add_show_and_delete(group: click.Group, kind: str, show: str, delete: str | None) -> None:
    """Add ``show ID`` (and ``delete ID``) to ``group``, calling the tenant method named."""

    @group.command("show", help=f"Show one of a tenant's {kind}s as JSON.")
    @click.argument("object_id")
    @tenant_option
    @pass_core
    def show_command(core: MTCore, object_id: str, tenant: str) -> None:
        click.echo(dump_json(getattr(core.tenant(tenant), show)(object_id)))

    if delete is not None:

        @group.command("delete", help=f"Delete one of a tenant's {kind}s.")
        @click.argument("object_id")
        @tenant_option
        @pass_core
        def delete_command(core: MTCore, object_id: str, tenant: str) -> None:
            getattr(core.tenant(tenant), delete)(object_id)
            click.echo(f"deleted {object_id}")


_add_show_and_delete(llms, "LLM configuration", "get_llm_config", "delete_llm")


@tools.command("show")
@click.argument("tool_id")
@click.option("--version", "version", type=int, default=None, help="A version (default: the latest).")
@tenant_option
@pass_core
def tools_show(core: MTCore, tool_id: str, version: int | None, tenant: str) -> None:
    """Show one of a tenant's tools as JSON (its source, settings, secrets masked)."""
    click.echo(dump_json(core.tenant(tenant).get_tool(tool_id, version)))


@tools.command("versions")
@click.argument("tool_id")
@tenant_option
@json_option
@pass_core
def tools_versions(core: MTCore, tool_id: str, tenant: str, as_json: bool) -> None:
    """List the versions of one of a tenant's tools."""
    _emit(core.tenant(tenant).get_tool_versions(tool_id), ["version", "created_at", "source_sha256"], as_json)


@tools.command("delete")
@click.argument("tool_id")
@tenant_option
@pass_core
def tools_delete(core: MTCore, tool_id: str, tenant: str) -> None:
    """Delete one of a tenant's tools (every version)."""
    core.tenant(tenant).delete_tool(tool_id)
    click.echo(f"deleted {tool_id}")


_add_show_and_delete(runs, "run", "get_run", None)


@cli.group()
def limits() -> None:
    """A tenant's limits."""


@limits.command("show")
@tenant_option
@pass_core
def limits_show(core: MTCore, tenant: str) -> None:
    """Show a tenant's limits as JSON."""
    click.echo(dump_json(core.tenant(tenant).limits().as_dict()))


@limits.command("set")
@tenant_option
@click.argument("assignments", nargs=-1, required=True)
@pass_core
def limits_set(core: MTCore, tenant: str, assignments: tuple[str, ...]) -> None:
    """Set a tenant's limits and budgets from NAME=NUMBER assignments; NAME=default restores a
    default (for a budget: none). Budgets in US dollars take decimals.

    \b
    Example:
      mt limits set --tenant acme max_tools=50 runs_per_minute=10
      mt limits set --tenant acme budget_usd_per_day=5.50 budget_usd_per_month=100 tokens_per_day=2000000
    """
    values: dict[str, int | float | None] = {}
    for assignment in assignments:
        name, sep, value = assignment.partition("=")
        try:
            number = None if value == "default" else int(value) if value.isdigit() else float(value)
        except ValueError:
            number = float("nan")
        if not sep or (number is not None and not math.isfinite(number)):
            raise click.BadParameter(f"{assignment!r} is not NAME=NUMBER or NAME=default")
        values[name] = number
    click.echo(dump_json(core.tenant(tenant).set_limits(**values).as_dict()))


USAGE_COLUMNS = ["runs", "calls", "input_tokens", "output_tokens", "cached_tokens", "cost_usd", "unpriced_calls"]
USAGE_KEYS = {"day": ["day"], "model": ["provider", "model"], "llm": ["llm_id", "llm_name"],
              "run": ["run_id", "status", "started_at"], "tool": ["tool_id", "name"]}


@cli.command()
@click.option("--tenant", "-t", default=None, help=f"Tenant name (default: {DEFAULT_TENANT}).")
@click.option("--all-tenants", is_flag=True, help="Every tenant's usage, a row per tenant and group (operators).")
@click.option("--since", default=None, help="First day (YYYY-MM-DD) or time (ISO 8601, UTC); default: this month.")
@click.option("--until", default=None, help="Last day included (YYYY-MM-DD) or time (ISO 8601, UTC); default: now.")
@click.option("--by", "group_by", type=click.Choice(["day", "model", "llm", "tool", "run"]), default="day",
              show_default=True, help="What a row is.")
@json_option
@pass_core
def usage(core: MTCore, tenant: str | None, all_tenants: bool, since: str | None, until: str | None, group_by: str,
          as_json: bool) -> None:
    """Show LLM calls, tokens and cost (or tool calls, with --by tool) over a time window.

    \b
    Example:
      mt usage --tenant acme --since 2026-11-01 --by day
      mt usage --all-tenants --by model --json
    """
    from .prices import format_usd

    if all_tenants and tenant is not None:
        raise click.BadParameter("give --tenant or --all-tenants, not both")
    if all_tenants:
        rows = core.usage_all_tenants(since=since, until=until, group_by=group_by)
    else:
        rows = core.tenant(tenant or DEFAULT_TENANT).get_usage(since=since, until=until, group_by=group_by)
    keys = (["tenant"] if all_tenants else []) + USAGE_KEYS[group_by]
    measures = ["runs", "calls", "errors", "duration_ms"] if group_by == "tool" else USAGE_COLUMNS
    if as_json:
        _emit(rows, keys + measures, True)
        return
    shown = [{**row, "cost_usd": format_usd(row["cost_usd"])} if "cost_usd" in row else row for row in rows]
    _emit(shown, keys + measures, False)
    if rows and group_by != "tool":
        cost = sum(row["cost_usd"] or 0.0 for row in rows)
        unpriced = sum(row["unpriced_calls"] for row in rows)
        tokens = sum(row["input_tokens"] + row["output_tokens"] for row in rows)
        note = f"; {unpriced} calls have no known price and are not counted (set prices= on their LLM)" \
            if unpriced else ""
        click.echo(f"total: {tokens:,} tokens, {format_usd(cost)}{note}")


@cli.group()
def keys() -> None:
    """Master keys for secrets at rest."""


@keys.command("generate")
def keys_generate() -> None:
    """Print a new random master key for MT_MASTER_KEY."""
    from .secrets import generate_master_key

    click.echo(generate_master_key())


@keys.command("rotate")
@click.option("--finish", is_flag=True,
              help="End a rotation: re-encrypt stragglers, then forget the previous key (key file mode).")
@click.option("--drop-key-file", is_flag=True,
              help="With MT_MASTER_KEY set: move an installation off its key file (deleted once unused).")
@pass_core
def keys_rotate(core: MTCore, finish: bool, drop_key_file: bool) -> None:
    """Re-encrypt every stored API key under a new master key, and say which key to keep.

    \b
    Key file (MT_MASTER_KEY unset): mt keys rotate
      writes a new key to <MT_HOME>/master.key, keeps the old one in
      master.key.previous, re-encrypts; then `mt keys rotate --finish`.
    MT_MASTER_KEY: MT_MASTER_KEY=new MT_MASTER_KEY_PREVIOUS=old mt keys rotate
    """
    from .rotation import finish_rotation, rotate_master_key

    report = finish_rotation(core) if finish else rotate_master_key(core, drop_key_file=drop_key_file)
    click.echo(report.summary())


@cli.group()
def db() -> None:
    """The database (SQLite or PostgreSQL)."""


@db.command("copy")
@click.option("--from", "source", required=True, help="The database to copy: sqlite:///path or postgresql://...")
@click.option("--to", "target", required=True, help="The database to copy into (migrated first).")
@click.option("--into-non-empty", is_flag=True, help="Copy into a database that holds data (rows with the same"
              " keys are overwritten).")
@pass_core
def db_copy(core: MTCore, source: str, target: str, into_non_empty: bool) -> None:
    """Copy a whole installation between databases and verify it (counts, every key decrypts with
    this installation's master key: MT_MASTER_KEY or MT_HOME/master.key). Safe to run again."""
    from .storage.copy import copy_databases

    report = copy_databases(source, target, core.settings, into_non_empty=into_non_empty)
    click.echo("\n".join(report.lines()))


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """Warnings of an ``mt`` command: one line, without the Python class or file."""
    click.echo(f"Warning: {message}", err=True)


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``mt`` console script: build the core, add plugin commands, run, report errors."""
    args = sys.argv[1:] if args is None else list(args)
    core = None
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            core = MTCore(_home_argument(args))  # --home and the environment first; nothing is opened yet
            with _plugin_warnings(shown=_command_name(args) != "plugins"):  # `mt plugins` tabulates them
                core.plugins.notify("mt_register_commands", cli=cli)
            cli.main(args, prog_name="mt", obj=core, standalone_mode=False)
        except click.exceptions.Abort:
            raise SystemExit(1) from None
        except click.ClickException as exc:
            exc.show()
            raise SystemExit(exc.exit_code) from None
        except MTError as exc:
            click.echo(f"Error: {exc}", err=True)
            raise SystemExit(1) from None
        finally:
            if core is not None:
                core.close()


def _home_argument(args: list[str]) -> str | None:
    """``--home`` (or ``MT_HOME``) as the ``mt`` group parses it, without running any command."""
    with cli.make_context("mt", list(args), resilient_parsing=True) as ctx:
        return ctx.params.get("home")


def _command_name(args: list[str]) -> str | None:
    """The subcommand named in ``args`` (the first word that is not an option of the ``mt`` group)."""
    words = iter(args)
    for word in words:
        if word == "--home":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


@contextlib.contextmanager
def _plugin_warnings(*, shown: bool) -> Iterator[None]:
    """While plugins load, their failures are logged once each; hidden when the command lists them anyway."""
    plugin_logger = logging.getLogger("mt_core.plugins")
    quiet = not shown and not plugin_logger.disabled
    plugin_logger.disabled = plugin_logger.disabled or quiet
    try:
        yield
    finally:
        if quiet:
            plugin_logger.disabled = False
