"""What `ingest report` does: the window, the store opened for reading, the files written."""

from __future__ import annotations

import sys
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
from sqlalchemy.exc import SQLAlchemyError

from dispatcher.database import StoreNotMigrated, shown_url
from dispatcher.reports.model import ReportError, window_for
from dispatcher.reports.sql import reading_engine
from ingest.logs import configure_logging
from ingest.settings import Settings


def make_report(
    settings: Settings,
    days: tuple[date | None, date | None],
    period: str,
    tz: str,
    form: str,
    out: Path | None,
    by: str | None,
    today: date | None = None,
) -> None:
    """Write the report (or one per owner) as asked; a problem ends the command with one line."""
    configure_logging(settings.log)  # a migration's log line goes to stderr, not the report
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise click.BadParameter(f"unknown time zone {tz!r}", param_hint="--tz") from None
    try:
        window = window_for(period, days[0], days[1], zone, today or datetime.now(zone).date())  # type: ignore[arg-type]
    except ReportError as error:
        raise click.UsageError(str(error)) from None
    url = settings.store.url
    try:
        engine = reading_engine(url, settings.store.auto_migrate)
    except StoreNotMigrated as error:
        raise click.ClickException(str(error)) from None
    except (OSError, SQLAlchemyError) as error:
        raise _unusable(url, error) from None
    # Only now the charts (matplotlib, a second of CPU): a bad option or store is told first.
    from dispatcher.reports.files import write_one, write_per_owner

    try:
        if by is None:
            text = write_one(engine, url, window, settings.dispatcher, form, out)
            if out is None:
                sys.stdout.write(text)
            else:
                click.echo(f"wrote {out} ({window.label()})", err=True)
        else:
            assert out is not None
            written = write_per_owner(engine, url, window, settings.dispatcher, form, by, out)
            for path in written:
                click.echo(f"wrote {path}", err=True)
            if not written:
                click.echo(f"no cases in {window.label()}: no report written", err=True)
    except SQLAlchemyError as error:
        raise _unusable(url, error) from None
    finally:
        engine.dispose()


def _unusable(url: str, error: Exception) -> click.ClickException:
    return click.ClickException(f"the store at {shown_url(url)} cannot be used: {error}")
