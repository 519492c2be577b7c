"""`ingest rules check`, `test` and `replay`: the rules loaded from the settings, sample
messages run through them without touching the broker, and what they decide, explained."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from dispatcher.triage import Decision, Facts, RulesError, RuleSet, load_rules, to_triage
from dispatcher.triage.explain import RuleTrace, trace
from dispatcher.triage.load import acknowledging_rules
from dispatcher.triage.names import unknown
from dispatcher.triage.samples import SampleDefaults, SampleError, SampleSpec, sample_facts
from ingest.settings import Settings

if TYPE_CHECKING:  # golden files and replays are imported when used: `rules test` is timed
    from dispatcher.triage.golden import Checker
    from dispatcher.triage.replay import ReplayReport

SHOWN = "%Y-%m-%d %H:%M %Z"
SAMPLE_ID = "01JCKEPT0000000000000SAMPL"
"""The case-open id of a sample (it is never published)."""


class ToolError(Exception):
    """The command cannot do what was asked; str() says why."""


def test_command(
    settings: Settings, settings_path: Path, sample: Path | None, given: dict[str, Any]
) -> str:
    """`ingest rules test`: one sample, its decision, and the explanations asked for."""
    rules = _rules(settings, settings_path)
    try:
        spec = sample_from(sample, given)
        sampled = run_sample(rules, spec, settings, Path.cwd())
    except (SampleError, ValidationError) as error:
        raise ToolError(str(error)) from None
    if given["as_json"]:
        return json.dumps(as_json(sampled.decision), indent=2, ensure_ascii=False)
    shown = [describe(sampled, rules)]
    if given["verbose"]:
        shown.append(verbose(sampled))
    if given["why_not"]:
        try:
            shown.append(why_not(sampled, given["why_not"], rules))
        except ValueError as error:
            raise ToolError(str(error)) from None
    return "\n".join(shown)


def expect_command(settings: Settings, settings_path: Path, expect: Path) -> bool:
    """`ingest rules test --expect FILE`: the table of a golden test file; True if it passed."""
    import click

    from dispatcher.triage.golden import run_file, table

    rules = _rules(settings, settings_path)
    run = run_file(rules, expect, sample_defaults(settings))
    click.echo(table(run))
    return run.passed


def _rules(settings: Settings, settings_path: Path) -> RuleSet:
    try:
        return rules_from(settings, settings_path)
    except RulesError as error:
        raise ToolError("the rules are invalid:\n" + "\n".join(error.problems)) from None


def sample_from(path: Path | None, given: dict[str, Any]) -> SampleSpec:
    """The sample the command line describes."""
    if path is None and given["text"] is None:
        raise SampleError("give a SAMPLE file, --text or --expect FILE")
    headers = dict(_pair(item, ":", "--header") for item in given["header"])
    fields = dict(_pair(item, "=", "--field") for item in given["field"])
    attachments = []
    for item in given["attachment"]:
        kind, _, size = item.partition(":")
        if size and not size.isdigit():
            raise SampleError(f"--attachment takes TYPE[:BYTES], not {item!r}")
        attachments.append({"type": kind, "size": int(size or 1000), "name": "file"})
    return SampleSpec.model_validate(
        {
            "channel": given["channel"],
            "file": str(path) if path else None,
            "text": given["text"],
            "subject": given["subject"],
            "from": given["sender"],
            "sender_name": given["sender_name"],
            "to": given["to"],
            "language": given["language"],
            "at": given["at"],
            "headers": headers,
            "fields": fields,
            "attachments": attachments,
            "customer": {"known": given["known"], "tier": given["tier"]},
            "history": {
                "open_cases": given["open_cases"],
                "contacts_7d": given["contacts_7d"],
                "contacts_30d": given["contacts_30d"],
                "contacts_90d": given["contacts_90d"],
                "repeat": given["repeat"],
                "last_queue": given["last_queue"],
            },
            "kb": [_kb_option(item) for item in given.get("kb") or ()],
            "incident": _incident_option(given.get("incident")),
            "follow_up": given["follow_up"],
        }
    )


def _kb_option(item: str) -> dict[str, object]:
    """--kb ID:SCORE[:TAG,TAG]"""
    article, _, rest = item.partition(":")
    score, _, tags = rest.partition(":")
    try:
        value = float(score)
    except ValueError:
        raise SampleError(f"--kb takes ID:SCORE[:TAG,TAG], not {item!r}") from None
    return {"id": article, "score": value, "tags": [t for t in tags.split(",") if t]}


def _incident_option(item: str | None) -> dict[str, object] | None:
    """--incident SIZE[:CUSTOMERS]"""
    if item is None:
        return None
    size, _, customers = item.partition(":")
    if not size.isdigit() or (customers and not customers.isdigit()):
        raise SampleError(f"--incident takes SIZE[:CUSTOMERS], not {item!r}")
    return {"size": int(size), "customers": int(customers) if customers else None}


def _pair(item: str, separator: str, option: str) -> tuple[str, str]:
    name, found, value = item.partition(separator)
    if not found or not name.strip():
        raise SampleError(f"{option} takes NAME{separator}VALUE, not {item!r}")
    return name.strip(), value.strip()


def run_sample(rules: RuleSet, sample: SampleSpec, settings: Settings, base: Path) -> Sampled:
    """A sample through the rules, every rule traced."""
    defaults = sample_defaults(settings)
    facts = sample_facts(sample, defaults, rules.local_zone, base, SAMPLE_ID)
    decision, traces = trace(rules, facts)
    languages = defaults.options.languages
    return Sampled(facts, decision, traces, sample.language is not None, languages)


def sample_defaults(settings: Settings) -> SampleDefaults:
    """Where the daemon's messages arrive, and its normaliser options."""
    channels = settings.channels
    web = channels.web.touchpoint
    return SampleDefaults(
        settings.normalizer_options(),
        {
            "email": (channels.smtp.addresses or ["support@localhost"])[0],
            "web": web,
            "logged": web,
        },
    )


