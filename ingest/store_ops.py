"""What `ingest db ...` and `ingest customers ...` do with the store (the commands themselves
are in `store_commands.py`, which imports this module only when one runs)."""

from __future__ import annotations

import asyncio
import getpass
import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from dispatcher.database import (
    StoreNotMigrated,
    create_engine,
    current_revision,
    head_revision,
    shown_url,
    upgrade,
)
from dispatcher.directory import DirectoryError, import_rows, read_directory
from dispatcher.identity import CustomerError, find_customer, merge, unmerge
from dispatcher.store import Store
from dispatcher.tables import Customer, Identity, IdentityMerge
from ingest.logs import configure_logging
from ingest.settings import Settings

T = TypeVar("T")


def _run(coroutine: Coroutine[Any, Any, T], settings: Settings) -> T:
    """Run one store operation; a store that cannot be used ends the command with one line."""
    configure_logging(settings.log)  # log lines (a migration, say) go to stderr, not stdout
    try:
        return asyncio.run(coroutine)
    except StoreNotMigrated as error:
        raise click.ClickException(str(error)) from None
    except (OSError, SQLAlchemyError) as error:
        shown = shown_url(settings.store.url)
        raise click.ClickException(f"the store at {shown} cannot be used: {error}") from None


async def _with_store(settings: Settings, work: Callable[..., T], *args: Any) -> T:
    store = await Store.open(settings.store.url, settings.store.auto_migrate)
    try:
        return await store.run(work, *args)
    finally:
        await store.close()


def in_store(settings: Settings, work: Callable[..., T], *args: Any) -> T:
    """Run `work(session, *args)` in one committed transaction of the store."""
    return _run(_with_store(settings, work, *args), settings)


def read_store(settings: Settings, work: Callable[..., T], *args: Any) -> T:
    """Run `work(session, *args)` against the store, for a command that only reads."""
    return _run(_with_store(settings, work, *args), settings)


def db_upgrade(settings: Settings) -> str:
    """Apply the migrations the store is missing; what was done."""

    async def go() -> tuple[str | None, str]:
        engine = create_engine(settings.store.url)
        try:
            return upgrade(engine)
        finally:
            engine.dispose()

    before, after = _run(go(), settings)
    shown = shown_url(settings.store.url)
    if before == after:
        return f"{shown}: already at {after}"
    return f"{shown}: migrated from {before or 'nothing'} to {after}"


def db_status(settings: Settings) -> str:
    async def go() -> str | None:
        engine = create_engine(settings.store.url)
        try:
            return current_revision(engine)
        finally:
            engine.dispose()

    current = _run(go(), settings)
    return f"store at {current or 'no revision'}; this version needs {head_revision()}"


def db_prune(settings: Settings) -> str:
    async def go() -> Any:
        store = await Store.open(settings.store.url, settings.store.auto_migrate)
        try:
            return await store.prune(settings.dispatcher.retention)
        finally:
            await store.close()

    pruned = _run(go(), settings)
    return (
        f"pruned {pruned.messages} messages, {pruned.fingerprints} fingerprints, "
        f"{pruned.counters} contact counters, {pruned.incident_bands} incident bands"
    )


def customers_import(settings: Settings, csv_file: Path, region: str | None) -> None:
    try:
        with csv_file.open(newline="", encoding="utf-8-sig") as lines:
            rows, errors = read_directory(lines, region)
    except (DirectoryError, UnicodeDecodeError) as error:
        raise click.ClickException(f"{csv_file}: {error}") from None
    summary = _run(_with_store(settings, import_rows, rows, f"import:{csv_file.name}"), settings)
    for line, message in sorted([*errors, *summary.errors]):
        click.echo(f"{csv_file}:{line}: {message}", err=True)
    summary.errors.extend(errors)
    click.echo(f"{csv_file}: {summary.line()}")
    if summary.errors:
        raise SystemExit(1)


def customers_show(settings: Settings, customer: str) -> str:
    shown = _run(_with_store(settings, _show, customer), settings)
    return json.dumps(shown, indent=2, ensure_ascii=False)


def customers_merge(settings: Settings, kept: str, merged: str, reason: str | None) -> str:
    return _run(_with_store(settings, _merge, kept, merged, reason), settings)


def customers_unmerge(settings: Settings, merge_id: int, reason: str | None) -> str:
    return _run(_with_store(settings, _unmerge, merge_id, reason), settings)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _merge(session: Session, kept: str, merged: str, reason: str | None) -> str:
    try:
        keep, other = find_customer(session, kept), find_customer(session, merged)
        record = merge(session, keep.id, other.id, _actor(), reason)
    except CustomerError as error:
        raise click.ClickException(str(error)) from None
    moved = json.loads(record.moved)
    return (
        f"merge {record.id}: customer {other.id} merged into {keep.id} "
        f"({len(moved['identities'])} identities moved)"
    )


def _unmerge(session: Session, merge_id: int, reason: str | None) -> str:
    try:
        record = unmerge(session, merge_id, _actor(), reason)
    except CustomerError as error:
        raise click.ClickException(str(error)) from None
    return (
        f"unmerge {record.id}: customer {record.merged_customer_id} separated from "
        f"{record.kept_customer_id} again (undoes merge {merge_id})"
    )


def _show(session: Session, ref: str) -> dict[str, Any]:
    try:
        customer = find_customer(session, ref)
    except CustomerError as error:
        raise click.ClickException(str(error)) from None
    members = list(session.scalars(select(Customer.id).where(Customer.merged_into == customer.id)))
    identities = session.scalars(
        select(Identity).where(Identity.customer_id == customer.id).order_by(Identity.id)
    )
    involved = [customer.id, *members]
    merges = session.scalars(
        select(IdentityMerge)
        .where(
            IdentityMerge.kept_customer_id.in_(involved)
            | IdentityMerge.merged_customer_id.in_(involved)
        )
        .order_by(IdentityMerge.id)
    )
    return {
        "id": customer.id,
        "external_id": customer.external_id,
        "name": customer.name,
        "organisation": customer.organisation,
        "tier": customer.tier,
        "is_customer": customer.is_customer,
        "known": customer.known,
        "merged": members,
        "identities": [
            {"kind": i.kind, "address": i.address, "origin": i.origin} for i in identities
        ],
        "merges": [
            {
                "id": m.id,
                "action": m.action,
                "kept": m.kept_customer_id,
                "merged": m.merged_customer_id,
                "actor": m.actor,
                "reason": m.reason,
                "at": m.at.isoformat(),
                "undone_by": m.undone_by,
            }
            for m in merges
        ],
    }
