"""What `ingest kb ...` and `ingest incidents ...` do (the commands are in
`intake_commands.py`, which imports this module only when one runs)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from dispatcher.incidents.detect import PREFIX
from dispatcher.incidents.listing import incident, incidents
from dispatcher.knowledge.articles import KbError, read_folder
from dispatcher.knowledge.index import KbIndex
from dispatcher.knowledge.stats import article_stats, recent_deflections
from ingest.settings import Settings
from ingest.store_ops import read_store


def _folder(settings: Settings, folder: Path | None) -> Path:
    found = folder or settings.kb.path
    if found is None:
        raise click.ClickException("no knowledge base: set [kb] path (or give --path)")
    return found


def kb_check(settings: Settings, folder: Path | None) -> None:
    where = _folder(settings, folder)
    try:
        articles, problems = read_folder(where)
    except KbError as error:
        raise click.ClickException("; ".join(error.problems)) from None
    for problem in problems:
        click.echo(problem)
    languages = Counter(article.language for article in articles)
    shown = ", ".join(f"{language} {count}" for language, count in sorted(languages.items()))
    public = sum(article.public for article in articles)
    summary = (
        f"{len(articles)} articles OK in {where} ({shown or 'none'}; {public} public, "
        f"{len(articles) - public} internal)"
    )
    if problems:
        click.echo(f"{summary}; {len(problems)} problem(s), those articles are left out", err=True)
        raise SystemExit(1)
    click.echo(summary)


def kb_search(
    settings: Settings, query: str, language: str | None, limit: int, public: bool
) -> None:
    where = _folder(settings, None)
    try:
        articles, _ = read_folder(where)
    except KbError as error:
        raise click.ClickException("; ".join(error.problems)) from None
    found = KbIndex(articles).search(query, language, limit=limit, public_only=public)
    if not found:
        click.echo("no article matches")
        raise SystemExit(1)
    for match in found:
        article = match.article
        click.echo(
            f"{match.score:5.3f}  {article.id}  [{article.language}, {article.audience}]  "
            f"{article.title}"
        )
        click.echo(f"       matched: {', '.join(match.matched)}")
        if article.url:
            click.echo(f"       {article.url}")


def kb_stats(settings: Settings, days: int | None, answers: int) -> None:
    since = datetime.now(UTC) - timedelta(days=days) if days else None

    def work(session: object) -> tuple[list[object], list[object]]:
        return article_stats(session, since), recent_deflections(session, answers)  # type: ignore[arg-type]

    stats, deflections = read_store(settings, work)
    if not stats:
        click.echo("no article has been suggested, shown or accepted yet")
        return
    click.echo(f"{'article':<30} {'suggested':>9} {'shown':>7} {'accepted':>8}")
    for row in stats:
        click.echo(
            f"{row.article_id:<30} {row.suggested:>9} {row.shown:>7} {row.accepted:>8}"  # type: ignore[attr-defined]
        )
    if deflections:
        click.echo("\nlatest deflected contacts:")
        for item in deflections:
            answer = f': "{item.answer}"' if item.answer else ""  # type: ignore[attr-defined]
            click.echo(f"  {item.at:%Y-%m-%d %H:%M} {item.article_id}{answer}")  # type: ignore[attr-defined]


def incidents_list(settings: Settings, merged: bool, limit: int) -> None:
    found = read_store(settings, incidents, merged, limit)
    if not found:
        click.echo("no incidents")
        return
    for item in found:
        click.echo(
            f"{PREFIX}{item.id:<6} {item.status:<8} {item.size:>4} messages "
            f"{item.customers:>4} customers  {item.first_seen:%Y-%m-%d %H:%M} to "
            f"{item.last_seen:%H:%M} UTC  {item.sample_subject or ''}"
        )


def incidents_show(settings: Settings, incident_id: str) -> None:
    number = incident_id.upper().removeprefix(PREFIX)
    if not number.isdigit():
        raise click.ClickException(f"not an incident id: {incident_id!r} (I-12 or 12)")
    found, members = read_store(settings, incident, int(number))
    if found is None:
        raise click.ClickException(f"no incident {PREFIX}{number}")
    merged = f", merged into {PREFIX}{found.merged_into}" if found.merged_into else ""
    click.echo(f"incident {PREFIX}{found.id} ({found.status}{merged})")
    click.echo(f"  messages:    {found.size}")
    click.echo(f"  customers:   {found.customers}")
    click.echo(f"  first seen:  {found.first_seen.isoformat()}")
    click.echo(f"  last seen:   {found.last_seen.isoformat()}")
    if found.formed_at:
        click.echo(f"  formed at:   {found.formed_at.isoformat()}")
    click.echo(f"  sample:      {found.sample_subject or '-'}")
    click.echo("  messages (case-open id, customer, received, subject):")
    for row in members:
        click.echo(
            f"    {row.case_open_id}  {row.customer_id:>6}  {row.received_at:%Y-%m-%d %H:%M:%S}  "
            f"{row.subject or ''}"
        )
