"""What the report must say about `report_traffic`, counted in Python from the rows the
test wrote: the oracle the CSV is compared with."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tests.report_traffic import Traffic

OPEN = ("open", "assigned")
NONE = "(none)"


@dataclass(frozen=True)
class Span:
    since: datetime
    until: datetime

    def holds(self, at: datetime) -> bool:
        return self.since <= at < self.until

    @property
    def previous(self) -> Span:
        return Span(self.since - (self.until - self.since), self.since)


class Expected:
    """Figures per table, as the report's CSV must give them."""

    def __init__(self, traffic: Traffic, span: Span, zone: ZoneInfo, now: datetime) -> None:
        self.t, self.span, self.zone, self.now = traffic, span, zone, now
        self.cases = [c for c in traffic.cases if span.holds(c["opened_at"])]
        self.before = [c for c in traffic.cases if span.previous.holds(c["opened_at"])]

    def contacts_by_channel(self) -> dict[str, tuple[int, int]]:
        now = Counter(m["channel"] for m in self.t.messages if self.span.holds(m["received_at"]))
        then = Counter(
            m["channel"] for m in self.t.messages if self.span.previous.holds(m["received_at"])
        )
        return {channel: (now[channel], then[channel]) for channel in now | then}

    def contacts_by_day(self) -> Counter[tuple[str, str]]:
        return Counter(
            (m["received_at"].astimezone(self.zone).date().isoformat(), m["channel"])
            for m in self.t.messages
            if self.span.holds(m["received_at"])
        )

    def contacts_by_hour_of_week(self) -> Counter[tuple[int, int]]:
        local = (
            m["received_at"].astimezone(self.zone)
            for m in self.t.messages
            if self.span.holds(m["received_at"])
        )
        return Counter((at.weekday(), at.hour) for at in local)

    def cases_by(self, dimension: str) -> dict[str, list[int]]:
        """value: [cases, still open, previous]."""
        found: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for case in self.cases:
            row = found[case[dimension] or NONE]
            row[0] += 1
            row[1] += case["status"] in OPEN
        for case in self.before:
            found[case[dimension] or NONE][2] += 1
        return dict(found)

    def non_customers(self) -> dict[tuple[str, str], list[int]]:
        """(queue, category): [cases, prospects, unknown senders]."""
        found: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
        for case in self.cases:
            who = self.t.customers[case["customer_id"] - 1]
            prospect = who["known"] and who["is_customer"] is False
            if prospect or not who["known"]:
                row = found[case["queue"], case["category"] or NONE]
                row[0] += 1
                row[1 if prospect else 2] += 1
        return dict(found)

    def problems(self) -> dict[tuple[str, str], list[int]]:
        """(product, topic): [cases, customers, previous] of topics of 2 customers or more."""
        found: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [0, set(), 0])
        for case in self.cases:
            row = found[case["product"] or NONE, case["topic"]]
            row[0] += 1
            row[1].add(case["customer_id"])
        for case in self.before:
            found[case["product"] or NONE, case["topic"]][2] += 1
        return {
            key: [n, len(people), before]
            for key, (n, people, before) in found.items()
            if len(people) >= 2
        }

    def contacts_per_customer(self, days: int = 7) -> dict[int, tuple[int, int]]:
        """customer: (contacts in the window, most within `days` UTC days)."""
        daily: dict[int, Counter[Any]] = defaultdict(Counter)
        for m in self.t.messages:
            if self.span.holds(m["received_at"]):
                daily[self.t.root(m["customer_id"])][m["received_at"].date()] += 1
        found = {}
        for customer, counts in daily.items():
            most = max(
                sum(counts[day - timedelta(days=back)] for back in range(days)) for day in counts
            )
            found[customer] = (sum(counts.values()), most)
        return found

    def open_cases(self, customer: int) -> int:
        return sum(
            1
            for c in self.t.cases
            if c["status"] in OPEN and self.t.root(c["customer_id"]) == customer
        )

    def responses(self) -> dict[str, list[Any]]:
        """priority: [cases, with target, answered, within, missed, within %, median h]."""
        first = self._first_responses()
        found: dict[str, list[Any]] = {}
        for priority in sorted({c["priority"] for c in self.cases}):
            cases = [c for c in self.cases if c["priority"] == priority]
            answered = [c for c in cases if c["id"] in first]
            within = sum(1 for c in answered if first[c["id"]] <= c["response_due"])
            missed = sum(
                1
                for c in cases
                if (c["id"] in first and first[c["id"]] > c["response_due"])
                or (c["id"] not in first and self.now > c["response_due"])
            )
            waits = sorted((first[c["id"]] - c["opened_at"]).total_seconds() for c in answered)
            median = waits[(len(waits) * 50 + 99) // 100 - 1] / 3600 if waits else None
            share = round(100.0 * within / (within + missed), 1) if within + missed else None
            found[priority] = [len(cases), len(cases), len(answered), within, missed, share, median]
        return found

    def _first_responses(self) -> dict[int, datetime]:
        first: dict[int, datetime] = {}
        for e in self.t.events:
            if e["kind"] in ("responded", "resolved", "closed") and e["external_id"]:
                first[e["case_id"]] = min(e["at"], first.get(e["case_id"], e["at"]))
        return first

    def closures(self) -> dict[str, list[int]]:
        """queue: [closed, reopened, closed without resolution]."""
        queue = {c["id"]: c["queue"] for c in self.t.cases}
        resolved = {e["case_id"] for e in self.t.events if e["kind"] == "resolved"}
        sets: list[set[int]] = [set(), set(), set()]
        for e in self.t.events:
            if not self.span.holds(e["at"]):
                continue
            if e["kind"] in ("resolved", "closed"):
                sets[0].add(e["case_id"])
            if e["kind"] == "reopened":
                sets[1].add(e["case_id"])
            if e["kind"] == "closed" and e["case_id"] not in resolved:
                sets[2].add(e["case_id"])
        found: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for index, ids in enumerate(sets):
            for case_id in ids:
                found[queue[case_id]][index] += 1
        return dict(found)

    def unresolved_refs(self) -> set[str]:
        resolved = {e["case_id"] for e in self.t.events if e["kind"] == "resolved"}
        return {
            f"C-{e['case_id']}"
            for e in self.t.events
            if e["kind"] == "closed" and self.span.holds(e["at"]) and e["case_id"] not in resolved
        }

    def escalations(self) -> dict[tuple[str, str], list[int]]:
        """(queue, product): [cases, still open]."""
        found: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for case in self.cases:
            if case["bucket"] == "escalation":
                row = found[case["queue"], case["product"] or NONE]
                row[0] += 1
                row[1] += case["status"] in OPEN
        return dict(found)

    def _incident_members(self, product: str | None = None) -> dict[int, list[dict[str, Any]]]:
        """Formed incidents by id, with their members; a member's `case` is its message's
        case (None when the message is no longer kept). With a product, only the members
        whose case is that product's."""
        cases = {m["case_open_id"]: m["case_id"] for m in self.t.messages}
        formed = {i["id"] for i in self.t.incidents if i["status"] == "formed"}
        found: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for member in self.t.incident_messages:
            case = cases.get(member["case_open_id"])
            if product is not None and (
                case is None or (self.t.cases[case - 1]["product"] or NONE) != product
            ):
                continue
            if member["incident_id"] in formed:
                found[member["incident_id"]].append(
                    {**member, "case": cases.get(member["case_open_id"])}
                )
        return found

    def incidents_summary(self) -> dict[str, list[int]]:
        """figure: [current, previous] for incidents, messages, cases, customers."""
        members = self._incident_members()
        found: dict[str, list[int]] = {}
        spans = (self.span, self.span.previous)
        started = [
            [i["id"] for i in self.t.incidents if i["id"] in members and s.holds(i["first_seen"])]
            for s in spans
        ]
        rows = [[m for n in ids for m in members[n]] for ids in started]
        found["incidents"] = [len(ids) for ids in started]
        found["messages"] = [len(r) for r in rows]
        found["cases"] = [len({m["case"] for m in r if m["case"]}) for r in rows]
        found["customers"] = [len({m["customer_id"] for m in r}) for r in rows]
        return found

    def incidents(self, product: str | None = None) -> dict[int, dict[str, Any]]:
        """Incidents started in the period: their figures as the listing gives them (of one
        product's cases only, if given)."""
        members = self._incident_members(product)
        by_id = {c["id"]: c for c in self.t.cases}
        found = {}
        for incident in self.t.incidents:
            if incident["id"] not in members or not self.span.holds(incident["first_seen"]):
                continue
            rows = members[incident["id"]]
            cases = {m["case"] for m in rows if m["case"]}
            queues = Counter(by_id[c]["queue"] for c in cases)
            queue = min(queues, key=lambda q: (-queues[q], q)) if queues else None
            priorities = sorted(by_id[c]["priority"] for c in cases)
            subjects = sorted(m["subject"] for m in rows if m["subject"])
            examples = [incident["sample_subject"], *subjects[:1], *subjects[-1:]]
            found[incident["id"]] = {
                "started": incident["first_seen"],
                "ended": incident["last_seen"],
                "messages": len(rows),
                "cases": len(cases),
                "customers": len({m["customer_id"] for m in rows}),
                "queue": queue,
                "priority": priorities[0] if priorities else None,
                "examples": " | ".join(dict.fromkeys(s for s in examples if s)),
            }
        return found

    def incident_cases_by_queue(self) -> dict[tuple[str, str], list[int]]:
        """(queue, priority): [incidents, cases] over the incidents started in the period."""
        by_id = {c["id"]: c for c in self.t.cases}
        found: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for number, rows in self._incident_members().items():
            incident = self.t.incidents[number - 1]
            if not self.span.holds(incident["first_seen"]):
                continue
            pairs = Counter(
                (by_id[c]["queue"], by_id[c]["priority"])
                for c in {m["case"] for m in rows if m["case"]}
            )
            for pair, cases in pairs.items():
                found[pair][0] += 1
                found[pair][1] += cases
        return dict(found)

    def _local_days(self, span: Span) -> tuple[Any, Any]:
        last = span.until - timedelta(microseconds=1)
        return span.since.astimezone(self.zone).date(), last.astimezone(self.zone).date()

    def kb_counts(self) -> dict[str, dict[tuple[str, bool], int]]:
        """article: (kind, in the period rather than the previous one): count, by the
        counters' UTC days that are days of the period."""
        first, last = self._local_days(self.span)
        before = self._local_days(self.span.previous)[0]
        found: dict[str, dict[tuple[str, bool], int]] = defaultdict(lambda: defaultdict(int))
        for row in self.t.kb_counts:
            if before <= row["day"] <= last:
                found[row["article_id"]][row["kind"], row["day"] >= first] += row["count"]
        return found

    def kb_answers(self) -> list[tuple[datetime, str, str]]:
        """The deflections of the period with an answer, latest first: (at, article, answer)."""
        rows = [d for d in self.t.deflections if self.span.holds(d["at"]) and d["answer"]]
        rows.sort(key=lambda d: (d["at"], d["id"]), reverse=True)
        return [(d["at"], d["article_id"], d["answer"]) for d in rows]
