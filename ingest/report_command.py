"""`ingest report`: the voice-of-the-customer report from the store (see the README).

The command only reads its options; the figures and files are made in `dispatcher.reports`,
imported when it runs, so that the rest of the CLI starts without matplotlib.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from ingest.settings import Settings


def register(main: click.Group, settings_option: Any, load: Callable[[Path], Settings]) -> None:
    """Add `report` to the CLI."""

    @main.command()
    @settings_option
    @click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="First day (local).")
    @click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="Last day, included.")
    @click.option(
        "--period",
        type=click.Choice(["month", "quarter"]),
        default="month",
        show_default=True,
        help="Without --since and --until: the last complete one. With one of them: its length.",
    )
    @click.option(
        "--format",
        "form",
        type=click.Choice(["html", "csv", "json"]),
        default="html",
        show_default=True,
    )
    @click.option(
        "--out",
        type=click.Path(path_type=Path),
        help="The file to write (default: standard output); with --by, a folder.",
    )
    @click.option(
        "--by", type=click.Choice(["product", "queue"]), help="One report per product or queue."
    )
    @click.option(
        "--tz", default="UTC", show_default=True, help="Time zone days and hours are told in."
    )
    def report(
        settings_path: Path,
        since: datetime | None,
        until: datetime | None,
        period: str,
        form: str,
        out: Path | None,
        by: str | None,
        tz: str,
    ) -> None:
        """Write the voice-of-the-customer report: contacts, cases, recurring problems, repeat
        contacts, responses against targets, cases closed too early, escalations."""
        from ingest.report_ops import make_report

        if by is not None and out is None:
            raise click.UsageError("--by writes one file per owner: name a folder with --out")
        settings = load(settings_path)
        days = (since.date() if since else None, until.date() if until else None)
        make_report(settings, days, period, tz, form, out, by)
