"""`ingest kb ...` and `ingest incidents ...`: the knowledge base and incidents from the
command line. The commands only parse their options; the work is in `intake_ops.py`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from ingest.settings import Settings


def register(main: click.Group, settings_option: Any, load: Callable[[Path], Settings]) -> None:
    """Add the `kb` and `incidents` groups to the CLI."""
    _register_kb(main, settings_option, load)
    _register_incidents(main, settings_option, load)


def _register_kb(main: click.Group, settings_option: Any, load: Callable[[Path], Settings]) -> None:
    @main.group()
    def kb() -> None:
        """The knowledge base: check the articles, search them, see how they are used."""

    @kb.command("check")
    @settings_option
    @click.option("--path", "folder", type=click.Path(path_type=Path), help="Another folder.")
    def kb_check(settings_path: Path, folder: Path | None) -> None:
        """Read every article; print each problem as file:line: reason (exit 1 on any)."""
        from ingest import intake_ops

        intake_ops.kb_check(load(settings_path), folder)

    @kb.command("search")
    @settings_option
    @click.argument("query", nargs=-1, required=True)
    @click.option("--lang", help="The query's language (ISO 639-1), e.g. da.")
    @click.option("--limit", type=click.IntRange(1, 50), default=5, show_default=True)
    @click.option("--public", is_flag=True, help="Only public articles (as the form shows).")
    def kb_search(
        settings_path: Path, query: tuple[str, ...], lang: str | None, limit: int, public: bool
    ) -> None:
        """The best articles for QUERY, with their scores and the terms that matched."""
        from ingest import intake_ops

        intake_ops.kb_search(load(settings_path), " ".join(query), lang, limit, public)

    @kb.command("stats")
    @settings_option
    @click.option("--days", type=click.IntRange(1, 3650), help="Only the last DAYS days.")
    @click.option("--answers", type=click.IntRange(0, 1000), default=10, show_default=True)
    def kb_stats(settings_path: Path, days: int | None, answers: int) -> None:
        """Per article: how often it was suggested, shown on the form, accepted as the
        answer; then the latest deflected contacts with the customers' one-line answers."""
        from ingest import intake_ops

        intake_ops.kb_stats(load(settings_path), days, answers)


def _register_incidents(
    main: click.Group, settings_option: Any, load: Callable[[Path], Settings]
) -> None:
    @main.group()
    def incidents() -> None:
        """Incidents: many customers saying the same thing at once."""

    @incidents.command("list")
    @settings_option
    @click.option("--merged", is_flag=True, help="Also incidents merged into another.")
    @click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
    def incidents_list(settings_path: Path, merged: bool, limit: int) -> None:
        """The latest incidents, most recently active first."""
        from ingest import intake_ops

        intake_ops.incidents_list(load(settings_path), merged, limit)

    @incidents.command("show")
    @settings_option
    @click.argument("incident_id")
    def incidents_show(settings_path: Path, incident_id: str) -> None:
        """One incident (I-12 or 12) and its messages."""
        from ingest import intake_ops

        intake_ops.incidents_show(load(settings_path), incident_id)
