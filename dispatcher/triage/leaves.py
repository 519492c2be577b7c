"""The conditions on facts of the message, the customer, the history and what earlier rules
decided: one builder per condition key (those that read text are in `text_conditions.py`)."""

from __future__ import annotations

from collections.abc import Callable

from dispatcher.triage.facts import Facts
from dispatcher.triage.names import unknown
from dispatcher.triage.nodes import Condition, ConditionError, Context, shown
from dispatcher.triage.spec import ContactsSpec, Values
from dispatcher.triage.state import State
from dispatcher.triage.text import globs


def _one_of(label: str, read: Callable[[Facts], str | None]) -> Callable[..., Condition]:
    """A field equal to one of the values (case-insensitive)."""

    def build(value: Values, context: Context) -> Condition:
        values = context.values(value)
        wanted = frozenset(item.lower() for item in values)

        def check(facts: Facts, state: State) -> str | None:
            actual = read(facts)
            return f"{label} = {actual}" if actual and actual.lower() in wanted else None

        return Condition(
            check, f"{label} in [{shown(values)}]", shows=lambda f, s: f"{label} {read(f) or '-'}"
        )

    return build


def _decided(name: str, kind: str | None) -> Callable[..., Condition]:
    """What earlier rules (or the defaults) decided for a field is one of the values."""

    def build(value: Values, context: Context) -> Condition:
        values = context.values(value)
        known: set[str] = getattr(context.known, kind) if kind else set()
        for item in values:
            if kind and item not in known:
                raise ConditionError(unknown(name, item, known))
        wanted = frozenset(item.lower() for item in values)

        def check(facts: Facts, state: State) -> str | None:
            actual = state.fields.get(name)
            return f"{name} is {actual}" if actual and actual.lower() in wanted else None

        return Condition(
            check,
            f"{name} decided in [{shown(values)}]",
            shows=lambda f, s: f"{name} is {s.fields.get(name) or '-'}",
        )

    return build


def _tags(value: Values, context: Context) -> Condition:
    values = context.values(value)

    def check(facts: Facts, state: State) -> str | None:
        for tag in values:
            if tag in state.tags:
                return f"tag {tag}"
        return None

    return Condition(
        check, f"a tag in [{shown(values)}]", shows=lambda f, s: f"tags {', '.join(s.tags) or '-'}"
    )


def _glob(label: str, read: Callable[[Facts], list[str]]) -> Callable[..., Condition]:
    """Any of the field's values matches one of the globs (case-insensitive)."""

    def build(value: Values, context: Context) -> Condition:
        patterns = [item.lower() for item in context.values(value)]
        compiled = globs(patterns)

        def check(facts: Facts, state: State) -> str | None:
            for actual in read(facts):
                lowered = actual.lower()
                for pattern, glob in compiled:
                    if glob.match(lowered):
                        return f"{label} {actual} matches {pattern}"
            return None

        return Condition(
            check,
            f"{label} matching [{shown(patterns)}]",
            shows=lambda f, s: f"{label} {', '.join(read(f)) or 'none'}",
        )

    return build


def _domain(value: Values, context: Context) -> Condition:
    domains = [item.lower().lstrip("@.") for item in context.values(value)]

    def check(facts: Facts, state: State) -> str | None:
        for domain in domains:
            if facts.domain == domain or facts.domain.endswith("." + domain):
                return f"sender domain {facts.domain}"
        return None

    return Condition(
        check,
        f"sender domain in [{shown(domains)}]",
        shows=lambda f, s: f"sender domain {f.domain or 'none'}",
    )


def _bool(label: str, read: Callable[[Facts], bool]) -> Callable[..., Condition]:
    def build(wanted: bool, _context: Context) -> Condition:
        reason = f"{label} is {wanted}".lower()
        return Condition(
            lambda facts, state: reason if read(facts) == wanted else None,
            reason,
            shows=lambda f, s: f"{label} is {read(f)}".lower(),
        )

    return build


def _has_attachments(wanted: bool, _context: Context) -> Condition:
    def check(facts: Facts, state: State) -> str | None:
        count = len(facts.case.attachments)
        return f"{count} attachment(s)" if (count > 0) == wanted else None

    return Condition(
        check,
        "attachments" if wanted else "no attachments",
        shows=lambda f, s: f"{len(f.case.attachments)} attachment(s)",
    )


