"""`ingest keys create|list|revoke`: the JSON API's keys, kept hashed in the store.

A running daemon reloads the keys every half second: a key made or revoked here is in force
on every channels process within a second, without a restart.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from channels.web_access import SCOPES  # a few constants and dataclasses: quick to import

if TYPE_CHECKING:
    from ingest.settings import Settings

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def register(main: click.Group, settings_option: Any, load: Callable[[Path], Settings]) -> None:
    """Add the `keys` group to the CLI."""

    @main.group()
    def keys() -> None:
        """API keys for the JSON API: make one per integration, list, revoke."""

    @keys.command("create")
    @settings_option
    @click.argument("name")
    @click.option(
        "--scope",
        "scopes",
        type=click.Choice(SCOPES),
        multiple=True,
        help="What the key may submit: web (messages from customers, the default), logged "
        "(contacts agents log); repeat for both.",
    )
    @click.option("--rate-limit", type=click.IntRange(min=1), help="Its own requests per window.")
    def keys_create(
        settings_path: Path, name: str, scopes: tuple[str, ...], rate_limit: int | None
    ) -> None:
        """Make a key named NAME and print it: the only time it is shown (the store keeps a
        hash)."""
        if not NAME.match(name):
            raise click.BadParameter("letters, digits and . _ - (up to 100)", param_hint="NAME")
        from ingest.store_ops import in_store

        key = in_store(load(settings_path), _create, name, scopes or ("web",), rate_limit)
        click.echo(key)
        click.echo(
            f"key {name!r} made with scope {', '.join(sorted(set(scopes or ('web',))))}; "
            "it is not shown again",
            err=True,
        )

    @keys.command("list")
    @settings_option
    def keys_list(settings_path: Path) -> None:
        """Show every key: name, scopes, rate limit, created, last used, revoked."""
        from dispatcher.access import keys as stored
        from ingest.store_ops import read_store

        records = read_store(load(settings_path), stored.listed)
        rows = [("NAME", "PREFIX", "SCOPES", "LIMIT", "CREATED", "LAST USED", "REVOKED")]
        for record in records:
            rows.append(
                (
                    record.name,
                    record.prefix + "...",
                    ",".join(record.scopes),
                    str(record.rate_limit or "default"),
                    _when(record.created_at),
                    _when(record.last_used_at),
                    _when(record.revoked_at),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            click.echo(
                "  ".join(
                    cell.ljust(width) for cell, width in zip(row, widths, strict=True)
                ).rstrip()
            )

    @keys.command("revoke")
    @settings_option
    @click.argument("name")
    def keys_revoke(settings_path: Path, name: str) -> None:
        """Revoke the key NAME: refused by every running process within a second."""
        from ingest.store_ops import in_store

        done = in_store(load(settings_path), _revoke, name)
        click.echo(f"key {name!r} revoked" if done else f"key {name!r} was already revoked")


def _create(session: Any, name: str, scopes: tuple[str, ...], rate_limit: int | None) -> str:
    from dispatcher.access import keys as stored

    try:
        return str(stored.create(session, name, scopes, rate_limit, _now()))
    except stored.KeyProblem as error:
        raise click.ClickException(str(error)) from None


def _revoke(session: Any, name: str) -> bool:
    from dispatcher.access import keys as stored

    try:
        return bool(stored.revoke(session, name, _now()))
    except stored.KeyProblem as error:
        raise click.ClickException(str(error)) from None


def _now() -> datetime:
    from datetime import UTC

    return datetime.now(UTC)


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ") if moment else "-"
