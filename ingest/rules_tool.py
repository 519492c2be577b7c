"""`ingest rules check` and `ingest rules test`: the rules loaded from the settings, and a
sample message run through them without touching the broker."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ulid import ULID

from dispatcher.triage import Decision, Facts, RuleSet, load_rules, to_triage
from dispatcher.triage.replay import ReplayReport
from ingest.settings import Settings
from normalizer.envelope import Envelope, RawMail, Unprocessable, normalize
from normalizer.model import CaseOpen
from normalizer.web import WebMessage


class SampleError(Exception):
    """The sample cannot be read as a message; the text says why."""


def rules_from(settings: Settings, settings_path: Path) -> RuleSet:
    """The rule set these settings describe (RulesError lists every problem)."""
    queues = settings.queues
    return load_rules(settings_path, queues.declared_teams(), queues.default)


def read_sample(path: Path, settings: Settings, received_at: datetime | None) -> CaseOpen:
    """An .eml file, a case-open JSON (as the dispatcher receives it) or a web API message."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SampleError(f"{path}: {error.strerror}") from None
    when = received_at or datetime.now(UTC)
    case_id = str(ULID())
    if path.suffix.lower() == ".json":
        return _json_sample(data, path, settings, when, case_id)
    touchpoint = (settings.channels.smtp.addresses or ["support@localhost"])[0]
    envelope = Envelope("email", "smtp", touchpoint, when, RawMail(data, (touchpoint,)))
    try:
        return normalize(envelope, case_id, settings.normalizer_options()).case
    except Unprocessable as error:
        raise SampleError(f"{path}: the mail cannot be used: {error}") from None


def _json_sample(
    data: bytes, path: Path, settings: Settings, when: datetime, case_id: str
) -> CaseOpen:
    try:
        values = json.loads(data)
        if isinstance(values, dict) and "schema" in values:
            case = CaseOpen.model_validate(values)
            return case.model_copy(update={"received_at": when}) if when else case
        message = WebMessage.model_validate(values)
    except ValueError as error:
        raise SampleError(f"{path}: neither a case-open nor a web message: {error}") from None
    envelope = Envelope("web", "web-api", settings.channels.web.touchpoint, when, message)
    return normalize(envelope, case_id, settings.normalizer_options()).case


def describe(decision: Decision, rules: RuleSet, facts: Facts) -> str:
    """The decision as an admin reads it."""
    priority = rules.priorities.get(decision.priority or "")
    lines = [
        f"message   {facts.case.channel}/{facts.case.adapter} from {facts.case.sender.address}"
        f", language {facts.case.language or 'unknown'}"
        + (", follow-up" if facts.follow_up else ""),
        f"queue     {decision.queue}",
        f"bucket    {decision.bucket or '-'}",
        f"category  {decision.category or '-'}",
        f"product   {decision.product or '-'}",
        f"priority  {decision.priority or '-'}" + (f" ({priority.definition})" if priority else ""),
        f"tags      {', '.join(decision.tags) or '-'}",
    ]
    sla = decision.sla
    shown = "%Y-%m-%d %H:%M %Z"
    lines.append(
        f"sla       {sla.policy}: respond by {sla.response_due:{shown}}"
        f", resolve by {sla.resolution_due:{shown}}"
        if sla
        else "sla       -"
    )
    ack = decision.acknowledge
    lines.append(
        f"ack       {ack.template} ({ack.language}): {ack.subject or ''}" if ack else "ack       -"
    )
    lines.append("rules     " + ("(none matched)" if not decision.hits else ""))
    for number, hit in enumerate(decision.hits, 1):
        lines.append(f"  {number}. {hit.rule}: {hit.because}")
    return "\n".join(lines)


def as_json(decision: Decision) -> dict[str, Any]:
    """The decision as the forwarded message's `triage` carries it, `rules` with their
    reasons."""
    triage = to_triage(decision)
    shown = triage.model_dump(mode="json", exclude={"rules", "matched", "acknowledged"})
    shown["rules"] = [hit.model_dump() for hit in triage.matched]
    return shown


UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


def since(text: str, now: datetime | None = None) -> datetime:
    """ "7d" (or 12h, 4w) before now; ValueError for anything else."""
    match = re.fullmatch(r"\s*(\d+)\s*([hdw])\s*", text)
    if not match:
        raise ValueError(f"--since takes a count and a unit (h, d, w), e.g. 7d, not {text!r}")
    return (now or datetime.now(UTC)) - int(match.group(1)) * UNITS[match.group(2)]


def replay_summary(report: ReplayReport, cutoff: datetime, show: int) -> str:
    """What would change, for an admin deciding whether to put the rules live."""
    lines = [
        f"{report.messages} messages since {cutoff:%Y-%m-%d %H:%M %Z}; "
        f"{len(report.changes)} would be treated differently"
    ]
    for (before, after), count in sorted(report.moved_between_queues().items()):
        lines.append(f"  {count:5d} from queue {before} to {after}")
    for change in report.changes[:show]:
        lines.append("  " + change.describe())
    if len(report.changes) > show:
        lines.append(f"  ... and {len(report.changes) - show} more (--show)")
    return "\n".join(lines)
