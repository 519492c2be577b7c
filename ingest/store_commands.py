"""`ingest db ...` and `ingest customers ...`: the dispatcher's store from the command line.

Only the commands are declared here; what they do is in `store_ops.py`, imported when one
runs, so that the rest of the CLI starts without the SQL stack.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from ingest.settings import Settings


def register(main: click.Group, settings_option: Any, load: Callable[[Path], Settings]) -> None:
    """Add the `db` and `customers` groups to the CLI."""
    _register_db(main, settings_option, load)
    _register_customers(main, settings_option, load)


def _register_db(main: click.Group, settings_option: Any, load: Callable[[Path], Settings]) -> None:
    @main.group()
    def db() -> None:
        """The dispatcher's SQL store: migrations and pruning."""

    @db.command("upgrade")
    @settings_option
    def db_upgrade(settings_path: Path) -> None:
        """Apply the migrations the store is missing."""
        from ingest import store_ops

        click.echo(store_ops.db_upgrade(load(settings_path)))

    @db.command("status")
    @settings_option
    def db_status(settings_path: Path) -> None:
        """Show the store's migration and the one this version needs."""
        from ingest import store_ops

        click.echo(store_ops.db_status(load(settings_path)))

    @db.command("prune")
    @settings_option
    def db_prune(settings_path: Path) -> None:
        """Prune now what retention lets go (dispatchers also do it every prune_interval_s)."""
        from ingest import store_ops

        click.echo(store_ops.db_prune(load(settings_path)))


def _register_customers(
    main: click.Group, settings_option: Any, load: Callable[[Path], Settings]
) -> None:
    @main.group()
    def customers() -> None:
        """The customer directory: import, look up, merge and unmerge."""

    @customers.command("import")
    @settings_option
    @click.argument("csv_file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
    @click.option("--region", help="Region for phone numbers without a country code (DE, US).")
    def customers_import(settings_path: Path, csv_file: Path, region: str | None) -> None:
        """Upsert the customers of CSV_FILE by external id (idempotent; see the README)."""
        from ingest import store_ops

        store_ops.customers_import(load(settings_path), csv_file, region)

    @customers.command("show")
    @settings_option
    @click.argument("customer")
    def customers_show(settings_path: Path, customer: str) -> None:
        """Show a customer (id, ext:EXTERNAL-ID or KIND:ADDRESS) as JSON."""
        from ingest import store_ops

        click.echo(store_ops.customers_show(load(settings_path), customer))

    @customers.command("merge")
    @settings_option
    @click.argument("kept")
    @click.argument("merged")
    @click.option("--reason", help="Why: kept in the audit record.")
    def customers_merge(settings_path: Path, kept: str, merged: str, reason: str | None) -> None:
        """Merge customer MERGED into KEPT (each an id, ext:EXTERNAL-ID or KIND:ADDRESS)."""
        from ingest import store_ops

        click.echo(store_ops.customers_merge(load(settings_path), kept, merged, reason))

    @customers.command("unmerge")
    @settings_option
    @click.argument("merge_id", type=int)
    @click.option("--reason", help="Why: kept in the audit record.")
    def customers_unmerge(settings_path: Path, merge_id: int, reason: str | None) -> None:
        """Undo merge MERGE_ID (shown by merge and by `customers show`)."""
        from ingest import store_ops

        click.echo(store_ops.customers_unmerge(load(settings_path), merge_id, reason))
