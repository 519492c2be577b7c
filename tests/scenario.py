"""A reproducible stream of case-opens with known answers, for the scenario suite and benchmark.

Of `total` messages: 60% originals (each a new case; in customers' own words on everyday
topics, as the incident set writes them, and a few reporting one outage), 20% exact repeats
(same channel and source id, a new case-open id, as a webhook retry or a refetch makes), 10%
cross-channel duplicates (the same customer texts the same words by SMS) and 10% follow-ups (an
email reply to the original, or a message naming its case). Phase one is the originals and most
repeats; phase two, sent once phase one is through (replies come after the case exists), holds
the duplicates, the follow-ups and the rest of the repeats. A fifth of the originals come from
senders the directory does not know (a hundred addresses writing several times each), so that
dispatchers side by side make provisional customers for the same address at once.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ulid import ULID

from normalizer.model import CaseOpen, Sender, Thread, Touchpoint
from tests.benchmarks.incident_set import TOPICS, fill, ordinary_message, own_words

CUSTOMERS = 300
UNKNOWN_SENDERS = 100


@dataclass
class Scenario:
    """The messages, the directory they need, and what the dispatcher must make of them."""

    directory: str
    phase_one: list[CaseOpen]
    originals: list[CaseOpen]
    rng: random.Random
    total: int
    duplicate_of: dict[str, str] = field(default_factory=dict)  # update source -> original
    phase_two: list[CaseOpen] = field(default_factory=list)

    @property
    def expected_new(self) -> int:
        return len(self.originals)

    @property
    def expected_updates(self) -> int:
        return len(self.duplicate_of)

    @property
    def expected_drops(self) -> int:
        return self.total - self.expected_new - self.expected_updates

    def build_phase_two(self, case_of: Mapping[str, str]) -> list[CaseOpen]:
        """Duplicates and follow-ups of the originals; `case_of` maps source id to case ref."""
        tenth = self.total // 10
        known = [o for o in self.originals if not is_unknown(o)]
        duplicated = self.rng.sample(known, tenth)
        chosen = {o.source_id for o in duplicated}
        followed = self.rng.sample([o for o in self.originals if o.source_id not in chosen], tenth)
        picks = duplicated + followed
        updates = [_sms_duplicate(o) for o in duplicated]
        updates += [_follow_up(o, case_of[o.source_id], n) for n, o in enumerate(followed)]
        self.duplicate_of = {u.source_id: o.source_id for u, o in zip(updates, picks, strict=True)}
        repeats = self.total - len(self.phase_one) - len(updates)
        stream = updates + [_repeat(m) for m in self.rng.sample(updates, repeats)]
        self.rng.shuffle(stream)
        self.phase_two = stream
        return stream


def build(
    total: int = 5000,
    seed: int = 5,
    start: datetime | None = None,
    customers: int = CUSTOMERS,
    tag: str = "",
) -> Scenario:
    """Phase one (originals and most repeats), shuffled; phase two comes from the answers.

    `customers` is the directory's size; `tag` starts every source id, so that several
    streams (a warm-up and a measured one) never share a key.
    """
    rng = random.Random(seed)
    start = start or datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    originals = [_original(n, rng, start, customers, tag) for n in range(total * 6 // 10)]
    repeats = [_repeat(m) for m in rng.sample(originals, total * 16 // 100)]
    phase_one = originals + repeats
    rng.shuffle(phase_one)
    return Scenario(directory(customers), phase_one, originals, rng, total)


def is_unknown(message: CaseOpen) -> bool:
    """Whether the sender is one the directory does not name."""
    return message.sender.address.endswith("@unknown.example")


def directory(customers: int = CUSTOMERS) -> str:
    """The customer directory as CSV: customer n writes from cN@example.com or +1415555NNNN."""
    lines = ["external_id,name,organisation,emails,phones,tier,is_customer"]
    for n in range(customers):
        lines.append(
            f"K-{n},Customer {n},Org {n % 40},c{n}@example.com,+1415555{n:04d},"
            f"{('gold', 'silver', 'bronze')[n % 3]},yes"
        )
    return "\n".join(lines) + "\n"


SPACING_S = 60
"""Seconds between two originals: some 30 in each half hour, as a busy desk's day has them
(the stream is sent at once; the times are what incident detection and the history windows
see). Denser, the everyday topics alone would form incidents of five customers."""
OUTAGE_SHARE = 0.03
"""Of the originals, those reporting one outage: an incident forms, as in real traffic."""
OUTAGE = [
    "The internet is down [again|since this morning] in {town}.",
    "No connection at all since {clock}, the router light is red.",
    "Is there an outage in {town}? [Nothing|No internet] works here.",
]


def _words(rng: random.Random) -> tuple[str, str]:
    """A subject and text in customers' own words: the ordinary topics of the incident set
    (four languages, details filled in, words left out), and a few reports of one outage.
    A customer number ends each, so that no two are the same content (a level 2 duplicate)."""
    number = f"Customer number {rng.randrange(10**9)}."
    if rng.random() < OUTAGE_SHARE:
        sentences = rng.sample(OUTAGE, 2)
        text = " ".join(own_words(rng, fill(rng, s), "en") for s in sentences)
        return "No internet", f"{text} {number}"
    written = ordinary_message(rng, datetime.now(UTC), "", rng.choice(TOPICS))
    return str(written["subject"]), f"{written['text']} {number}"


def _original(n: int, rng: random.Random, start: datetime, customers: int, tag: str) -> CaseOpen:
    customer = rng.randrange(customers)
    subject, text = _words(rng)
    web = n % 5 == 0
    address = f"c{customer}@example.com"
    if n % 5 == 1:
        address = f"u{rng.randrange(UNKNOWN_SENDERS)}@unknown.example"
    return CaseOpen(
        id=str(ULID()),
        received_at=start + timedelta(seconds=n * SPACING_S),
        channel="web" if web else "email",
        adapter="web-api" if web else "smtp",
        source_id=f"{tag}web-{n}" if web else f"{tag}original-{n}@c{customer}.example.com",
        touchpoints=[Touchpoint(kind="api" if web else "mailbox", address="support@example.com")],
        sender=Sender(kind="email", address=address, name=f"Customer {customer}"),
        subject=subject,
        text=text,
    )


def _repeat(message: CaseOpen) -> CaseOpen:
    return message.model_copy(update={"id": str(ULID())})


def _sms_duplicate(original: CaseOpen) -> CaseOpen:
    customer = int(original.sender.address[1:].split("@")[0])
    return CaseOpen(
        id=str(ULID()),
        received_at=original.received_at + timedelta(minutes=10),
        channel="sms",
        adapter="twilio",
        source_id=f"SM{ULID().hex}",
        touchpoints=[Touchpoint(kind="number", address="+14155550000")],
        sender=Sender(kind="phone", address=f"+1415555{customer:04d}"),
        text="  ".join(original.text.upper().split()),
    )


def _follow_up(original: CaseOpen, case_ref: str, n: int) -> CaseOpen:
    by_thread = original.channel == "email" and n % 2 == 0
    thread = (
        Thread(in_reply_to=f"agent-{n}@help.example", references=[original.source_id])
        if by_thread
        else Thread(case_ref=case_ref)
    )
    return CaseOpen(
        id=str(ULID()),
        received_at=original.received_at + timedelta(hours=1),
        channel="email",
        adapter="smtp",
        source_id=f"follow-up-{n}-{ULID()}@example.com",
        touchpoints=[Touchpoint(kind="mailbox", address="support@example.com")],
        sender=original.sender,
        subject=f"Re: [#{case_ref}] {original.subject}",
        text=f"Follow-up {n}: any news?",
        thread=thread,
    )