def golden_check(settings: Settings) -> Checker:
    """The golden tests a load of these settings' rules must pass (`[triage] tests`)."""
    from dispatcher.triage.golden import Checker

    return Checker(sample_defaults(settings))


def rules_from(settings: Settings, settings_path: Path, golden: Checker | None = None) -> RuleSet:
    """The rule set these settings describe (RulesError lists every problem)."""
    queues = settings.queues
    return load_rules(settings_path, queues.declared_teams(), queues.default, golden)


ANSWERABLE = {
    "email": "ann@example.com",
    "sms": "+4520000000",
    "whatsapp": "+4520000000",
    "voice": "+4520000000",
    "chat": "1234",
    "web": "ann@example.com",
    "logged": "ann@example.com",
}
"""A typical address per channel, to ask whether the settings could answer it."""


def ack_warnings(settings: Settings, settings_path: Path) -> list[str]:
    """A line for each rule that asks to acknowledge messages of a channel no configured
    replier can answer: the daemon would not request those (the case says why)."""
    from channels.replies import unanswerable

    def why_not(channel: str) -> str | None:
        to = ANSWERABLE[channel]
        return unanswerable(channel, to, settings.channels, settings.outbound)

    warnings = []
    for rule, channels in acknowledging_rules(settings_path):
        named = [channel for channel in channels or ANSWERABLE if channel in ANSWERABLE]
        missing = {channel: why for channel in named if (why := why_not(channel))}
        for channel, why in missing.items():
            warnings.append(
                f"warning: rule {rule!r} asks to acknowledge {channel} messages, but {why}; "
                "they get none (the case says acknowledged: false and why)"
            )
    return warnings


@dataclass(frozen=True)
class Sampled:
    """A sample run through the rules, with what the tool knows about how it was made."""

    facts: Facts
    decision: Decision
    traces: list[RuleTrace]
    language_given: bool
    candidates: tuple[str, ...]


