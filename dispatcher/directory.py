"""The customer directory import: a CSV file upserted by external id, idempotently.

Columns (a header row names them, in any order): `external_id` (required), `name`,
`organisation`, `emails` and `phones` (several separated by `;`), `tier`, `is_customer`
(yes/no, empty: not said). A row is applied whole or not at all; a bad row is reported with its
line number and the others go on. An address already held by a provisional customer (a sender
nobody had named) merges that customer into the directory's; one held by another directory
customer is an error, never a silent move.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher.identity import IdentityKey, find_identity, lock_identities, merge
from dispatcher.tables import Customer, Identity
from normalizer.phone import InvalidPhoneNumber, to_e164
from normalizer.text import clean_line

COLUMNS = ("external_id", "name", "organisation", "emails", "phones", "tier", "is_customer")
FIELDS = ("name", "organisation", "tier", "is_customer")
LIMITS = {"external_id": 200, "name": 200, "organisation": 200, "tier": 50}
YES = {"yes", "y", "true", "1"}
NO = {"no", "n", "false", "0"}


class DirectoryError(Exception):
    """The file as a whole cannot be read (no header, unknown columns)."""


class RowError(Exception):
    """One row cannot be applied; the message says why."""


@dataclass(frozen=True, slots=True)
class DirectoryRow:
    """One valid row, normalised."""

    line: int
    external_id: str
    name: str | None
    organisation: str | None
    tier: str | None
    is_customer: bool | None
    identities: tuple[IdentityKey, ...]


@dataclass(slots=True)
class Summary:
    """What an import did; `errors` are (line, message)."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    merged: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.merged} provisional customers merged, {len(self.errors)} rows rejected"
        )


def read_directory(
    lines: Iterable[str], region: str | None = None
) -> tuple[list[DirectoryRow], list[tuple[int, str]]]:
    """Parse and check every row; return the good rows and (line, reason) for the bad."""
    reader = csv.DictReader(lines)
    header = [name.strip() for name in reader.fieldnames or []]
    if "external_id" not in header:
        raise DirectoryError("the first line must be a header naming at least external_id")
    unknown = [name for name in header if name not in COLUMNS]
    if unknown:
        raise DirectoryError(f"unknown columns {unknown}; known: {', '.join(COLUMNS)}")
    reader.fieldnames = header
    rows: list[DirectoryRow] = []
    errors: list[tuple[int, str]] = []
    first_line: dict[str, int] = {}
    owner: dict[IdentityKey, int] = {}
    for record in reader:
        line = reader.line_num
        try:
            row = _row(record, line, region)
            _not_repeated(row, first_line, owner)
        except RowError as error:
            named = clean_line(record.get("external_id") or "")
            errors.append((line, f"{named}: {error}" if named else str(error)))
            continue
        rows.append(row)
    return rows, errors


def import_rows(session: Session, rows: Iterable[DirectoryRow], actor: str) -> Summary:
    """Upsert each row in its own savepoint; conflicts become errors of that row."""
    summary = Summary()
    for row in rows:
        try:
            with session.begin_nested():
                outcome, merged = _upsert(session, row, actor)
        except RowError as error:
            summary.errors.append((row.line, f"{row.external_id}: {error}"))
            continue
        summary.merged += merged
        setattr(summary, outcome, getattr(summary, outcome) + 1)
    return summary


def _row(record: dict[str | None, str | None], line: int, region: str | None) -> DirectoryRow:
    if None in record:
        raise RowError("more cells than columns")
    values = {key: clean_line(value or "") for key, value in record.items() if key}
    for name, limit in LIMITS.items():
        if len(values.get(name, "")) > limit:
            raise RowError(f"{name} longer than {limit} characters")
    external_id = values.get("external_id", "")
    if not external_id:
        raise RowError("external_id is empty")
    emails = [_email(value) for value in re.split(r"[;,\s]+", values.get("emails", "")) if value]
    phones = [_phone(value, region) for value in re.split(r"[;,]", values.get("phones", ""))]
    identities = [("email", e) for e in emails] + [("phone", p) for p in phones if p]
    return DirectoryRow(
        line=line,
        external_id=external_id,
        name=values.get("name") or None,
        organisation=values.get("organisation") or None,
        tier=values.get("tier") or None,
        is_customer=_yes_no(values.get("is_customer", "")),
        identities=tuple(dict.fromkeys(identities)),
    )


