"""The ``mt`` command: inspect plugins, tools, LLMs and runs; plugins add their own subcommands."""

from __future__ import annotations

import json
from typing import Any

import click

from .api import configure, get_core
from .core import DEFAULT_TENANT
from .errors import MTError


def _emit(rows: list[dict[str, Any]], columns: list[str], as_json: bool) -> None:
    """Print rows as JSON or as an aligned table."""
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
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


@click.group()
@click.option("--home", envvar="MT_HOME", type=click.Path(file_okay=False), help="Data directory (MT_HOME).")
@click.version_option(package_name="mt-core")
def cli(home: str | None) -> None:
    """mt-core: multi-tenant agent tools, LLMs and runs."""
    if home:
        configure(home)


@cli.command()
@json_option
def plugins(as_json: bool) -> None:
    """List every plugin that loaded or failed, with its hooks, version and error."""
    infos = [info.as_dict() for info in get_core().plugins.plugin_list()]  # failures are in the table
    _emit(infos, ["name", "distribution", "version", "hooks", "error"], as_json)


@cli.group()
def tools() -> None:
    """A tenant's tools."""


@tools.command("list")
@tenant_option
@json_option
def tools_list(tenant: str, as_json: bool) -> None:
    """List the tools a tenant can use."""
    _emit(get_core().tenant(tenant).get_tools(), ["id", "name", "origin", "output_type", "description"], as_json)


@tools.command("catalog")
@json_option
def tools_catalog(as_json: bool) -> None:
    """List the package tools installed plugins provide (enable them per tenant)."""
    _emit(get_core().package_tools(), ["name", "distribution", "version", "available", "description"], as_json)


@tools.command("enable")
@click.argument("name")
@tenant_option
def tools_enable(name: str, tenant: str) -> None:
    """Let a tenant use the package tool NAME."""
    click.echo(get_core().tenant(tenant).enable_package_tool(name))


@tools.command("disable")
@click.argument("name")
@tenant_option
def tools_disable(name: str, tenant: str) -> None:
    """Stop a tenant from using the package tool NAME."""
    get_core().tenant(tenant).disable_package_tool(name)
    click.echo(f"disabled {name} for {tenant}")


@cli.group()
def llms() -> None:
    """A tenant's LLM configurations (keys always masked)."""


@llms.command("list")
@tenant_option
@json_option
def llms_list(tenant: str, as_json: bool) -> None:
    """List a tenant's LLM configurations."""
    _emit(get_core().tenant(tenant).get_llms(), ["id", "name", "provider", "model_name", "base_url", "api_key"], as_json)


@cli.group()
def runs() -> None:
    """A tenant's run records."""


@runs.command("list")
@tenant_option
@click.option("--limit", default=20, show_default=True, help="How many, newest first.")
@json_option
def runs_list(tenant: str, limit: int, as_json: bool) -> None:
    """List a tenant's most recent runs."""
    rows = get_core().tenant(tenant).get_runs(limit)
    _emit(rows, ["id", "status", "executor", "duration_ms", "input_tokens", "output_tokens", "error"], as_json)


def _add_show_and_delete(group: click.Group, kind: str, show: str, delete: str | None) -> None:
    """Add ``show ID`` (and ``delete ID``) to ``group``, calling the tenant method named."""

    @group.command("show", help=f"Show one of a tenant's {kind}s as JSON.")
    @click.argument("object_id")
    @tenant_option
    def show_command(object_id: str, tenant: str) -> None:
        click.echo(json.dumps(getattr(get_core().tenant(tenant), show)(object_id), indent=2, default=str))

    if delete is not None:

        @group.command("delete", help=f"Delete one of a tenant's {kind}s.")
        @click.argument("object_id")
        @tenant_option
        def delete_command(object_id: str, tenant: str) -> None:
            getattr(get_core().tenant(tenant), delete)(object_id)
            click.echo(f"deleted {object_id}")


_add_show_and_delete(tools, "tool", "get_tool", "delete_tool")
_add_show_and_delete(llms, "LLM configuration", "get_llm_config", "delete_llm")
_add_show_and_delete(runs, "run", "get_run", None)


@cli.group()
def limits() -> None:
    """A tenant's limits."""


@limits.command("show")
@tenant_option
def limits_show(tenant: str) -> None:
    """Show a tenant's limits as JSON."""
    click.echo(json.dumps(get_core().tenant(tenant).limits().as_dict(), indent=2))


@limits.command("set")
@tenant_option
@click.argument("assignments", nargs=-1, required=True)
def limits_set(tenant: str, assignments: tuple[str, ...]) -> None:
    """Set limits, e.g. ``mt limits set --tenant acme max_tools=50 runs_per_minute=10``
    (``name=default`` restores a default)."""
    values: dict[str, int | None] = {}
    for assignment in assignments:
        name, sep, value = assignment.partition("=")
        if not sep or not (value == "default" or value.isdigit()):
            raise click.BadParameter(f"{assignment!r} is not NAME=NUMBER or NAME=default")
        values[name] = None if value == "default" else int(value)
    click.echo(json.dumps(get_core().tenant(tenant).set_limits(**values).as_dict(), indent=2))


@cli.group()
def keys() -> None:
    """Master keys for secrets at rest."""


@keys.command("generate")
def keys_generate() -> None:
    """Print a new random master key for MT_MASTER_KEY."""
    from .secrets import generate_master_key

    click.echo(generate_master_key())


@keys.command("rotate")
def keys_rotate() -> None:
    """Re-encrypt every stored API key under MT_MASTER_KEY (old key in MT_MASTER_KEY_PREVIOUS)."""
    counts = get_core().rotate_secrets()
    click.echo(f"rotated {counts['rotated']} secrets ({counts['skipped']} changed meanwhile and were left as they were)")


@cli.group()
def db() -> None:
    """The database (SQLite or PostgreSQL)."""


@db.command("copy")
@click.option("--from", "source", required=True, help="The database to copy: sqlite:///path or postgresql://...")
@click.option("--to", "target", required=True, help="The database to copy into (migrated first).")
@click.option("--into-non-empty", is_flag=True, help="Copy into a database that holds data (rows with the same"
              " keys are overwritten).")
def db_copy(source: str, target: str, into_non_empty: bool) -> None:
    """Copy a whole installation between databases and verify it (counts, every key decrypts with
    this installation's master key: MT_MASTER_KEY or MT_HOME/master.key). Safe to run again."""
    from .storage.copy import copy_databases

    report = copy_databases(source, target, get_core().settings, into_non_empty=into_non_empty)
    click.echo("\n".join(report.lines()))


def main() -> None:
    """Entry point of the ``mt`` console script: add plugin commands, run, report errors cleanly."""
    try:
        get_core().plugins.notify("mt_register_commands", cli=cli)
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        raise SystemExit(1) from None
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except MTError as exc:
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(1) from None