def describe(sampled: Sampled, rules: RuleSet) -> str:
    """The facts the rules saw and the decision, as an admin reads them."""
    decision = sampled.decision
    priority = rules.priorities.get(decision.priority or "")
    lines = [
        *_facts(sampled, rules),
        f"queue     {decision.queue}",
        f"bucket    {decision.bucket or '-'}",
        f"category  {decision.category or '-'}",
        f"product   {decision.product or '-'}",
        f"priority  {decision.priority or '-'}" + (f" ({priority.definition})" if priority else ""),
        f"tags      {', '.join(decision.tags) or '-'}",
        f"fields    {', '.join(f'{k}={v}' for k, v in decision.fields) or '-'}",
        _sla_line(decision),
    ]
    ack = decision.acknowledge
    lines.append(
        f"ack       {ack.template} ({ack.language}): {ack.subject or ''}" if ack else "ack       -"
    )
    lines.append("rules     " + ("(none matched)" if not decision.hits else ""))
    for number, hit in enumerate(decision.hits, 1):
        lines.append(f"  {number}. {hit.rule}: {hit.because}")
    return "\n".join(lines)


def _sla_line(decision: Decision) -> str:
    sla = decision.sla
    if sla is None:
        return "sla       -"
    resolve = f", resolve by {sla.resolution_due:{SHOWN}}" if sla.resolution_due else ""
    return (
        f"sla       {sla.policy} ({sla.calendar} clock): respond by "
        f"{sla.response_due:{SHOWN}}{resolve}"
    )


def _facts(sampled: Sampled, rules: RuleSet) -> list[str]:
    """The facts as given and as the daemon would have made them."""
    facts, case = sampled.facts, sampled.facts.case
    zone = rules.local_zone
    arrived = f"{case.received_at.astimezone(UTC):{SHOWN}}"
    if zone is not None:
        arrived = f"{case.received_at.astimezone(zone):{SHOWN}} ({arrived})"
    if sampled.language_given:
        language = f"{case.language} (given)"
    elif case.language:
        language = f"{case.language} (detected among {', '.join(sampled.candidates)})"
    else:
        language = f"unknown (none detected among {', '.join(sampled.candidates) or 'none'})"
    customer, history = facts.customer, facts.history
    contacts = "/".join(str(history.contacts.get(days, 0)) for days in (7, 30, 90))
    lines = [
        f"message   {case.channel}/{case.adapter} from {case.sender.address} to "
        f"{', '.join(t.address for t in case.touchpoints)}"
        + (", follow-up" if facts.follow_up else ", new case"),
        f"  arrives {arrived}; language {language}",
        f"  customer {'known' if customer.known else 'unknown'}, tier {customer.tier or '-'}; "
        f"{history.open_cases} open case(s), contacts {contacts} (7/30/90 days), "
        f"repeat contact {'yes' if history.repeat_contact else 'no'}, "
        f"last queue {history.last_queue or '-'}",
    ]
    extras = [f"{len(case.headers)} header(s)" if case.headers else ""]
    extras.append(", ".join(f"{k}={v}" for k, v in case.fields.items()))
    if case.attachments:
        extras.append(", ".join(f"{a.name} ({a.media_type})" for a in case.attachments))
    if any(extras):
        lines.append("  " + "; ".join(extra for extra in extras if extra))
    intake = []
    if case.kb and case.kb.suggestions:
        shown = ", ".join(f"{s.id} {s.score:g}" for s in case.kb.suggestions)
        intake.append(f"kb {shown}")
    if case.incident:
        incident = case.incident
        intake.append(f"incident of {incident.size} messages, {incident.customers} customers")
    if intake:
        lines.append("  " + "; ".join(intake))
    return lines


def why_not(sampled: Sampled, rule: str, rules: RuleSet) -> str:
    """One rule's fate for this sample."""
    found = next((t for t in sampled.traces if t.rule == rule), None)
    if found is None:
        raise ValueError(unknown("rule", rule, [r.name for r in rules.rules]))
    return f"{rule}: matched: {found.text}" if found.matched else f"{rule}: {found.text}"


def verbose(sampled: Sampled) -> str:
    """Every rule: matched, or the first condition that failed."""
    lines = ["every rule:"]
    for rule in sampled.traces:
        mark = "+" if rule.matched else ("-" if rule.looked_at else " ")
        lines.append(f"  {mark} {rule.rule}: {rule.text}")
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