def _not_repeated(
    row: DirectoryRow, first_line: dict[str, int], owner: dict[IdentityKey, int]
) -> None:
    if row.external_id in first_line:
        raise RowError(
            f"external_id {row.external_id} already on line {first_line[row.external_id]}"
        )
    for key in row.identities:
        if key in owner:
            raise RowError(f"{key[0]} {key[1]} already given on line {owner[key]}")
    first_line[row.external_id] = row.line
    owner.update(dict.fromkeys(row.identities, row.line))


def _email(value: str) -> str:
    try:
        return validate_email(value, check_deliverability=False).normalized.lower()
    except EmailNotValidError as error:
        raise RowError(f"email {value!r}: {error}") from None


def _phone(value: str, region: str | None) -> str:
    if not value.strip():
        return ""
    try:
        return to_e164(value, region)
    except InvalidPhoneNumber as error:
        raise RowError(f"phone {value.strip()!r}: {error}") from None


def _yes_no(value: str) -> bool | None:
    if not value:
        return None
    if value.lower() in YES:
        return True
    if value.lower() in NO:
        return False
    raise RowError(f"is_customer {value!r}: write yes or no")


def _upsert(session: Session, row: DirectoryRow, actor: str) -> tuple[str, int]:
    now = datetime.now(UTC)
    lock_identities(session, row.identities)
    customer = session.scalars(
        select(Customer).where(Customer.external_id == row.external_id).with_for_update()
    ).one_or_none()
    outcome = "updated"
    if customer is None:
        customer = Customer(external_id=row.external_id, known=True, created_at=now, updated_at=now)
        session.add(customer)
        session.flush()
        outcome = "created"
    root = customer.id if customer.merged_into is None else customer.merged_into
    owners = {key: find_identity(session, key) for key in row.identities}
    provisional = _provisional_owners(session, row, owners, root)
    changed = _set_fields(customer, row)
    for other in provisional:
        merge(session, root, other, actor, f"the directory names their address ({row.external_id})")
    missing = [key for key, found in owners.items() if found is None]
    for kind, address in missing:
        session.add(
            Identity(
                kind=kind, address=address, customer_id=root, origin="directory", created_at=now
            )
        )
    if outcome == "updated" and not (changed or missing or provisional):
        outcome = "unchanged"
    elif changed:
        customer.updated_at = now
    session.flush()
    return outcome, len(provisional)


def _provisional_owners(
    session: Session, row: DirectoryRow, owners: dict[IdentityKey, Identity | None], root: int
) -> list[int]:
    """The provisional customers holding the row's addresses; an error if a known one does."""
    provisional: list[int] = []
    for key, found in owners.items():
        if found is None or found.customer_id == root:
            continue
        holder = session.get_one(Customer, found.customer_id)
        if holder.known:
            held_by = f"ext:{holder.external_id}" if holder.external_id else f"customer {holder.id}"
            raise RowError(
                f"{key[0]} {key[1]} belongs to {held_by}; merge them by hand if they are one"
            )
        if holder.id not in provisional:
            provisional.append(holder.id)
    return provisional


def _set_fields(customer: Customer, row: DirectoryRow) -> bool:
    changed = not customer.known
    customer.known = True
    for name in FIELDS:
        value = getattr(row, name)
        if getattr(customer, name) != value:
            setattr(customer, name, value)
            changed = True
    return changed