def _attachment_min_bytes(least: int, _context: Context) -> Condition:
    def check(facts: Facts, state: State) -> str | None:
        for attachment in facts.case.attachments:
            if (attachment.size or 0) >= least:
                return f"attachment {attachment.name} of {attachment.size} bytes"
        return None

    def shows(facts: Facts, state: State) -> str:
        sizes = [a.size or 0 for a in facts.case.attachments]
        return f"the largest attachment has {max(sizes, default=0)} bytes"

    return Condition(check, f"an attachment of {least} bytes or more", shows=shows)


def _flag(value: Values, context: Context) -> Condition:
    names = context.values(value)

    def check(facts: Facts, state: State) -> str | None:
        flags = facts.case.flags
        for name in names:
            if (flags.spam == "spam") if name == "spam" else getattr(flags, name):
                return f"flag {name}"
        return None

    def shows(facts: Facts, state: State) -> str:
        flags = facts.case.flags.model_dump()
        raised = [n for n, v in flags.items() if v is True or (n == "spam" and v == "spam")]
        return f"flags {', '.join(raised) or 'none'}"

    return Condition(check, f"a flag in [{shown(names)}]", shows=shows)


def _hours(inside: bool) -> Callable[..., Condition]:
    def build(name: str, context: Context) -> Condition:
        calendar = context.calendars.get(name)
        if calendar is None:
            raise ConditionError(unknown("calendar", name, context.calendars))
        where = "inside" if inside else "outside"

        reason = f"{where} business hours ({name})"

        def check(facts: Facts, state: State) -> str | None:
            return reason if facts.is_open(calendar) == inside else None

        def shows(facts: Facts, state: State) -> str:
            moment = calendar.local(facts.case.received_at)
            state_now = "open" if calendar.is_open(facts.case.received_at) else "closed"
            return f"arrived {moment:%a %Y-%m-%d %H:%M %Z}, {name} {state_now}"

        return Condition(check, reason, shows=shows)

    return build


def _open_cases(least: int, _context: Context) -> Condition:
    def check(facts: Facts, state: State) -> str | None:
        count = facts.history.open_cases
        return f"{count} open case(s)" if count >= least else None

    return Condition(
        check,
        f"{least} or more open cases",
        shows=lambda f, s: f"{f.history.open_cases} open case(s)",
    )


def _contacts(spec: ContactsSpec, _context: Context) -> Condition:
    days, least = spec.days, spec.at_least

    def check(facts: Facts, state: State) -> str | None:
        count = facts.history.contacts.get(days, 0)
        return f"{count} contact(s) in {days} days" if count >= least else None

    return Condition(
        check,
        f"{least} or more contacts in {days} days",
        shows=lambda f, s: f"{f.history.contacts.get(days, 0)} contact(s) in {days} days",
    )


def _control(value: Values, context: Context) -> Condition:
    names = [name.lower() for name in context.values(value)]

    def check(facts: Facts, state: State) -> str | None:
        for name in names:
            if name in facts.controls:
                return f"control {name} = {facts.controls[name]}"
        return None

    return Condition(
        check,
        f"a control field in [{shown(names)}]",
        shows=lambda f, s: f"control fields {', '.join(f.controls) or 'none'}",
    )


LEAF_BUILDERS: dict[str, Callable[..., Condition]] = {
    "channel": _one_of("channel", lambda f: f.case.channel),
    "adapter": _one_of("adapter", lambda f: f.case.adapter),
    "touchpoint": _glob("touchpoint", lambda f: [t.address for t in f.case.touchpoints]),
    "sender": _glob("sender", lambda f: [f.sender]),
    "domain": _domain,
    "tier": _one_of("tier", lambda f: f.customer.tier),
    "known": _bool("known customer", lambda f: f.customer.known),
    "language": _one_of("language", lambda f: f.case.language),
    "has_attachments": _has_attachments,
    "attachment_type": _glob(
        "attachment type", lambda f: [a.media_type for a in f.case.attachments]
    ),
    "attachment_min_bytes": _attachment_min_bytes,
    "flag": _flag,
    "business_hours": _hours(inside=True),
    "outside_business_hours": _hours(inside=False),
    "open_cases_at_least": _open_cases,
    "contacts": _contacts,
    "repeat_contact": _bool("repeat contact", lambda f: f.history.repeat_contact),
    "last_queue": _one_of("last queue", lambda f: f.history.last_queue),
    "control": _control,
    "queue": _decided("queue", "queues"),
    "priority": _decided("priority", "priorities"),
    "bucket": _decided("bucket", "buckets"),
    "category": _decided("category", None),
    "product": _decided("product", None),
    "tags": _tags,
}
